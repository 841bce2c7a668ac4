"""The cache (DESIGN.md section 5).

Layout, under the cache dir (0700, owner only)::

    config.marshal                  compiled configuration (see config.py)
    history.log                     append-only record of key-set changes (JSON lines)
    <provider>/document.json        the last verified provider document, with its fetch facts
    <provider>/hosts/<host>         one small text entry per host ssh asked about
    <provider>/mismatch/<host>      its mtime: the last refetch caused by an unknown key
    <provider>/lock                 advisory lock held while fetching

A cached hit reads one host entry: O(1) in the number of cached hosts, no JSON, no import
beyond the standard library's cheapest modules. Host entries are derived from the document
(which they copy the fetch time of), so a new document makes every entry older than it stale.
Every write is atomic (temp file, fsync, rename); a damaged file reads as a miss.
"""

from __future__ import annotations

import os
import stat

from sshpin.errors import ConfigError, VerificationError
from sshpin.keys import HostKey, parse_line

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from sshpin.document import Document

ENTRY_MAGIC = "sshpin-host 1"
MISMATCH_INTERVAL = 30.0  # at most one refetch per host for an unknown key in this many seconds
FUTURE_SKEW = 300.0  # a fetch time further in the future than this means the clock jumped back


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


class HostEntry:
    """What the hook prints for one host: the keys, and where and when they came from."""

    __slots__ = (
        "address",
        "capsul",
        "fetched_at",
        "host",
        "keys",
        "revoked",
        "rule",
        "signed",
        "source",
    )

    def __init__(
        self,
        host: str,
        capsul: str,
        rule: str,
        fetched_at: float,
        keys: list[HostKey],
        signed: bool = False,
        source: str = "",
        revoked: list[HostKey] | None = None,
        address: str = "",
    ) -> None:
        self.address = address  # the capsul's address, for ``sshpin proxy``
        self.revoked = revoked or []
        self.host = host
        self.capsul = capsul
        self.rule = rule
        self.fetched_at = fetched_at
        self.keys = keys
        self.signed = signed
        self.source = source

    def lines(self, token: str) -> list[str]:
        """The known_hosts lines for ``token`` (ssh's %H): the keys, then ``@revoked`` ones."""
        out = [k.known_hosts_line(token) for k in self.keys]
        return out + [k.known_hosts_line(token, "@revoked") for k in self.revoked]

    def has(self, blob: bytes | None) -> bool:
        """Is the server's key (``%K``) among the keys? None (an ORDER call) asks for none."""
        return blob is None or any(k.blob == blob for k in self.keys)

    def to_text(self) -> str:
        lines = [
            ENTRY_MAGIC,
            f"host {self.host}",
            f"capsul {self.capsul}",
            f"rule {self.rule}",
            f"fetched {self.fetched_at!r}",
            f"signed {int(self.signed)}",
            f"source {self.source}",
        ]
        if self.address:
            lines.append(f"address {self.address}")
        lines += [f"key {k.openssh()}" for k in self.keys]
        lines += [f"revoked {k.openssh()}" for k in self.revoked]
        lines.append("end")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> HostEntry | None:
        """Parse an entry; None for anything damaged (truncated, garbage, bad key)."""
        lines = text.split("\n")
        if len(lines) < 9 or lines[0] != ENTRY_MAGIC or lines[-2:] != ["end", ""]:
            return None
        fields: dict[str, str] = {}
        keys: list[HostKey] = []
        revoked: list[HostKey] = []
        try:
            for line in lines[1:-2]:
                name, _, value = line.partition(" ")
                if name == "key":
                    keys.append(parse_line(value))
                elif name == "revoked":
                    revoked.append(parse_line(value))
                else:
                    fields[name] = value
            return cls(
                host=fields["host"],
                capsul=fields["capsul"],
                rule=fields["rule"],
                fetched_at=float(fields["fetched"]),
                keys=keys,
                signed=fields["signed"] == "1",
                source=fields["source"],
                revoked=revoked,
                address=fields.get("address", ""),
            )
        except (KeyError, ValueError, VerificationError):
            return None


def age(fetched_at: float, now: float) -> float:
    """Seconds since a fetch; a fetch "from the future" (the clock went back) counts as old."""
    if fetched_at > now + FUTURE_SKEW:
        return float("inf")
    return max(0.0, now - fetched_at)


