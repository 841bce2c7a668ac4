"""API tokens (sshpin.conf(5), TOKENS): token_command, ``SSHPIN_TOKEN_<NAME>``, the OS keyring.

The token travels only in the Authorization header. It is never put in argv, a log line, an
exception message, or a file sshpin writes; keyring is imported only when the first two
sources are empty (it probes D-Bus, which can be slow).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from sshpin.errors import AuthError, ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

KEYRING_SERVICE = "sshpin"
TOKEN_COMMAND_TIMEOUT = 10.0
TOKEN_COMMAND_MAX = 64 << 10  # bytes of output: a token is a line, never megabytes
KEYRING_TIMEOUT = 5.0  # a backend waiting on a D-Bus service that never answers
KEYRING_LOGIN_TIMEOUT = 30.0  # login and logout: time for a person to answer an unlock prompt


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
        f"no API token for provider {provider!r}",
        f"sshpin login {provider}, set {env_name(provider)}, or set token_command in the config",
    )


def token_hint(provider: str, token_command: str) -> str:
    """What to do about a rejected token, from the source that gave it."""
    source = overriding_source(provider, token_command)
    if source is None:
        return f"sshpin login {provider}"
    return f"the token came from {source}: correct it there (it is used before the keyring)"


def _run_token_command(provider: str, command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ConfigError(f"provider {provider!r}: token_command: {e}") from e
    if not argv:
        raise ConfigError(f"provider {provider!r}: token_command is empty")
    try:
        returncode, stdout = _run_bounded(argv)
    except _TooLong:
        raise AuthError(
            f"provider {provider!r}: token_command {argv[0]!r} printed more than "
            f"{TOKEN_COMMAND_MAX >> 10} KiB (it was stopped); a token is one line"
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"provider {provider!r}: token_command {argv[0]!r} gave no token within "
            f"{TOKEN_COMMAND_TIMEOUT:g} s (it was stopped)"
        ) from None
    except OSError as e:
        raise AuthError(f"provider {provider!r}: token_command {argv[0]!r} failed: {e}") from None
    if returncode != 0:
        raise AuthError(
            f"provider {provider!r}: token_command {argv[0]!r} exited with {returncode}"
        )
    try:
        return stdout.decode("utf-8").splitlines()[0] if stdout.strip() else ""
    except UnicodeDecodeError:
        raise AuthError(f"provider {provider!r}: token_command printed non-UTF-8 bytes") from None


class _TooLong(Exception):
    """The token command printed more than TOKEN_COMMAND_MAX bytes."""


def _run_bounded(argv: list[str]) -> tuple[int, bytes]:
    """Run the token command in a process group of its own, under TOKEN_COMMAND_TIMEOUT, and
    read at most TOKEN_COMMAND_MAX bytes of its output (its stderr is discarded); at the
    deadline, past the cap (or any interruption) the whole group is killed, so a child that
    keeps the output pipe open, or floods it, cannot hold the hook either."""
    import selectors
    import signal
    import time

    from sshpin.core import bounded

    bounded.doing("running token_command")
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        process_group=0,
    ) as proc:
        assert proc.stdout is not None
        bounded.adopt(proc.pid)
        deadline = time.monotonic() + TOKEN_COMMAND_TIMEOUT
        chunks: list[bytes] = []
        size = 0
        try:
            with selectors.DefaultSelector() as waiting:
                waiting.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise subprocess.TimeoutExpired(argv, TOKEN_COMMAND_TIMEOUT)
                    if not waiting.select(left):
                        continue
                    data = os.read(proc.stdout.fileno(), 1 << 16)
                    if not data:
                        break
                    chunks.append(data)
                    size += len(data)
                    if size > TOKEN_COMMAND_MAX:
                        raise _TooLong
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            stdout = b"".join(chunks)
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            raise
        finally:
            bounded.release(proc.pid)
        return proc.returncode, stdout


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
    from sshpin.core.bounded import TimedOut, call, doing

    doing("reading the token from the OS keyring")
    try:
        value = call(lambda: keyring.get_password(KEYRING_SERVICE, provider), KEYRING_TIMEOUT)
    except TimedOut:
        raise _keyring_unavailable(provider, f"no answer within {KEYRING_TIMEOUT:g} s") from None
    except keyring.errors.NoKeyringError:
        return None
    except Exception as e:  # backends raise many kinds; none may leak a token, only a name
        raise _keyring_unavailable(provider, type(e).__name__) from None
    return str(value) if value else None


def read_token(provider: str, prompt_url: str) -> str:
    """The token for ``sshpin login``: a no-echo prompt on a terminal, else one line of stdin."""
    import sys

    if sys.stdin.isatty():
        import getpass

        try:
            text = getpass.getpass(f"API token for {provider} ({prompt_url}): ")
        except EOFError:
            text = ""
        return _check(text, "the prompt")
    data = sys.stdin.buffer.read(65537)
    if len(data) > 65536:
        raise AuthError("token on standard input is longer than 64 KiB")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AuthError("token on standard input is not ASCII text") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise AuthError("standard input holds more than one line; give the token alone")
    return _check(lines[0] if lines else "", "standard input")


def _need_keyring(provider: str) -> None:
    try:
        import keyring  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"the keyring package is not installed; set {env_name(provider)} "
            "or token_command in the config instead"
        ) from None


def _no_keyring(provider: str, e: BaseException) -> ConfigError:
    return ConfigError(
        f"no OS keyring backend is available ({type(e).__name__}); set {env_name(provider)} "
        "or token_command in the config instead (see sshpin(1), TOKENS)"
    )


def store_token(provider: str, token: str) -> str:
    """Store the token in the OS keyring and read it back; returns the backend's name."""
    _need_keyring(provider)
    import keyring
    import keyring.errors

    found: list[object] = []  # the backend, once keyring has chosen it

    def store() -> str | None:
        found.append(keyring.get_keyring())
        keyring.set_password(KEYRING_SERVICE, provider, token)
        return keyring.get_password(KEYRING_SERVICE, provider)

    try:
        stored = _waiting(store)
    except ConfigError:
        raise  # no answer in time
    except keyring.errors.NoKeyringError as e:
        raise _no_keyring(provider, e) from None
    except Exception as e:  # backends raise many kinds; the message may not hold the token
        name = type(found[0]).__name__ if found else "no backend chosen"
        raise ConfigError(f"the keyring ({name}) refused the token: {type(e).__name__}") from None
    backend = found[0]
    if stored != token:
        raise ConfigError(
            f"the keyring backend {type(backend).__module__} did not keep the token "
            f"(it stores nothing); set {env_name(provider)} or token_command instead"
        )
    return f"{type(backend).__module__}.{type(backend).__name__}"


