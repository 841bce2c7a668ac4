"""API tokens (DESIGN.md section 3): token_command, ``SSHPIN_TOKEN_<NAME>``, the OS keyring.

The token travels only in the Authorization header. It is never put in argv, a log line, an
exception message, or a file sshpin writes; keyring is imported only when the first two
sources are empty (it probes D-Bus, which can be slow).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from sshpin.errors import AuthError, ConfigError

KEYRING_SERVICE = "sshpin"
TOKEN_COMMAND_TIMEOUT = 10.0


def env_name(provider: str) -> str:
    """``SSHPIN_TOKEN_<NAME>``: the provider name upper-cased, ``-`` turned into ``_``."""
    return "SSHPIN_TOKEN_" + provider.upper().replace("-", "_")


def _check(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise AuthError(f"token from {source} is empty")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise AuthError(f"token from {source} contains spaces or control characters")
    return token


def get_token(provider: str, token_command: str = "") -> str:
    if token_command:
        return _check(_run_token_command(provider, token_command), "token_command")
    value = os.environ.get(env_name(provider))
    if value:
        return _check(value, env_name(provider))
    token = keyring_get(provider)
    if token:
        return _check(token, "the keyring")
    raise AuthError(
        f"no API token for provider {provider!r}: run 'sshpin login {provider}', "
        f"set {env_name(provider)}, or set token_command in the config"
    )


def _run_token_command(provider: str, command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ConfigError(f"provider {provider!r}: token_command: {e}") from e
    if not argv:
        raise ConfigError(f"provider {provider!r}: token_command is empty")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOKEN_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError(f"provider {provider!r}: token_command {argv[0]!r} failed: {e}") from None
    if done.returncode != 0:
        raise AuthError(
            f"provider {provider!r}: token_command {argv[0]!r} exited with {done.returncode}"
        )
    try:
        return done.stdout.decode("utf-8").splitlines()[0] if done.stdout.strip() else ""
    except UnicodeDecodeError:
        raise AuthError(f"provider {provider!r}: token_command printed non-UTF-8 bytes") from None


def _keyring_unavailable(provider: str, why: str) -> AuthError:
    return AuthError(
        f"no usable OS keyring ({why}); set {env_name(provider)} or token_command instead"
    )


def keyring_get(provider: str) -> str | None:
    try:
        import keyring
        import keyring.errors
    except ImportError:
        return None
    try:
        value = keyring.get_password(KEYRING_SERVICE, provider)
    except keyring.errors.NoKeyringError:
        return None
    except Exception as e:  # backends raise many kinds; none may leak a token, only a name
        raise _keyring_unavailable(provider, type(e).__name__) from None
    return str(value) if value else None
