"""``sshpin cache refresh`` of a capsul provider's listing, without blocking ssh.

The hook must never wait on a refresh (a large account's takes minutes). So the refresh:

1. takes the provider's refresh lock (``refresh.lock``: two refreshes do not run at once; the
   hook never takes it), not the fetch lock the hook waits on;
2. fetches and verifies every page as ``CapsulProvider.fetch_listing`` does (whole or
   nothing), streaming the capsuls into a temporary index in the provider's cache dir, and
   writes the new document.json aside too (``ProviderCache.stage_document``);
3. swaps both in under the provider's lock, a short critical section (two renames) that first
   checks again what may have changed while the pages came in: a newer document kept by
   another sshpin meanwhile stays (an older listing never overwrites a newer state); the
   account expected now (a first one may have been recorded since) and the rollback floors
   now must still pass;
4. derives the cached hosts' entries again, a few at a time under the provider's lock, never
   over an entry fetched after the listing was (a ``?host=`` answer made during the refresh
   is the later statement, and prevails, as it does over the index in ``answer``).

Meanwhile hook calls go on from the cache, or by ``?host=``. Any failure before the swap
removes the temporary files: the cache stays byte for byte as it was.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sshpin.errors import ConfigError, ProviderError, log, say
from sshpin.store.cachedir import unstage
from sshpin.store.history import append_history
from sshpin.trust.listing import ListingWriter
from sshpin.trust.obtain import LOCK_WAIT, announce

if TYPE_CHECKING:
    from sshpin.providers.capsul import CapsulProvider, DocumentFetch
    from sshpin.store.history import HistoryRecord
    from sshpin.trust.document import Document

BATCH = 64  # host entries derived again per hold of the provider's lock
STAGED_AGE = 86400.0  # a refresh's temporary files older than this were left by a killed one


def refresh_listing(
    provider: CapsulProvider, documents: DocumentFetch
) -> tuple[Document, list[HistoryRecord]] | None:
    """Fetch the listing aside and swap it in. Returns the listing the cache holds now (this
    one, or a newer one another sshpin kept meanwhile) and the history records it made; None
    when the provider pages its listing and ``all_pages`` is not asked (then: lookups).
    Every refusal propagates."""
    store, what = provider.store, f"provider {provider.name!r}"
    refreshing = store.refresh_lock()
    with refreshing as locked:
        if refreshing.problem:
            raise ConfigError(f"{refreshing.problem}: cannot refresh the cache")
        if not locked:
            raise ProviderError(
                f"{what}: another 'sshpin cache refresh' of it is running",
                "wait for it to finish; its listing is used once it is done",
            )
        store.sweep_staged(STAGED_AGE, time.time())  # a refresh killed midway: its files
        previous = documents.read()
        log(documents.subject, "fetching the listing (aside; ssh is not held up)")
        item = documents.fetch(previous)
        if item.partial:
            documents.write(item)  # marks the provider paged; nothing else is kept
            return None
        writer, documents.pending = documents.pending, None
        try:
            records = documents.changes(item, previous)
            if writer is None:  # one page: its index is built here, aside too
                writer = ListingWriter(store.listing_path)
                for capsul in item.capsuls:
                    writer.add(capsul)
            staged, stamp = store.stage_document(item.to_bytes(), item.fetched_at)
            try:
                writer.finish(item, stamp)
                kept = _swap(provider, documents, item, staged, writer)
                if kept is not item:
                    writer.abort()  # a newer state stays: this listing's index is dropped
            finally:
                unstage(staged)  # renamed into place, or left over: gone either way
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    if kept is not item:
        return kept, []
    _derive_hosts(provider, item, stamp)
    if records:
        try:
            append_history(store.root, records)
        except OSError as e:
            say("cache", f"history not written: {e.strerror or e}")
        announce(records)
    return item, records


def _swap(
    provider: CapsulProvider,
    documents: DocumentFetch,
    item: Document,
    staged: str,
    writer: ListingWriter,
) -> Document:
    """Under the provider's lock: check again, then rename the document and the index into
    place. Returns what the cache holds afterwards."""
    store, what = provider.store, f"provider {provider.name!r}"
    lock = store.lock(LOCK_WAIT)
    with lock as locked:
        if lock.problem:
            raise ConfigError(f"{lock.problem}: cannot refresh the cache")
        if not locked:
            raise ProviderError(f"{what}: timed out waiting for the cache lock to swap the "
                                "new listing in; the cache is as it was")  # fmt: skip
        latest = documents.read()  # another sshpin may have kept a document meanwhile
        if latest is not None and latest.generated_at > item.generated_at:
            say(what, "a newer document was kept while the listing was fetched; it stays")
            return latest
        provider.check_kept(item, latest)  # an account recorded, floors raised meanwhile
        store.install_document(staged)
        writer.install()
        if item.pages > 1:
            store.mark_paged()
        provider.record_newest(item, "account", item.account)
    return item


def _derive_hosts(provider: CapsulProvider, item: Document, stamp: bytes) -> None:
    """Every cached host's entry derived from the listing just swapped in (dropped when it
    lists the host no more), except one fetched after the listing was: that later answer
    prevails. A few hosts per hold of the lock, so that a lookup waits a moment at most."""
    store = provider.store
    listing = provider.listing() if item.pages > 1 else None
    if item.pages > 1 and listing is None:
        return  # replaced already: entries are derived from what is cached, as they are used
    source = listing or item
    hosts = store.hosts()
    try:
        for start in range(0, len(hosts), BATCH):
            lock = store.lock(LOCK_WAIT)
            with lock as locked:
                if not locked or store.document_stamp() != stamp:
                    return  # stale entries are derived again from the index when used
                for host in hosts[start : start + BATCH]:
                    current = provider.cached_entry(host)
                    if current is not None and current.fetched_at > item.fetched_at:
                        continue  # a later ?host= answer prevails over this listing
                    derived = provider.derive_quiet(source, host)
                    if derived is None:
                        store.drop_host(host)
                    else:
                        store.write_host(derived)
    finally:
        if listing is not None:
            listing.close()
