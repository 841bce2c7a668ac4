"""``sshpin login`` / ``logout`` on a real Secret Service (gnome-keyring under D-Bus)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import MUTE_KEYRING, SSHPIN, TOKEN, Keys, Pin
from tests.refserver import ReferenceServer

pytestmark = pytest.mark.slow


def keyring_env(pin: Pin) -> dict[str, str]:
    env = {k: v for k, v in pin.env.items() if not k.startswith(("DBUS_", "PYTHON_KEYRING"))}
    env.pop("SSHPIN_TOKEN_CAPSUL")
    return env


def in_session(pin: Pin, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in a fresh D-Bus session with an unlocked gnome-keyring, as a
    headless Linux user has it; ``$SSHPIN`` is the installed sshpin."""
    for tool in ("dbus-run-session", "gnome-keyring-daemon", "secret-tool"):
        assert shutil.which(tool), f"{tool} is needed: apt-get install dbus gnome-keyring"
    prologue = "printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1\n"
    env = keyring_env(pin)
    env["SSHPIN"] = SSHPIN
    return subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", prologue + script],
        input=stdin.decode(),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


LOOKUP = "secret-tool lookup service sshpin username capsul"


def test_login_checks_stores_serves_and_logout_removes(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], name="t")
    script = (
        '"$SSHPIN" login capsul; echo "login=$?"\n'
        f'{LOOKUP}; echo; echo "lookup=$?"\n'
        # the hook, with no token in the environment, fetches with the keyring's token
        '"$SSHPIN" known-hosts HOSTNAME capsul-test1 NONE NONE; echo "hook=$?"\n'
        '"$SSHPIN" logout capsul; echo "logout=$?"\n'
        f'{LOOKUP} || echo "gone"\n'
        '"$SSHPIN" logout capsul; echo "again=$?"\n'
    )
    before = provider.api.requests
    done = in_session(pin, script, stdin=(TOKEN + "\n").encode())
    out = done.stdout
    assert "login=0" in out, done.stderr
    assert "stored the token for 'capsul' in the keyring (keyring.backends.SecretService" in out
    assert f"\n{TOKEN}\nlookup=0" in out  # really in the Secret Service, as secret-tool sees it
    blob = keys.pub(keys.host).split()[1]
    assert f"capsul-test1 ssh-ed25519 {blob}\nhook=0" in out
    assert provider.api.requests - before == 2  # login's check, then the hook's fetch
    assert "no API token" not in done.stderr
    assert "removed the token for 'capsul' from the keyring" in out
    assert "gone" in out
    assert "no token for 'capsul' was stored in the keyring\nagain=0" in out


def test_login_refuses_a_rejected_token_and_stores_nothing(pin: Pin) -> None:
    done = in_session(
        pin, f'"$SSHPIN" login capsul; echo "login=$?"; {LOOKUP} || echo none', b"wrong-token\n"
    )
    assert "login=3" in done.stdout
    assert "none" in done.stdout
    ours = [line for line in done.stderr.splitlines() if not line.startswith("dbus-daemon")]
    assert ours == [
        "sshpin: login capsul: provider 'capsul': token rejected (HTTP 401); "
        "the token was not stored"
    ]


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        ("keyring.backends.fail.Keyring", "no OS keyring backend is available"),
        ("keyring.backends.null.Keyring", "did not keep the token"),
    ],
)
def test_login_without_a_usable_keyring_names_the_other_sources(
    pin: Pin, backend: str, words: str
) -> None:
    env = keyring_env(pin)
    env["PYTHON_KEYRING_BACKEND"] = backend
    done = subprocess.run(
        [SSHPIN, "login", "capsul"], input=TOKEN + "\n", env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert words in done.stderr
    assert "SSHPIN_TOKEN_CAPSUL" in done.stderr and "token_command" in done.stderr
    assert done.stderr.count("\n") == 1 and TOKEN not in done.stderr


@pytest.mark.slow
def test_login_and_logout_with_a_keyring_that_never_answers(pin: Pin, tmp_path: Path) -> None:
    """A backend on a D-Bus that never answers (or an unlock prompt nobody answers): login
    and logout say after 3 s what they wait for, give up after 30 s with one error line,
    and exit non-zero; the token never appears."""
    import time

    (tmp_path / "mutekeyring.py").write_text(MUTE_KEYRING)
    env = keyring_env(pin)
    env.update(PYTHONPATH=str(tmp_path), PYTHON_KEYRING_BACKEND="mutekeyring.Mute")
    for args, stdin in ((["login", "capsul"], TOKEN + "\n"), (["logout", "capsul"], None)):
        started = time.monotonic()
        done = subprocess.run(
            [SSHPIN, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120,
            stdin=None if stdin else subprocess.DEVNULL,
        )  # fmt: skip
        took = time.monotonic() - started
        assert done.returncode == 1, done.stderr
        assert 29 < took < 60, took
        lines = done.stderr.splitlines()
        assert lines[0].startswith("sshpin: waiting for the OS keyring"), lines
        assert "the OS keyring gave no answer within 30 s" in lines[1] and len(lines) == 2
        assert TOKEN not in done.stderr


def test_login_input_errors(pin: Pin) -> None:
    env = keyring_env(pin)
    for stdin, words in [("", "empty"), ("a\nb\n", "more than one line"), ("a b\n", "spaces")]:
        done = subprocess.run(
            [SSHPIN, "login", "capsul"], input=stdin, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, (stdin, done.stderr)
        assert done.stderr.startswith("sshpin: login capsul: ") and words in done.stderr
    done = subprocess.run(
        [SSHPIN, "login", "nosuch"], input=TOKEN, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "no provider named 'nosuch'" in done.stderr


def test_login_on_a_terminal_prompts_without_echo(pin: Pin, tmp_path: Path) -> None:
    found = tmp_path / "found"
    env = keyring_env(pin)
    script = (
        "printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1\n"
        f'"{SSHPIN}" login capsul && {LOOKUP} > "{found}"\n'
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session whose controlling terminal is the pty
        os.execvpe("dbus-run-session", ["dbus-run-session", "--", "sh", "-c", script], env)
    seen = b""
    deadline = time.monotonic() + 60
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break  # the child closed the terminal
        if not chunk:
            break
        seen += chunk
        if not sent and b"API token for capsul (" in seen:
            os.write(fd, TOKEN.encode() + b"\n")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert sent, seen
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert TOKEN.encode() not in seen  # no echo
    assert b"stored the token for 'capsul'" in seen
    assert found.read_text().strip() == TOKEN
