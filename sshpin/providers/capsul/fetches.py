"""What a capsul provider fetches, in sequence: the account's listing (every page, each
verified, streamed into a new index) and one host's ``?host=`` lookup; and the two ``Fetch``es
``obtain`` runs them through (trust/obtain.py: lock, re-check, write, history, fallback).

The rules each answer must pass are the trust core's (trust/verify.py); what is sequenced
here is which answers are asked for, in what order, and what is kept.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

from sshpin.errors import NoKeysError, ProviderError
from sshpin.providers.matching import lookup_term
from sshpin.store.entries import HostEntry
from sshpin.store.history import HistoryRecord
from sshpin.trust import verify
from sshpin.trust.document import Capsul, Document
from sshpin.trust.listing import Listing, ListingWriter
from sshpin.trust.obtain import Fetch

if TYPE_CHECKING:
    from sshpin.providers.capsul import CapsulProvider

History = list[HistoryRecord]


def fetch_listing(
    provider: CapsulProvider, previous: Document | None, now: float, all_pages: bool
) -> tuple[Document, ListingWriter | None, History]:
    """The account's listing, verified. One page: that document. Paged: with ``all_pages``,
    every page, each verified, streamed into a new index (the writer returned, to commit);
    without, the first page alone (``Document.partial``: the caller asks ``?host=``). A
    listing is whole or nothing: any page that fails leaves the cache as it was. Returns the
    changes of a paged listing (a single page's are the document's ``changes_since``)."""
    from urllib.parse import quote

    what = f"provider {provider.name!r}"
    with provider.session() as s:
        first = provider.fetch_answer(s, provider.url, previous, now)
        if not first.next_page or not all_pages:
            return first, None, []
        first.etag = None  # no revalidation of a paged listing as a whole
        old = provider.listing()
        writer = ListingWriter(provider.store.listing_path)
        try:
            changes: History = []
            seen: set[str] = set()
            page, pages = first, 1
            while True:
                for capsul in page.capsuls:
                    writer.add(capsul)
                    changes += _changed(capsul, old, first)
                if provider.progress is not None:
                    provider.progress(pages, len(writer.ids))
                token = verify.next_page(page, seen, pages, what)
                if not token:
                    break
                seen.add(token)
                url = f"{provider.url}?page_token={quote(token, safe='')}"
                asked = provider.asked(page_token=token)
                page = provider.fetch_answer(s, url, None, now, asked)  # floor: the account's
                pages += 1
                verify.check_same_listing(first, page, pages, what)
                verify.merge_page(first, page)
            first.pages, first.count, first.capsuls = pages, len(writer.ids), []
            if old is not None:
                changes += _removed(old, writer.ids, first)
        except BaseException:
            writer.abort()
            raise
        finally:
            if old is not None:
                old.close()
    return first, writer, changes


def fetch_lookup(
    provider: CapsulProvider, host: str, previous: HostEntry | None, now: float
) -> tuple[HostEntry, Document | None]:
    """``GET /capsuls?host=H``: one host's entry, verified as any document, then filtered
    here (a server may ignore the parameter), and never older than what was accepted for
    that capsul (or the account's listing) from the same signing key. And the whole listing,
    when the server ignored ``?host=`` and answered it all (no ``host``, no
    ``next_page_token``): to keep as the listing, as its first fetch would have."""
    from urllib.parse import quote

    aliases, dns = provider.cfg.aliases, bool(provider.cfg.get("resolve_dns"))
    term = lookup_term(host, aliases, dns)
    what = f"provider {provider.name!r}"
    if term is None:
        raise NoKeysError(f"not a capsul of provider {provider.name!r} (no address to ask for)")
    with provider.session() as s:
        url = f"{provider.url}?host={quote(term, safe='')}"
        doc = provider.fetch_answer(s, url, None, now, provider.asked(host=term, listing=False))
    mine = [c for c in doc.capsuls if c.matches(term)]
    # a lookup answer names its host; without, the server ignored ?host=: its listing
    whole = doc if not doc.host and not doc.next_page else None  # never a page of it
    if not doc.host and doc.next_page:
        try:
            provider.store.mark_paged()
        except OSError:
            pass  # best effort: the next cold miss sees the pages again
    if not mine and doc.next_page:
        raise ProviderError(
            f"{what} pages its listing but ignores ?host=: {term} is not on the first page",
            f"'sshpin cache refresh --all' fetches every page of provider {provider.name!r}",
        )
    if not mine and doc.capsuls and doc.host:
        others = ", ".join(c.id for c in doc.capsuls[:3])
        raise verify.MixAndMatch(
            f"{what}: lookup for {term} answered with another host's capsul ({others}): refused"
        )
    doc = copy.copy(doc)
    doc.capsuls = mine
    entry = provider.derive(doc, host)
    if doc.signed:
        cached = (previous.capsul, previous.generated) if previous and previous.signed else None
        floor = verify.lookup_floor(doc, entry.capsul, cached, provider.store.floors())
        verify.check_rollback(doc.generated_at, floor, what, f"answer for {entry.capsul}")
    provider.record_newest(doc, "capsul", entry.capsul)  # (and the account, if none is known)
    return entry, whole


class DocumentFetch(Fetch[Document]):
    """What a capsul provider fetches: its account's listing (``all_pages``: every page)."""

    def __init__(
        self, provider: CapsulProvider, subject: str = "", all_pages: bool = False
    ) -> None:
        self.provider = provider
        self.subject = subject or f"provider {provider.name!r}"  # the host asked about
        self.all_pages = all_pages
        self.changed: History = []
        self.pending: ListingWriter | None = None  # a paged listing's index, to commit

    def read(self) -> Document | None:
        raw = self.provider.store.read_document()
        if raw is None:
            return None
        try:
            doc = Document.from_bytes(raw)
        except ValueError:
            return None  # damaged: a miss
        return doc if self.provider.usable(doc, self.subject) else None

    def fetch(self, previous: Document | None) -> Document:
        doc, self.pending, self.changed = fetch_listing(
            self.provider, previous, time.time(), self.all_pages
        )
        return doc

    def changes(self, item: Document, previous: Document | None) -> History:
        if item.partial:
            return []  # the first page of a paged listing: nothing is kept of it
        if self.pending is None:  # a paged listing's were found while its pages came in
            paged = previous is not None and previous.pages > 1  # its capsuls were in the index
            self.changed = item.changes_since(None if paged else previous)
        return self.changed

    def write(self, item: Document) -> None:
        store = self.provider.store
        if item.partial:  # the provider pages its listing: lookups from now on
            store.mark_paged()
            return
        pending, self.pending = self.pending, None
        try:
            store.write_document(item.to_bytes(), item.fetched_at)
            self.provider.index(item, pending)
        except BaseException:
            if pending is not None:
                pending.abort()
            raise
        if pending is not None:
            store.mark_paged()
        self.provider.record_newest(item, "account", item.account)


class LookupFetch(Fetch[HostEntry]):
    """What a cold miss (or any miss of a paged provider) fetches: ``?host=``, one host's
    entry."""

    def __init__(self, provider: CapsulProvider, host: str, subject: str = "") -> None:
        self.provider = provider
        self.host = host
        self.subject = subject or host
        self.changed: History = []
        self.listing: DocumentFetch | None = None
        self.whole: Document | None = None

    def read(self) -> HostEntry | None:
        return self.provider.cached_entry(self.host)

    def fetch(self, previous: HostEntry | None) -> HostEntry:
        entry, whole = fetch_lookup(self.provider, self.host, previous, time.time())
        self.listing = DocumentFetch(self.provider, self.subject) if whole is not None else None
        self.whole = whole
        return entry

    def changes(self, item: HostEntry, previous: HostEntry | None) -> History:
        from sshpin.store.history import history_record

        if self.listing is not None and self.whole is not None:  # kept as the listing
            self.changed = self.listing.changes(self.whole, self.listing.read())
            return self.changed
        new = {k.sha256() for k in item.keys}
        if previous is not None and previous.capsul == item.capsul:
            old = {k.sha256() for k in previous.keys}
            event = "changed"
        else:
            old, event = set(), "first-seen"
        self.changed = []
        if old != new or event == "first-seen":
            self.changed = [history_record(item.fetched_at, self.provider.name, item.capsul, "",
                                           [item.address] if item.address else [], event, old,
                                           new, item.source)]  # fmt: skip
        return self.changed

    def write(self, item: HostEntry) -> None:
        if self.listing is not None and self.whole is not None:
            self.listing.write(self.whole)  # the whole listing a server ignoring ?host= sent
        self.provider.store.write_host(item)


def _changed(capsul: Capsul, old: Listing | None, doc: Document) -> History:
    """History of one capsul of a paged listing against the previous index (none: no
    first-seen lines for a whole account, only changes)."""
    if old is None:
        return []
    before = old.by_id(capsul.id)
    old_fps = {k.sha256() for k in before.keys} if before else set()
    new_fps = {k.sha256() for k in capsul.keys}
    if before is not None and old_fps == new_fps:
        return []
    return [_record(doc, capsul, "changed", old_fps, new_fps)]


def _removed(old: Listing, ids: set[str], doc: Document) -> History:
    out = []
    for capsul_id in old.ids():
        if capsul_id not in ids:
            before = old.by_id(capsul_id)
            if before is not None:
                fps = {k.sha256() for k in before.keys}
                out.append(_record(doc, before, "removed", fps, set()))
    return out


def _record(
    doc: Document, capsul: Capsul, event: str, before: set[str], after: set[str]
) -> HistoryRecord:
    from sshpin.store.history import history_record

    addresses = [x for x in (capsul.ipv4, capsul.ipv6) if x]
    return history_record(doc.fetched_at, doc.provider, capsul.id, capsul.name, addresses,
                          event, before, after, doc.source)  # fmt: skip