class ProviderCache:
    """One provider's part of the cache."""

    def __init__(self, root: str, provider: str) -> None:
        self.root = root
        self.provider = provider
        self.dir = os.path.join(root, provider)

    def host_path(self, host: str) -> str:
        return os.path.join(self.dir, "hosts", host)

    def read_host(self, host: str) -> HostEntry | None:
        raw = read_small(self.host_path(host))
        if raw is None:
            return None
        try:
            return HostEntry.from_text(raw.decode("ascii"))
        except UnicodeDecodeError:
            return None

    def peek_host(self, host: str) -> tuple[str, str] | None:
        """(host, capsul) of an entry, without parsing its keys: for listing many entries.
        None for a missing or visibly damaged entry (bad header or no end line)."""
        raw = read_small(self.host_path(host))
        if raw is None or not raw.endswith(b"\nend\n"):
            return None
        head = raw.split(b"\n", 3)
        if len(head) < 4 or head[0] != ENTRY_MAGIC.encode() or not head[1].startswith(b"host "):
            return None
        if not head[2].startswith(b"capsul "):
            return None
        try:
            return head[1][5:].decode("ascii"), head[2][7:].decode("ascii")
        except UnicodeDecodeError:
            return None

    def _ensure(self, *parts: str) -> str:
        ensure_dir(self.root)
        path = self.dir
        ensure_dir(path)
        for part in parts:
            path = os.path.join(path, part)
            ensure_dir(path)
        return path

    def write_host(self, entry: HostEntry) -> None:
        self._ensure("hosts")
        atomic_write(self.host_path(entry.host), entry.to_text().encode("ascii"))

    def drop_host(self, host: str) -> bool:
        try:
            os.unlink(self.host_path(host))
            return True
        except FileNotFoundError:
            return False

    def hosts(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(os.path.join(self.dir, "hosts")) if n[0] != ".")
        except OSError:
            return []

    @property
    def document_path(self) -> str:
        return os.path.join(self.dir, "document.json")

    def read_document(self) -> Document | None:
        from sshpin.document import MAX_BODY, Document

        raw = read_small(self.document_path, limit=4 * MAX_BODY)
        if raw is None:
            return None
        try:
            return Document.from_bytes(raw)
        except ValueError:
            return None

    def write_document(self, doc: Document) -> None:
        self._ensure()
        atomic_write(self.document_path, doc.to_bytes())
        # The hook compares host entries with this mtime (see hostkeys._fresh).
        os.utime(self.document_path, (doc.fetched_at, doc.fetched_at))

    def drop_document(self) -> bool:
        try:
            os.unlink(self.document_path)
            return True
        except FileNotFoundError:
            return False

    def mismatch_allowed(self, host: str, now: float) -> bool:
        """May an unknown key for this host trigger a refetch now? (rate limit, section 5)"""
        try:
            last = os.stat(os.path.join(self.dir, "mismatch", host)).st_mtime
        except OSError:
            return True
        return age(last, now) >= MISMATCH_INTERVAL

    def mark_mismatch(self, host: str, now: float) -> None:
        path = os.path.join(self._ensure("mismatch"), host)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.utime(path, (now, now))

    def lock(self, timeout: float) -> FetchLock:
        """The provider's fetch lock, as a context manager (see FetchLock)."""
        try:
            directory = self._ensure()
        except OSError:
            directory = self.dir  # cannot be made (a read-only cache): FetchLock says so
        return FetchLock(os.path.join(directory, "lock"), timeout)


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

        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
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


def history_path(root: str) -> str:
    return os.path.join(root, "history.log")


def append_history(root: str, records: list[dict[str, object]]) -> None:
    """Append records as JSON lines with one ``write`` each, under O_APPEND.

    A process killed mid-append can leave at most its own last line torn; readers skip a
    line that does not parse, so earlier records are never lost or corrupted. A record
    begins with a newline when the file does not end in one (a torn line is then sealed off).
    """
    import json

    if not records:
        return
    ensure_dir(root)
    path = history_path(root)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        prefix = b""
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    prefix = b"\n"
        for record in records:
            os.write(fd, prefix + json.dumps(record, sort_keys=True).encode() + b"\n")
            prefix = b""
        os.fsync(fd)
    finally:
        os.close(fd)


def history_record(
    when: float,
    provider: str,
    capsul: str,
    name: str,
    addresses: list[str],
    event: str,
    before: set[str],
    after: set[str],
    source: str,
) -> dict[str, object]:
    """One history record: a change of a key set, as fingerprints added and removed."""
    import time

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "provider": provider,
        "capsul": capsul,
        "name": name,
        "addresses": addresses,
        "event": event,
        "added": sorted(after - before),
        "removed": sorted(before - after),
        "source": source,
    }


def read_history(root: str) -> list[dict[str, object]]:
    import json

    out: list[dict[str, object]] = []
    try:
        with open(history_path(root), "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn line from a killed writer
                if isinstance(record, dict):
                    out.append(record)
    except FileNotFoundError:
        pass
    return out
