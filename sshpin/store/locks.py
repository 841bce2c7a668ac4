"""The advisory lock under which one process fetches while the others wait for its result."""

from __future__ import annotations

import os


class FetchLock:
    """An advisory lock; ``with`` yields True when held, False when not had in time.

    Waiting is bounded: a stuck holder must not hang every ssh connection, so after
    ``timeout`` the caller goes on without the lock (and then serves what it can).

    A lock file that cannot be created (a read-only cache dir) yields True with ``problem``
    set: no sshpin can write that cache, so there is nothing to wait for; the caller fetches
    and serves, and its best-effort writes fail.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1
        self.problem = ""

    def __enter__(self) -> bool:
        import fcntl
        import time

        # O_NONBLOCK: a FIFO planted as the lock opens at once (and locks as a file does)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            self.problem = f"cache dir {os.path.dirname(self.path)}: {e.strerror or e}"
            return True
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock
            self.fd = -1
