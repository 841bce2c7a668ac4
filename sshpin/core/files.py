"""Safe file primitives for everything sshpin keeps on disk.

- ``ensure_dir``: a private directory (0700), refused if another user owns it or others may
  write to it (as ssh's StrictModes);
- ``atomic_write``: temp file, fsync, rename: readers see the old or the new file, never a torn
  one;
- ``read_small``: a regular file of ours of bounded size, opened without following links;
  anything else reads as missing;
- ``read_trusted``: a file that decides trust (the config, a CA key file, a CA bundle): a
  regular file, not writable by others, of bounded size; anything else is a ConfigError.

Every open is ``O_NONBLOCK | O_NOFOLLOW``: a FIFO or a device planted where a file is expected
never blocks the caller (ssh waits on the hook with no timeout), it is refused once opened.

Standard library only: on the hook's hot path.
"""

from __future__ import annotations

import errno
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


READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a regular file (short reads looped)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_small(path: str, limit: int = 65536) -> bytes | None:
    """A regular file's bytes, or None if missing, not ours, not regular, or too large."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > limit:
            return None
        data = _read_fd(fd, limit)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def check_file_safe(path: str, st: os.stat_result, what: str) -> None:
    """As ssh's StrictModes: refuse a file or directory others may write (they could reroute
    trust): it must be ours (or root's) and not writable by group or others."""
    uid = os.geteuid()
    if st.st_uid not in (uid, 0):
        raise ConfigError(
            f"{what} {path}: owned by uid {st.st_uid}, not by you: refusing it",
            f"use a {what} of your own",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{what} {path}: writable by group or others: refusing it", f"chmod go-w {path}"
        )


def check_dir_safe(path: str, what: str) -> None:
    """``path``, if it exists, is a directory of ours (or root's) that others cannot write."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path}: not a directory")
    check_file_safe(path, st, what)


def read_trusted(path: str, what: str, limit: int = 1 << 20) -> tuple[bytes, os.stat_result]:
    """The bytes of a file that decides trust, and its status. Raises FileNotFoundError when
    it is missing; ConfigError, naming ``what`` and the path, for a link, a FIFO or any other
    non-regular file, a file others may write, one over ``limit`` bytes, or a read error."""
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConfigError(f"{what} {path}: a symbolic link: refusing it") from None
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path}: not a regular file: refusing it")
        check_file_safe(path, st, what)
        if st.st_size > limit:
            raise ConfigError(f"{what} {path}: larger than {limit} bytes: refusing it")
        data = _read_fd(fd, limit)
        if len(data) > limit:
            raise ConfigError(f"{what} {path}: larger than {limit} bytes: refusing it")
        return data, st
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
