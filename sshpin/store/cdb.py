"""A constant database: a file written once (atomically), read by key in a few small reads.

The layout is D. J. Bernstein's cdb with 64-bit offsets: a header of 256 (position, slots)
pairs, the records (key length, value length, key, value), then 256 hash tables of
(hash, record position) slots, each half empty. A read is: one 16-byte header pair, one slot
(or a few on collision), one record. Nothing is parsed but the record asked for, so a lookup
costs the same at 10 keys or 10 million. Keys may repeat: ``get_all`` returns every value.

Standard library only (the hook's path reads it). The writer streams records to a temporary
file in the target's directory and keeps 16 bytes per record in memory; ``commit`` fsyncs and
renames it into place, ``abort`` removes it: readers see the old file or the new, never a mix.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Iterator

from sshpin.core.files import open_regular

MAGIC = b"sshpcdb1"
_HEAD = struct.Struct("<QQ")  # per table: position, number of slots
_REC = struct.Struct("<II")  # key length, value length
_SLOT = struct.Struct("<QQ")  # hash, record position (0: empty)
HEADER = len(MAGIC) + 256 * _HEAD.size
MAX_RECORD = 1 << 20  # a value larger than this is damage, not data
MAX_PROBES = 64  # reading stops after this many slots: a crafted file cannot make us spin


def _hash(key: bytes) -> int:
    return zlib.crc32(key) | 1 << 32  # never 0, so a zero slot means empty


class Writer:
    """Streams records into a temporary file next to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(path) or "."
        self.tmp = os.path.join(directory, f".tmp.{os.getpid()}.{os.urandom(4).hex()}.cdb")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.tmp, flags, 0o600)
        self.file = os.fdopen(self.fd, "w+b", buffering=1 << 16)
        self.file.write(b"\0" * HEADER)
        self.pos = HEADER
        self.hashes = array("Q")
        self.positions = array("Q")
        self.count = 0

    def add(self, key: bytes, value: bytes) -> None:
        self.hashes.append(_hash(key))
        self.positions.append(self.pos)
        self.file.write(_REC.pack(len(key), len(value)))
        self.file.write(key)
        self.file.write(value)
        self.pos += _REC.size + len(key) + len(value)
        self.count += 1

    def commit(self, mtime: float | None = None) -> None:
        """Write the tables and header, fsync, and rename over ``path``."""
        self.finish(mtime)
        self.install()

    def finish(self, mtime: float | None = None) -> None:
        """Write the tables and header and fsync: the file is whole, still aside (``install``
        renames it over ``path``; ``abort`` removes it)."""
        try:
            buckets: list[list[int]] = [[] for _ in range(256)]
            for i, h in enumerate(self.hashes):
                buckets[h & 255].append(i)
            heads = []
            for bucket in buckets:
                slots = len(bucket) * 2
                table = array("Q", bytes(16 * slots))
                for i in bucket:
                    h = self.hashes[i]
                    at = (h >> 8) % slots
                    while table[2 * at]:
                        at = (at + 1) % slots
                    table[2 * at] = h
                    table[2 * at + 1] = self.positions[i]
                heads.append(_HEAD.pack(self.pos, slots))
                if slots:
                    data = table.tobytes() if _little() else _swap(table)
                    self.file.write(data)
                    self.pos += len(data)
            self.file.seek(0)
            self.file.write(MAGIC + b"".join(heads))
            self.file.flush()
            os.fsync(self.fd)
            self.file.close()
            if mtime is not None:
                os.utime(self.tmp, (mtime, mtime))
        except BaseException:
            self.abort()
            raise

    def install(self) -> None:
        """Rename the finished file over ``path``: readers see the old index or the new one."""
        try:
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def _little() -> bool:
    import sys

    return sys.byteorder == "little"


def _swap(table: array[int]) -> bytes:
    copy = array("Q", table)
    copy.byteswap()
    return copy.tobytes()


class Reader:
    """An open constant database. ``None`` from ``open`` for a missing or foreign file."""

    def __init__(self, fd: int, size: int, mtime: float) -> None:
        self.fd = fd
        self.size = size
        self.mtime = mtime

    @classmethod
    def open(cls, path: str) -> Reader | None:
        try:
            fd, st = open_regular(path)  # a FIFO or a link there is no database
        except OSError:
            return None
        try:
            if st.st_size < HEADER:
                raise OSError("not a database")
            if os.pread(fd, len(MAGIC), 0) != MAGIC:
                raise OSError("not a database")
        except OSError:
            os.close(fd)
            return None
        return cls(fd, st.st_size, st.st_mtime)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, size: int, at: int) -> bytes:
        if at < 0 or size < 0 or at + size > self.size:
            raise ValueError("damaged database")
        data = os.pread(self.fd, size, at)
        if len(data) != size:
            raise ValueError("damaged database")
        return data

    def get_all(self, key: bytes) -> list[bytes]:
        """Every value stored under ``key``; ValueError for a damaged file."""
        h = _hash(key)
        pos, slots = _HEAD.unpack(self._read(_HEAD.size, len(MAGIC) + (h & 255) * _HEAD.size))
        if not slots:
            return []
        if slots > self.size // _SLOT.size:
            raise ValueError("damaged database")
        out: list[bytes] = []
        at = (h >> 8) % slots
        for _ in range(min(slots, MAX_PROBES)):
            slot_h, rec = _SLOT.unpack(self._read(_SLOT.size, pos + at * _SLOT.size))
            if not rec:
                return out
            if slot_h == h:
                k, v = self._record(rec)
                if k == key:
                    out.append(v)
            at = (at + 1) % slots
        return out

    def get(self, key: bytes) -> bytes | None:
        found = self.get_all(key)
        return found[0] if found else None

    def _record(self, at: int) -> tuple[bytes, bytes]:
        klen, vlen = _REC.unpack(self._read(_REC.size, at))
        if klen > MAX_RECORD or vlen > MAX_RECORD:
            raise ValueError("damaged database")
        data = self._read(klen + vlen, at + _REC.size)
        return data[:klen], data[klen:]

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every record in the order written (streamed: one record in memory at a time)."""
        end = _HEAD.unpack(self._read(_HEAD.size, len(MAGIC)))[0]
        at = HEADER
        while at < end:
            k, v = self._record(at)
            at += _REC.size + len(k) + len(v)
            if k.startswith(prefix):
                yield k, v
