"""What one ssh connection shares across its hook calls (ssh runs the hook up to three times:
ORDER, HOSTNAME, ADDRESS): the problems it was told, and the time its calls spent fetching.

The connection is the hook's parent process, an ``ssh``, named by its pid and start time
(Linux ``/proc``); a marker in ``<cache>/said/`` records each thing. Whenever that cannot be
told (another parent, no ``/proc``, an unwritable cache), each call stands alone: a problem is
said, and a call has its whole deadline. Imported only when a problem is said or a fetch
starts, never on a cached hit.
"""

from __future__ import annotations

import hashlib
import os
import time

from sshpin.core.config import cache_dir
from sshpin.core.files import ensure_dir
from sshpin.errors import SshpinError

SAID_DIR = "said"  # in the cache dir: one empty file per thing an ssh connection was told
SAID_FOR = 3600.0  # an ssh connection's markers are pruned after this long
FETCH_BUDGET = 14.0  # seconds: what all the hook calls of one ssh connection may spend past a hit
TIMED_OUT = "\0timed out"  # noted when a call's deadline ends it: the later calls do not fetch


def identity() -> str | None:
    """The parent ssh's pid and start time, or None when the parent is no ssh (or unknown)."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/comm", "rb") as f:
            if f.read().strip() != b"ssh":
                return None
        with open(f"/proc/{parent}/stat", "rb") as f:
            started = f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return f"{parent}\0{started}"


def _path(what: str) -> str | None:
    """Where the connection's marker for ``what`` lives; None when it cannot be told."""
    who = identity()
    if who is None:
        return None
    name = hashlib.sha256(f"{who}\0{what}".encode()).hexdigest()[:40]
    return os.path.join(cache_dir(), SAID_DIR, name)


def _marker(what: str) -> tuple[str, bool] | None:
    """The connection's marker for ``what``, and whether this call made it (the first to
    ask); None when the connection or the cache cannot be told."""
    path = _path(what)
    if path is None:
        return None
    directory = os.path.dirname(path)
    try:
        ensure_dir(os.path.dirname(directory))
        ensure_dir(directory)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        return path, False
    except (OSError, SshpinError):
        return None
    _prune(directory)
    return path, True


def note(what: str) -> None:
    """Record ``what`` for the rest of this ssh connection (a wait that ran out)."""
    _marker(what)


def noted(what: str) -> bool:
    """Was ``what`` recorded by an earlier call of this ssh connection?"""
    path = _path(what)
    return path is not None and os.path.lexists(path)


def first_time(problem: str) -> bool:
    """Is this the first time this ssh connection hears of ``problem``? Each of its calls
    finds the same problem; it is said once. When that cannot be told, it is said."""
    marker = _marker(problem)
    return marker is None or marker[1]


def fetch_budget(total: float = FETCH_BUDGET) -> float | None:
    """Seconds left of this connection's ``total`` for fetching: the first call past a hit
    starts the clock (the marker's mtime); none at all once a call ran out of time
    (``TIMED_OUT``). None when the connection cannot be told."""
    if noted(TIMED_OUT):
        return 0.0
    marker = _marker("\0fetch budget")
    if marker is None:
        return None
    path, made = marker
    if made:
        return total
    try:
        started = os.lstat(path).st_mtime
    except OSError:
        return None
    return total - max(0.0, time.time() - started)


def _prune(directory: str) -> None:
    now = time.time()
    try:
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if now - os.lstat(path).st_mtime > SAID_FOR:
                os.unlink(path)
    except OSError:
        pass
