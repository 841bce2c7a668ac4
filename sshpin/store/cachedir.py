"""The cache directory (docs/architecture.md): one provider's part of it.

Layout, under the cache dir (0700, owner only)::

    config.marshal                  compiled configuration (see core/config.py)
    history.log                     append-only record of key-set changes (store/history.py)
    known_hosts                     the managed file of ProxyCommand mode (commands/proxy.py)
    <provider>/document.json        the last verified provider document, with its fetch facts
                                    (a paged listing: its header; the capsuls are in the index)
    <provider>/listing.cdb          the listing's index: capsul by id or address in O(1)
    <provider>/paged                present once the provider was seen to page its listing
    <provider>/hosts/<host>         one small text entry per host ssh asked about
    <provider>/mismatch/<host>      its mtime: the last refetch caused by an unknown key
    <provider>/lock                 advisory lock held while fetching (a refresh: its swap only)
    <provider>/refresh.lock         held by ``sshpin cache refresh`` for its whole fetch

A cached hit reads one host entry: O(1) in the number of cached hosts. Host entries are derived
from the document (which they copy the fetch time of), so a new document makes every entry
older than it stale.
"""

from __future__ import annotations

import os

from sshpin.core.files import atomic_write, ensure_dir, is_file, read_small
from sshpin.errors import log
from sshpin.store.entries import (
    ENTRY_MAGIC,
    HostEntry,
    age,
    document_path,
    entry_path,
    read_entry,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from sshpin.store.locks import FetchLock

MISMATCH_INTERVAL = 30.0  # at most one refetch per host for an unknown key in this many seconds
MAX_DOCUMENT = 16 * 1024 * 1024  # the cached form of a document (4 MiB of JSON, re-encoded)


class ProviderCache:
    """One provider's part of the cache."""

    def __init__(self, root: str, provider: str) -> None:
        self.root = root
        self.provider = provider
        self.dir = os.path.join(root, provider)

    def host_path(self, host: str) -> str:
        return entry_path(self.root, self.provider, host)

    def read_host(self, host: str) -> HostEntry | None:
        return read_entry(self.host_path(host))

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
        return document_path(self.root, self.provider)

    def read_document(self) -> bytes | None:
        """The cached document's bytes (trust/document.py parses them), or None."""
        return read_small(self.document_path, limit=MAX_DOCUMENT)

    def document_stamp(self) -> bytes | None:
        """Which document.json is cached (inode, size, mtime): the listing's index names the
        one it was built for, so an index left behind by a crash or a rewrite is not used."""
        return _stamp(self.document_path)

    def write_document(self, data: bytes, fetched_at: float) -> None:
        self._ensure()
        # Host entries are compared with this mtime (see entries.ask).
        atomic_write(self.document_path, data, mtime=fetched_at)

    def stage_document(self, data: bytes, fetched_at: float) -> tuple[str, bytes]:
        """The next document.json, written aside (a temporary file in the provider's dir,
        fsynced, its mtime the fetch time): (its path, the stamp it will have once renamed,
        which keeps inode, size and mtime). ``install_document`` renames it into place."""
        directory = self._ensure()
        tmp = os.path.join(directory, f".tmp.{os.getpid()}.{os.urandom(4).hex()}.json")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.utime(fd, (fetched_at, fetched_at))
            stamp = _stamp(tmp)
            if stamp is None:
                raise OSError(f"{tmp}: gone as it was written")
        except BaseException:
            unstage(tmp)
            raise
        finally:
            os.close(fd)
        return tmp, stamp

    def sweep_staged(self, older_than: float, now: float) -> None:
        """Remove what a refresh killed midway left behind (a listing's temporary index and
        document), once older than any refresh that may still be writing it."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if name.startswith(".tmp.") and name.endswith((".cdb", ".json")):
                path = os.path.join(self.dir, name)
                try:
                    if now - os.lstat(path).st_mtime > older_than:
                        os.unlink(path)
                except OSError:
                    pass

    def install_document(self, staged: str) -> None:
        """Rename a staged document over document.json (readers see the old or the new)."""
        try:
            os.replace(staged, self.document_path)
        except BaseException:
            unstage(staged)
            raise

    def drop_document(self) -> bool:
        dropped = False
        for path in (self.document_path, self.listing_path, self.paged_path):
            try:
                os.unlink(path)
                dropped = True
            except FileNotFoundError:
                pass
        return dropped

    @property
    def listing_path(self) -> str:
        """The listing's index (store/cdb.py, written by trust/document.py ``ListingWriter``):
        a host first seen after a listing is found in it with a few small reads."""
        return os.path.join(self.dir, "listing.cdb")

    @property
    def paged_path(self) -> str:
        return os.path.join(self.dir, "paged")

    def paged(self) -> bool:
        """Has the provider been seen to page its listing? Then a cold miss asks ``?host=``."""
        return os.path.exists(self.paged_path)

    def mark_paged(self) -> None:
        self._ensure()
        atomic_write(self.paged_path, b"the provider pages its listing: cold misses use ?host=\n")

    def mismatch_allowed(self, host: str, now: float) -> bool:
        """May an unknown key for this host trigger a refetch now? (rate limit, section 5)

        The marker's mtime is the last such refetch. A marker that is not a regular file (a
        FIFO, a directory, a link: nothing sshpin writes) allows none: it cannot record one,
        so allowing would make every call a refetch."""
        path = os.path.join(self.dir, "mismatch", host)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if not is_file(st.st_mode):
            log(host, f"{path}: not a regular file: no refetch for an unknown key (remove it)")
            return False
        return age(st.st_mtime, now) >= MISMATCH_INTERVAL

    def mark_mismatch(self, host: str, now: float) -> None:
        """Record a refetch for an unknown key: a new marker, renamed into place (whatever is
        there is replaced, never opened: a FIFO opened for writing waits for a reader)."""
        atomic_write(os.path.join(self._ensure("mismatch"), host), b"", mtime=now)

    @property
    def chain_path(self) -> str:
        """The signing-key state reached by following the provider's chain (trust/keychain.py).
        Not cache: ``cache clear`` keeps it, as it keeps the rollback floors."""
        return os.path.join(self.dir, "signing-chain.json")

    def read_chain(self) -> bytes | None:
        return read_small(self.chain_path)

    def write_chain(self, data: bytes) -> None:
        self._ensure()
        atomic_write(self.chain_path, data)

    @property
    def account_path(self) -> str:
        """The account of the provider's first document, when neither the config nor ``sshpin
        login`` names one: every later document must be for it. Not cache: ``cache clear``
        keeps it (forgetting it would let another account's signed documents in)."""
        return os.path.join(self.dir, "account")

    def first_account(self, api: str) -> str | None:
        """The account recorded for ``api`` (another API's record does not count)."""
        raw = read_small(self.account_path, limit=2048)
        lines = raw.decode("utf-8", "replace").split("\n") if raw else []
        if len(lines) != 3 or lines[0] != api or lines[2]:
            return None
        return lines[1] if lines[1] and lines[1].isprintable() else None

    def record_first_account(self, api: str, account: str) -> None:
        self._ensure()
        atomic_write(self.account_path, f"{api}\n{account}\n".encode())

    @property
    def newest_path(self) -> str:
        return os.path.join(self.dir, "newest.json")

    def floors(self) -> dict[str, float]:
        """The newest ``generated_at`` accepted, by key (an account, capsul or host, and a
        signing key: ``trust/verify.floor_key``): the floors below which a signed statement
        is a rollback. Kept across ``cache clear`` (it is not cache: forgetting it would let
        an old statement back in). A damaged file reads as no floors."""
        import json

        raw = read_small(self.newest_path)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        floors: dict[str, float] = {}
        for key, value in data.items() if isinstance(data, dict) else ():
            try:
                floors[str(key)] = float(value)
            except (ValueError, TypeError):
                continue  # one damaged floor: the others still hold
        return floors

    def record_newest(self, key: str, generated_at: float) -> None:
        import json

        raw = read_small(self.newest_path)
        try:
            data = json.loads(raw) if raw else {}
            if not isinstance(data, dict):
                data = {}
        except ValueError:
            data = {}
        if float(data.get(key, 0.0) or 0.0) >= generated_at:
            return
        data[key] = generated_at
        self._ensure()
        atomic_write(self.newest_path, json.dumps(data, sort_keys=True).encode())

    def refresh_lock(self) -> FetchLock:
        """Held by ``sshpin cache refresh`` for its whole fetch, so two do not run at once; the
        hook never takes it (it takes ``lock``, which a refresh holds only for its swap)."""
        from sshpin.store.locks import FetchLock

        try:
            directory = self._ensure()
        except OSError:
            directory = self.dir  # cannot be made (a read-only cache): FetchLock says so
        return FetchLock(os.path.join(directory, "refresh.lock"), 0.0)

    def lock(self, timeout: float) -> FetchLock:  # imported only past a hit
        """The provider's fetch lock, as a context manager (see FetchLock)."""
        from sshpin.store.locks import FetchLock

        try:
            directory = self._ensure()
        except OSError:
            directory = self.dir  # cannot be made (a read-only cache): FetchLock says so
        return FetchLock(os.path.join(directory, "lock"), timeout)


def _stamp(path: str) -> bytes | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()


def unstage(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
