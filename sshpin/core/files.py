"""Safe file primitives for everything sshpin keeps on disk.

- ``ensure_dir``: a private directory (0700), refused if another user owns it or others may
  write to it (as ssh's StrictModes);
- ``atomic_write``: temp file, fsync, rename: readers see the old or the new file, never a torn
  one;
- ``open_regular``: the one way a state file is opened for reading: without blocking or
  following a link, and refused (``NotRegularFile``) unless ``fstat`` says it is a regular
  file; ``open_append`` the same for the one file appended to in place (history.log);
- ``read_small``: a regular file of ours of bounded size; anything else reads as missing;
- ``read_trusted``: a file that decides trust (the config, a CA key file, a CA bundle): a
  regular file, not writable by others, of bounded size; anything else is a ConfigError.

Every open is ``O_NONBLOCK | O_NOFOLLOW``: a FIFO or a device planted where a file is expected
never blocks the caller (ssh waits on the hook with no timeout), it is refused once opened.
Files are replaced by rename (``atomic_write``), never by opening what is at their path for
writing: a FIFO opened for writing waits for a reader (with O_NONBLOCK: ENXIO).

On the hook's hot path, without ``os``: ``import os`` costs a quarter of a bare interpreter's
start (it builds the collections ABCs behind ``os.environ``: 6.4M instructions against the
26.3M of ``python -I -S -c pass``, counted with callgrind). ``ensure_dir``, ``read_small``,
the safety checks and the path helpers below use the built-in ``posix`` module, already
loaded by the interpreter, and plain string operations (POSIX paths, as ``posixpath``); the
functions that write import ``os`` themselves.
"""

import posix
import sys

from sshpin.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import os

# the file type bits of st_mode (POSIX), as the stat module has them, without importing it
_S_IFMT, _S_IFDIR, _S_IFREG = 0o170000, 0o040000, 0o100000
_S_IWGRP, _S_IWOTH = 0o020, 0o002


def is_dir(mode: int) -> bool:
    """``stat.S_ISDIR``."""
    return mode & _S_IFMT == _S_IFDIR


def is_file(mode: int) -> bool:
    """``stat.S_ISREG``."""
    return mode & _S_IFMT == _S_IFREG


def getenv(name: str) -> str | None:
    """``os.environ.get(name)``. Once ``os`` is imported, its ``environ`` is the one to read
    (code may have changed it); before, nothing can have, and ``posix.environ`` (bytes, as
    the process started) says the same."""
    os = sys.modules.get("os")
    if os is not None:
        value: str | None = os.environ.get(name)
        return value
    raw = posix.environ.get(name.encode())
    return None if raw is None else raw.decode(sys.getfilesystemencoding(), "surrogateescape")