def delete_token(provider: str) -> bool:
    """Remove the provider's token from the keyring; False when none was stored."""
    _need_keyring(provider)
    import keyring
    import keyring.errors

    def delete() -> bool:
        if keyring.get_password(KEYRING_SERVICE, provider) is None:
            return False
        keyring.delete_password(KEYRING_SERVICE, provider)
        return True

    try:
        if not _waiting(delete):
            return False
    except ConfigError:
        raise  # no answer in time
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.NoKeyringError as e:
        raise _no_keyring(provider, e) from None
    except Exception as e:
        raise ConfigError(f"the keyring refused to delete the token: {type(e).__name__}") from None
    return True


def _waiting(fn: Callable[[], T]) -> T:
    """A keyring call of login or logout: a person may have to answer an unlock prompt, so
    after 3 s sshpin says what it waits for; after KEYRING_LOGIN_TIMEOUT it gives up with a
    ConfigError (a backend on a D-Bus that never answers would otherwise hang for ever)."""
    from sshpin.core.bounded import TimedOut, call
    from sshpin.errors import say

    def notice() -> None:
        say("", "waiting for the OS keyring (answer its unlock prompt if one is open; "
            f"giving up after {KEYRING_LOGIN_TIMEOUT:g} s)")  # fmt: skip

    try:
        return call(fn, KEYRING_LOGIN_TIMEOUT, "sshpin-keyring", notice, 3.0)
    except TimedOut:
        raise ConfigError(
            f"the OS keyring gave no answer within {KEYRING_LOGIN_TIMEOUT:g} s",
            "unlock it, or use an SSHPIN_TOKEN_<NAME> variable or token_command instead",
        ) from None


def overriding_source(provider: str, token_command: str) -> str | None:
    """A token source that is consulted before the keyring, if one is set."""
    if token_command:
        return "token_command in the config"
    if os.environ.get(env_name(provider)):
        return f"the {env_name(provider)} variable"
    return None


def _account_path(provider: str) -> str:
    import os

    from sshpin.core.config import config_dir

    return os.path.join(config_dir(), "accounts", provider)


def record_account(provider: str, account: str) -> str | None:
    """``sshpin login`` saw ``account``: keep it beside the token (a 0600 file under the config
    dir), so every later document must be for it. Returns the account recorded before."""
    import os

    from sshpin.core.files import atomic_write, ensure_dir

    before = recorded_account(provider)
    path = _account_path(provider)
    ensure_dir(os.path.dirname(os.path.dirname(path)))
    ensure_dir(os.path.dirname(path))
    atomic_write(path, (account + "\n").encode())
    return before


def recorded_account(provider: str) -> str | None:
    """The account ``sshpin login`` last saw for the provider, if any."""
    from sshpin.core.files import read_small

    try:
        raw = read_small(_account_path(provider), limit=1024)
    except OSError:
        return None
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    return text if text and text.isprintable() else None


def forget_account(provider: str) -> None:
    import os

    try:
        os.unlink(_account_path(provider))
    except FileNotFoundError:
        pass
