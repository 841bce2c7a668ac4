"""The listing index: a verified listing as a constant database (store/cdb.py), read by id or
address in a few small reads, never whole."""

from __future__ import annotations

import json
from typing import Any

from sshpin.errors import VerificationError
from sshpin.trust.document import Capsul, Document

_META, _STAMP, _ID, _IP = b"meta", b"stamp", b"id\0", b"ip\0"


class Listing:
    """A verified listing as the cache keeps it: the document's header and one record per
    capsul, found by id or address in a few small reads (never the whole listing)."""

    def __init__(self, reader: Any, header: Document, stamp: bytes) -> None:
        self.reader = reader
        self.header = header
        self.stamp = stamp  # the cached document.json it indexes (ProviderCache.document_stamp)

    @classmethod
    def open(cls, path: str) -> Listing | None:
        """None for a missing or damaged index."""
        from sshpin.store.cdb import Reader

        reader = Reader.open(path)
        if reader is None:
            return None
        try:
            raw, stamp = reader.get(_META), reader.get(_STAMP)
            if raw is None or stamp is None:
                raise ValueError("no header")
            return cls(reader, Document.from_bytes(raw), stamp)
        except ValueError:
            reader.close()
            return None

    def close(self) -> None:
        self.reader.close()

    def by_id(self, capsul_id: str) -> Capsul | None:
        raw = self.reader.get(_ID + capsul_id.encode())
        return self._capsul(raw) if raw is not None else None

    def _capsul(self, raw: bytes) -> Capsul:
        """revoked_keys of any page apply account-wide: revocation wins on every read."""
        capsul = Capsul.from_json(json.loads(raw))
        if self.header.revoked:
            capsul.keys = [k for k in capsul.keys if k not in self.header.revoked]
        return capsul

    def by_address(self, address: str) -> list[Capsul]:
        found = [self.by_id(v.decode()) for v in self.reader.get_all(_IP + address.encode())]
        return [c for c in found if c is not None]

    def capsuls(self) -> Any:
        """Every capsul, streamed in the order listed."""
        for _, raw in self.reader.items(_ID):
            yield self._capsul(raw)

    def ids(self) -> Any:
        """Every capsul id, streamed, without parsing the records."""
        for key, _ in self.reader.items(_ID):
            yield key[len(_ID) :].decode()


class ListingWriter:
    """Streams capsuls of a verified listing into a new index; ``commit`` makes it the cache's
    listing at once, ``abort`` (or any failure before) leaves the old one untouched."""

    def __init__(self, path: str) -> None:
        from sshpin.store.cdb import Writer

        self.writer = Writer(path)
        self.ids: set[str] = set()

    def add(self, capsul: Capsul) -> None:
        if capsul.id in self.ids:
            raise VerificationError(f"listing lists capsul {capsul.id} twice")
        self.ids.add(capsul.id)
        raw = json.dumps(capsul.to_json(), separators=(",", ":")).encode()
        self.writer.add(_ID + capsul.id.encode(), raw)
        for address in {capsul.ipv4, capsul.ipv6} - {None}:
            assert address is not None
            self.writer.add(_IP + address.encode(), capsul.id.encode())

    def commit(self, header: Document, stamp: bytes) -> None:
        """Make this the index of the document.json whose ``stamp`` is given (written first)."""
        self.finish(header, stamp)
        self.writer.install()

    def finish(self, header: Document, stamp: bytes) -> None:
        """Complete the index of the document.json whose ``stamp`` is given, still aside:
        ``install`` makes it the cache's listing (``sshpin cache refresh``: under the lock)."""
        saved = header.capsuls
        header.capsuls = []
        try:
            self.writer.add(_META, header.to_bytes())
        finally:
            header.capsuls = saved
        self.writer.add(_STAMP, stamp)
        self.writer.finish()

    def install(self) -> None:
        self.writer.install()

    def abort(self) -> None:
        self.writer.abort()
