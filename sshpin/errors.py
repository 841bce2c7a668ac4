"""The one exception hierarchy, each class mapped to an exit status (DESIGN.md section 6).

Messages are printed as ``sshpin: <what happened>: <why>``; the ``what`` part is given when the
error is raised, so the text reads well without a traceback.
"""

EXIT_OK = 0
EXIT_USAGE = 1  # usage or configuration error
EXIT_NO_KEYS = 2  # no authentic keys could be obtained
EXIT_PROVIDER = 3  # provider or network error


class SshpinError(Exception):
    """Base of every error sshpin reports to the user."""

    exit_status = EXIT_USAGE

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


class UsageError(SshpinError):
    """A malformed command line."""


class ConfigError(SshpinError):
    """The configuration file is missing, malformed or unsafe; or a local file is unsafe."""


class NoKeysError(SshpinError):
    """No authentic keys are obtainable for a host (unknown capsul, bad key material, ...)."""

    exit_status = EXIT_NO_KEYS


class VerificationError(NoKeysError):
    """A signature, fingerprint or key check failed: the material must not be trusted."""


class ProviderError(SshpinError):
    """The provider could not be reached, or answered with an error."""

    exit_status = EXIT_PROVIDER


class AuthError(ProviderError):
    """The provider rejected the API token, or no token is available."""


class UnsupportedKeyError(VerificationError):
    """A well-formed key of a type we refuse (DSA, short RSA, unknown): skipped, not fatal."""