def join(first: str, *rest: str) -> str:
    """``os.path.join`` for str paths."""
    path = first
    for part in rest:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def dirname(path: str) -> str:
    """``os.path.dirname``."""
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def isdir(path: str) -> bool:
    """``os.path.isdir``: a directory, links followed; any error is False."""
    try:
        return is_dir(posix.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def ensure_dir(path: str, create: bool = True) -> None:
    """Create ``path`` (0700) if missing; refuse it if others own it or may write to it."""
    try:
        st = posix.lstat(path)
    except FileNotFoundError:
        if not create:
            raise
        import os

        os.makedirs(path, mode=0o700, exist_ok=True)
        st = posix.lstat(path)
    if not is_dir(st.st_mode):
        raise ConfigError(f"cache dir {path}: not a directory")
    if st.st_uid != posix.geteuid():
        raise ConfigError(
            f"cache dir {path}: owned by uid {st.st_uid}, not by you: refusing to use it"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"cache dir {path}: writable by group or others: refusing to use it "
            f"(fix: chmod 700 {path})"
        )


def atomic_write(path: str, data: bytes, mode: int = 0o600, mtime: float | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one;
    ``mtime`` (a timestamp the file's time carries: a fetch time, a marker's) is set before the
    rename. Whatever was at ``path`` (a FIFO, a link) is replaced, never opened."""
    import os

    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".tmp.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
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


READ_FLAGS = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_NONBLOCK | posix.O_CLOEXEC
APPEND_FLAGS = (
    posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_NONBLOCK
    | posix.O_CLOEXEC
)  # fmt: skip


class NotRegularFile(OSError):
    """A FIFO, device, socket or directory where a state file is expected."""

    def __init__(self, path: str) -> None:
        super().__init__(22, "not a regular file", path)  # EINVAL

    def __str__(self) -> str:
        return f"{self.filename}: not a regular file"


def _checked(fd: int, path: str) -> "os.stat_result":
    """``fstat(fd)`` of a regular file; else the fd is closed and NotRegularFile raised."""
    try:
        st = posix.fstat(fd)
        if not is_file(st.st_mode):
            raise NotRegularFile(path)
    except BaseException:
        posix.close(fd)
        raise
    return st


def open_regular(path: str) -> "tuple[int, os.stat_result]":
    """``path`` open for reading, and its status: the one way sshpin opens a state file.
    Never blocks (O_NONBLOCK: a FIFO's open returns at once) and never follows a link
    (O_NOFOLLOW: ELOOP). FileNotFoundError when missing; NotRegularFile (an OSError) for a
    FIFO, a device, a socket or a directory, closed again; another OSError for a link or a
    read error. The caller closes the fd."""
    fd = posix.open(path, READ_FLAGS)
    return fd, _checked(fd, path)


def open_append(path: str) -> "tuple[int, os.stat_result]":
    """``path`` open for appending (created 0600 if missing) and reading back, as
    ``open_regular``: a FIFO there is refused, not written to. (O_RDWR, not O_WRONLY: a FIFO
    opened write-only waits for a reader, or with O_NONBLOCK fails with ENXIO.)"""
    fd = posix.open(path, APPEND_FLAGS, 0o600)
    return fd, _checked(fd, path)


def _read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a regular file (short reads looped)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = posix.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_small(path: str, limit: int = 65536) -> bytes | None:
    """A regular file's bytes, or None if missing, not ours, not regular, or too large."""
    try:
        fd, st = open_regular(path)
    except OSError:
        return None
    try:
        if st.st_uid != posix.geteuid() or st.st_size > limit:
            return None
        data = _read_fd(fd, limit)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        posix.close(fd)


def check_file_safe(path: str, st: "os.stat_result", what: str) -> None:
    """As ssh's StrictModes: refuse a file or directory others may write (they could reroute
    trust): it must be ours (or root's) and not writable by group or others."""
    uid = posix.geteuid()
    if st.st_uid not in (uid, 0):
        raise ConfigError(
            f"{what} {path}: owned by uid {st.st_uid}, not by you: refusing it",
            f"use a {what} of your own",
        )
    if st.st_mode & (_S_IWGRP | _S_IWOTH):
        raise ConfigError(
            f"{what} {path}: writable by group or others: refusing it", f"chmod go-w {path}"
        )


def check_dir_safe(path: str, what: str) -> None:
    """``path``, if it exists, is a directory of ours (or root's) that others cannot write."""
    try:
        st = posix.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if not is_dir(st.st_mode):
        raise ConfigError(f"{what} {path}: not a directory")
    check_file_safe(path, st, what)


def read_trusted(path: str, what: str, limit: int = 1 << 20) -> "tuple[bytes, os.stat_result]":
    """The bytes of a file that decides trust, and its status. Raises FileNotFoundError when
    it is missing; ConfigError, naming ``what`` and the path, for a link, a FIFO or any other
    non-regular file, a file others may write, one over ``limit`` bytes, or a read error."""
    import errno
    import os

    try:
        fd, st = open_regular(path)
    except FileNotFoundError:
        raise
    except NotRegularFile:
        raise ConfigError(f"{what} {path}: not a regular file: refusing it") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConfigError(f"{what} {path}: a symbolic link: refusing it") from None
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
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
