"""A FIFO (or a directory) planted at any of sshpin's state files never blocks: every state
file is opened with O_NONBLOCK and refused, once opened, unless it is a regular file (issue
30, item 7). ssh waits on the hook with no timeout of its own, so each call here runs under a
subprocess timeout of 8 s: a hang fails the test instead of holding the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer

LIMIT = 8.0  # each call; a blocked open held the hook to its deadline, or forever


def key_args(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


def plant(path: Path, kind: str = "fifo") -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.mkdir(mode=0o700)


def old(path: Path, seconds: float = 3600) -> None:
    """As a marker left long ago: past the 30 s between refetches."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def cached(pin: Pin, provider: ReferenceServer, keys: Keys) -> Pin:
    """capsul-l's authentic key, cached by one hook call."""
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    done = pin.hook("HOSTNAME", "capsul-l", *key_args(keys, keys.host), timeout=60)
    assert done.stdout.split()[1:] == key_args(keys, keys.host), done.stderr
    return pin


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_mismatch_marker_that_is_not_a_file_neither_blocks_nor_refetches(
    cached: Pin, provider: ReferenceServer, keys: Keys, kind: str
) -> None:
    """An unknown key may cause one refetch per 30 s per host, recorded by the marker's
    mtime. A FIFO there held the hook (opened for writing, it waits for a reader); a marker
    that cannot be written must not make every call a refetch either: no refetch at all."""
    marker = cached.cache / "capsul" / "mismatch" / "capsul-l"
    plant(marker, kind)
    old(marker)
    before = provider.api.count()
    for _ in range(3):
        done = cached.hook("HOSTNAME", "capsul-l", *key_args(keys, keys.forged), timeout=LIMIT)
        assert done.returncode == 0, done.stderr
        forged = " ".join(key_args(keys, keys.forged))
        authentic = " ".join(key_args(keys, keys.host))
        assert done.stdout.splitlines() == [
            f"capsul-l {authentic}",
            f"@revoked capsul-l {forged}",
        ], done.stderr
    assert provider.api.count() == before  # the cached answer: no refetch, no storm


def test_a_regular_mismatch_marker_still_allows_one_refetch(
    cached: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """The marker is written by rename (never by opening what is there): the rule holds."""
    before = provider.api.count()
    for _ in range(3):
        done = cached.hook("HOSTNAME", "capsul-l", *key_args(keys, keys.forged), timeout=LIMIT)
        assert "@revoked capsul-l " in done.stdout, done.stderr
    assert provider.api.count() == before + 1
    marker = cached.cache / "capsul" / "mismatch" / "capsul-l"
    assert marker.is_file() and not marker.is_symlink()
    assert abs(marker.stat().st_mtime - time.time()) < 60


@pytest.mark.parametrize("where", ["history.log", "lock", "entry", "document", "pin"])
def test_a_fifo_at_a_state_file_on_the_fetch_path_never_blocks(
    cached: Pin, provider: ReferenceServer, keys: Keys, where: str
) -> None:
    """A fetch appends the key changes to history.log and takes the provider's lock; it
    reads the host entry, the document and the pin. A FIFO at any of them: the hook answers
    with the authentic keys, promptly."""
    paths = {
        "history.log": cached.cache / "history.log",
        "lock": cached.cache / "capsul" / "lock",
        "entry": cached.cache / "capsul" / "hosts" / "capsul-l",
        "document": cached.cache / "capsul" / "document.json",
        "pin": cached.dir / "pins" / "capsul-l",
    }
    provider.api.set_keys("capsul-l", [keys.pub(keys.host), keys.pub(keys.rebuilt)])
    cached.expire()  # the next call fetches: a key change to record in history.log
    plant(paths[where])
    done = cached.hook("HOSTNAME", "capsul-l", *key_args(keys, keys.host), timeout=LIMIT)
    assert done.returncode == 0, done.stderr
    got = sorted(line.split(" ", 1)[1] for line in done.stdout.splitlines())
    want = sorted(" ".join(key_args(keys, k)) for k in (keys.host, keys.rebuilt))
    assert got == want, done.stderr
    assert "Traceback" not in done.stderr


def test_cache_history_with_a_fifo_says_so(cached: Pin) -> None:
    plant(cached.cache / "history.log")
    done = cached.run("cache", "history", timeout=LIMIT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"sshpin: history {cached.cache / 'history.log'}: not a regular file: refusing it"
    ]


def test_pin_and_unpin_over_a_fifo(cached: Pin, keys: Keys) -> None:
    """``sshpin pin`` backs the old pin up before replacing it: a FIFO there is no pin to
    back up (it was read by opening it, and waited for a writer), and it is replaced."""
    fifo = cached.dir / "pins" / "capsul-l"
    plant(fifo)
    done = cached.run("pin", "capsul-l", stdin=keys.pub(keys.forged) + "\n", timeout=LIMIT)
    assert done.returncode == 0, done.stderr
    assert fifo.is_file()
    hook = cached.hook("HOSTNAME", "capsul-l", *key_args(keys, keys.forged), timeout=LIMIT)
    assert hook.stdout.startswith(f"capsul-l {' '.join(key_args(keys, keys.forged))}\n")
    fifo.unlink()
    plant(fifo)
    done = cached.run("unpin", "capsul-l", timeout=LIMIT)  # a FIFO is no pin: removed, said
    assert done.returncode == 2, done.stderr
    assert done.stderr == "sshpin: unpin capsul-l: capsul-l is not pinned\n"
    assert not fifo.exists()


@pytest.mark.parametrize("command", ["doctor", "setup"])
def test_a_fifo_as_the_ssh_snippet_is_refused_not_waited_on(cached: Pin, command: str) -> None:
    snippet = cached.dir / "ssh_config"
    plant(snippet)
    args = ["--ssh-config", str(cached.dir / "user_ssh_config")] if command == "setup" else []
    done = cached.run(command, *args, timeout=LIMIT)
    assert f"{snippet}: not a regular file" in done.stdout + done.stderr, done
    assert "Traceback" not in done.stderr
    assert snippet.exists() and not snippet.is_file()  # left alone: not sshpin's to replace


def test_marking_a_mismatch_replaces_what_is_there_without_opening_it(tmp_path: Path) -> None:
    """A FIFO planted between the check and the mark (the hook checks first): the new marker
    is renamed over it. Run in a child process, so that a blocking open fails the test."""
    cache = tmp_path / "cache"
    marker = cache / "capsul" / "mismatch" / "capsul-l"
    plant(marker)
    code = (
        "import sys; from sshpin.store.cachedir import ProviderCache; "
        "ProviderCache(sys.argv[1], 'capsul').mark_mismatch('capsul-l', 1000.0)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=LIMIT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert marker.is_file() and marker.stat().st_mtime == 1000.0
