"""The one exception hierarchy, the exit statuses, and the one way sshpin speaks on stderr.

Every error carries a message (what happened and why) and, apart from it, an optional hint
(what to do). ``report`` prints both on one line, in one format::

    sshpin: <subject>: <message> (fix: <hint>)

where the subject is the host a line concerns (every line about a host starts with it) or the
command. ``say`` and ``log`` print the same format for warnings and ``-v`` notes. Nothing else
in sshpin writes to stderr. Standard library only: this module is on the hook's hot path.
"""

import sys

EXIT_OK = 0
EXIT_USAGE = 1  # usage or configuration error (and, for the hook, a malformed command line)
EXIT_NO_KEYS = 2  # no authentic keys could be obtained
EXIT_PROVIDER = 3  # provider or network error
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_verbose = False
_logger: "Any" = None  # logging.getLogger("sshpin") once ``to_logging`` is called
_first_time: "Callable[[str], bool] | None" = None  # the hook's one-message-per-connection rule


class SshpinError(Exception):
    """Base of every error sshpin reports to the user: a message and an optional hint."""

    exit_status = EXIT_USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def prefixed(self, subject: str) -> "SshpinError":
        """The same error (class and hint) with ``subject: `` put before its message."""
        return type(self)(f"{subject}: {self.message}", self.hint)


class UsageError(SshpinError):
    """A malformed command line."""


class ConfigError(SshpinError):
    """The configuration file is missing, malformed or unsafe; or a local file is unsafe."""

    where: tuple[int, str, int] | None = None  # [[provider]] number (0: top), key, how many


class NoKeysError(SshpinError):
    """No authentic keys are obtainable for a host (unknown capsul, bad key material, ...)."""

    exit_status = EXIT_NO_KEYS


class VerificationError(NoKeysError):
    """A signature, fingerprint or key check failed: the material must not be trusted."""


class UnsupportedKeyError(VerificationError):
    """A well-formed key of a type we refuse (DSA, short RSA, unknown): skipped, not fatal."""


class ProviderError(SshpinError):
    """The provider could not be reached, or answered with an error."""

    exit_status = EXIT_PROVIDER


class AuthError(ProviderError):
    """The provider rejected the API token, or no token is available."""


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def verbose() -> bool:
    return _verbose


def line(subject: str, message: str, hint: str = "") -> str:
    """The one format of every stderr line."""
    text = f"sshpin: {subject}: {message}" if subject else f"sshpin: {message}"
    return f"{text} (fix: {hint})" if hint else text


def say_once_per(first_time: "Callable[[str], bool] | None") -> None:
    """Let ``first_time(problem)`` decide whether ``say`` prints a problem (its message and
    hint, whatever host spelling it comes with). The hook sets it: ssh runs it two or three
    times per connection, and each problem is said once."""
    global _first_time
    _first_time = first_time


def to_logging() -> None:
    """Send ``say`` and ``log`` to ``logging.getLogger("sshpin")`` (warnings and debug
    records) instead of stderr: the Python API and the integrations call it, so that a
    paramiko or asyncssh program's stderr stays its own."""
    global _logger
    import logging

    _logger = logging.getLogger("sshpin")


def say(subject: str, message: str, hint: str = "") -> None:
    """A warning or notice the user must see (one line)."""
    if _first_time is not None and not _first_time(line("", message, hint)):
        return
    if _logger is not None:
        _logger.warning("%s", line(subject, message, hint))
        return
    sys.stderr.write(line(subject, message, hint) + "\n")


def log(subject: str, message: str) -> None:
    """A ``-v`` note: printed only when verbose (a debug record once ``to_logging``)."""
    if _logger is not None:
        _logger.debug("%s", line(subject, message))
    elif _verbose:
        sys.stderr.write(line(subject, message) + "\n")


def terminal(text: str) -> None:
    """Text for the person at the terminal that is not a message: a prompt, a progress line
    (written as is, flushed)."""
    sys.stderr.write(text)
    sys.stderr.flush()


def report(error: SshpinError, subject: str = "") -> int:
    """Print an error once, in the one format, and return its exit status."""
    say(subject, error.message, error.hint)
    return error.exit_status
