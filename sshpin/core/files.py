"""Safe file primitives for everything sshpin keeps on disk.

- ``ensure_dir``: a private directory (0700), refused if another user owns it or others may
  write to it (as ssh's StrictModes);
- ``atomic_write``: temp file, fsync, rename: readers see the old or the new file, never a torn
  one;
- ``read_small``: a regular file of ours of bounded size, opened without following links;
  anything else reads as missing.

Standard library only: on the hook's hot path.
"""

from __future__ import annotations

import os
import stat

from sshpin.errors import ConfigError


def ensure_dir(path: str, create: bool = True) -> None:
    """Create ``path`` (0700) if missing; refuse it if others own it or may write to it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"cache dir {path}: not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"cache dir {path}: owned by uid {st.st_uid}, not by you: refusing to use it"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"cache dir {path}: writable by group or others: refusing to use it "
            f"(fix: chmod 700 {path})"
        )


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".tmp.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def read_small(path: str, limit: int = 65536) -> bytes | None:
    """A regular file's bytes, or None if missing, not ours, or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > limit:
            return None
        return os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
