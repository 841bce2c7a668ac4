"""The slow path: derive from the cached document, or lock, re-check, fetch, verify, write.

N processes that miss at once all queue on the provider's lock; the first fetches and writes
the document, and each one after it sees a document newer than the one it saw before
waiting, so it uses that instead of fetching again: N cold starts, one request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sshpin import cache
from sshpin.errors import ConfigError, NoKeysError, ProviderError, VerificationError
from sshpin.resolve import resolve

if TYPE_CHECKING:
    from sshpin.config import ProviderConfig
    from sshpin.document import Document
    from sshpin.hostkeys import Request

LOCK_WAIT = 15.0  # longer than one whole fetch (10 s), so waiters normally get its result
Say = Callable[[str], None]


def derive(cfg: ProviderConfig, doc: Document, host: str) -> cache.HostEntry | None:
    """The host entry a document implies for ``host``, or None if no capsul matches."""
    found = resolve(doc, host, cfg.aliases, bool(cfg.get("resolve_dns")))
    if found is None:
        return None
    capsul, rule = found
    if capsul.problem:
        raise VerificationError(f"provider's data for {capsul.id} refused: {capsul.problem}")
    if not capsul.keys:
        raise NoKeysError(f"provider lists no usable host key for {capsul.id}")
    return cache.HostEntry(
        host,
        capsul.id,
        rule,
        doc.fetched_at,
        list(capsul.keys),
        doc.signed,
        doc.source,
        list(doc.revoked),
        capsul.ipv4 or capsul.ipv6 or "",
    )


def obtain(
    cfg: ProviderConfig,
    store: cache.ProviderCache,
    request: Request,
    entry: cache.HostEntry | None,
    now: float,
    say: Say,
    log: Say,
) -> cache.HostEntry:
    """The host's entry (its keys and revocations), fetching when the cache cannot answer."""
    host, want = request.host, request.want
    doc = _usable(cfg, store.read_document())
    derived = _derive_quiet(cfg, doc, host)
    if doc is not None and cache.age(doc.fetched_at, now) < cfg.ttl:
        if derived is not None and (want is None or derived.has(want)):
            _save(store, derived, log)
            return derived
        if not store.mismatch_allowed(host, now):
            log(f"{host}: refetch for an unknown key was done under 30 s ago; not again yet")
            return _final(cfg, doc, host, derived, want, say)
        mismatch = True
    else:
        mismatch = False
    seen = doc.fetched_at if doc is not None else None
    try:
        lock = store.lock(LOCK_WAIT)
        with lock as locked:
            if lock.problem:
                say(f"{lock.problem}: nothing fetched now can be cached")
            latest = _usable(cfg, store.read_document())
            if latest is not None and latest.fetched_at != seen:
                log(f"{host}: another sshpin fetched while this one waited; using its result")
                doc = latest
            elif locked:
                if mismatch:
                    _try(lambda: store.mark_mismatch(host, now), log)
                doc = _fetch(cfg, store, latest, say, log)
            else:
                say(f"{host}: timed out waiting for another sshpin's fetch")
    except (ProviderError, VerificationError) as e:
        # No usable document at all (missing or damaged): a host entry may still be in time.
        if entry is not None and cache.age(entry.fetched_at, now) < cfg.ttl + cfg.stale_if_error:
            say(f"{e}; using keys fetched {_ago(now - entry.fetched_at)} (stale)")
            return entry
        raise
    if doc is None:
        raise ProviderError(f"provider {cfg.name!r}: no document could be obtained")
    derived = _derive_quiet(cfg, doc, host, loud=True)
    if derived is not None:
        _save(store, derived, log)
    return _final(cfg, doc, host, derived, want, say)


def _usable(cfg: ProviderConfig, doc: Document | None) -> Document | None:
    """A cached document, unless signatures are required now and it was not signed."""
    if doc is not None and cfg.get("signing_keys") and not doc.signed:
        return None
    return doc


def _fetch(
    cfg: ProviderConfig,
    store: cache.ProviderCache,
    previous: Document | None,
    say: Say,
    log: Say,
) -> Document:
    from sshpin.providers import for_config

    now = time.time()
    provider = for_config(cfg)
    try:
        log(f"fetching {provider.source()}")
        fresh = provider.fetch(previous, now)
    except (ProviderError, VerificationError) as e:
        stale = previous
        if stale is not None and cache.age(stale.fetched_at, now) < cfg.ttl + cfg.stale_if_error:
            if cache.age(stale.fetched_at, now) >= cfg.ttl:
                say(f"{e}; using keys fetched {_ago(now - stale.fetched_at)} (stale)")
            else:
                log(f"{e}; the cached document is still fresh")
            return stale
        raise
    changes = _changes(previous, fresh)
    _try(lambda: store.write_document(fresh), log)
    if changes:
        _try(lambda: cache.append_history(store.root, changes), log)
        _announce(changes, say)
    return fresh


def _final(
    cfg: ProviderConfig,
    doc: Document,
    host: str,
    derived: cache.HostEntry | None,
    want: bytes | None,
    say: Say,
) -> cache.HostEntry:
    if derived is None:
        raise NoKeysError(f"not a capsul of account {doc.account} at provider {cfg.name!r}")
    if want is not None and not derived.has(want):
        from sshpin.keys import parse_blob

        try:
            shown = parse_blob(want).sha256()
        except VerificationError:
            shown = "of an unsupported type"
        if any(k.blob == want for k in derived.revoked):
            say(f"{host}: the server's key {shown} is revoked by provider {cfg.name!r}")
        else:
            say(
                f"{host}: the server's key {shown} is not one {derived.capsul} is known by "
                f"(provider {cfg.name!r}); ssh will refuse it"
            )
    return derived


def _derive_quiet(
    cfg: ProviderConfig, doc: Document | None, host: str, loud: bool = False
) -> cache.HostEntry | None:
    """derive(), where a refusal counts as "no entry" until the final answer (``loud``)."""
    if doc is None:
        return None
    try:
        return derive(cfg, doc, host)
    except NoKeysError:
        if loud:
            raise
        return None


def _save(store: cache.ProviderCache, entry: cache.HostEntry, log: Say) -> None:
    _try(lambda: store.write_host(entry), log)


def _try(action: Callable[[], None], log: Say) -> None:
    """Cache writes are best effort: a full disk or read-only cache must not stop ssh."""
    try:
        action()
    except OSError as e:
        log(f"cache write failed: {e.strerror or e}")


def _changes(old: Document | None, new: Document) -> list[dict[str, object]]:
    """History records: one per capsul whose key set differs between two documents."""
    before = {c.id: c for c in old.capsuls} if old is not None else {}
    after = {c.id: c for c in new.capsuls}
    records: list[dict[str, object]] = []
    for capsul_id in sorted(set(before) | set(after)):
        b, a = before.get(capsul_id), after.get(capsul_id)
        old_fps = {k.sha256() for k in b.keys} if b else set()
        new_fps = {k.sha256() for k in a.keys} if a else set()
        if old_fps == new_fps and (b is None) == (a is None):
            continue
        current = a or b
        assert current is not None
        event = "first-seen" if old is None else ("removed" if a is None else "changed")
        addresses = [x for x in (current.ipv4, current.ipv6) if x]
        records.append(
            cache.history_record(
                new.fetched_at,
                new.provider,
                capsul_id,
                current.name,
                addresses,
                event,
                old_fps,
                new_fps,
                new.source,
            )
        )
    return records


def _announce(records: list[dict[str, object]], say: Say) -> None:
    changed = [r for r in records if r["event"] != "first-seen"]
    for r in changed[:5]:
        added = " ".join(f"+{fp}" for fp in r["added"])  # type: ignore[attr-defined]
        removed = " ".join(f"-{fp}" for fp in r["removed"])  # type: ignore[attr-defined]
        say(f"{r['capsul']}: host keys {r['event']} at provider: {added} {removed}".rstrip())
    if len(changed) > 5:
        say(f"... and {len(changed) - 5} more key changes; see 'sshpin cache history'")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def refetch(
    cfg: ProviderConfig, store: cache.ProviderCache, say: Say, log: Say
) -> tuple[Document, list[dict[str, object]]]:
    """``sshpin cache refresh``: fetch now (under the lock), store, record and return changes.

    Unlike the hook's fetch, a failure is an error here: the user asked for fresh keys.
    Cached host entries are re-derived from the new document so they are fresh at once.
    """
    from sshpin.providers import for_config

    lock = store.lock(LOCK_WAIT)
    with lock as locked:
        if lock.problem:
            raise ConfigError(f"{lock.problem}: cannot refresh the cache")
        if not locked:
            raise ProviderError(f"provider {cfg.name!r}: another sshpin holds the cache lock")
        previous = store.read_document()
        fresh = for_config(cfg).fetch(previous, time.time())
        changes = _changes(previous, fresh)
        store.write_document(fresh)
        if changes:
            cache.append_history(store.root, changes)
        for host in store.hosts():
            try:
                derived = derive(cfg, fresh, host)
            except NoKeysError:
                derived = None
            if derived is None:
                store.drop_host(host)
            else:
                store.write_host(derived)
    _announce(changes, say)
    return fresh, changes


def obtain_file(
    cfg: ProviderConfig,
    store: cache.ProviderCache,
    request: Request,
    entry: cache.HostEntry | None,
    now: float,
    say: Say,
    log: Say,
    force: bool = False,
) -> cache.HostEntry:
    """The slow path of a ``url`` provider: one signed key file per host, cached as the host
    entry itself; the same lock, re-check, mismatch limit and stale rules as documents."""
    from sshpin.providers.url import HostFileProvider

    host, want = request.host, request.want
    if entry is not None and cache.age(entry.fetched_at, now) < cfg.ttl and not force:
        # fresh, so the server's key is not among the keys: refetch, at most every 30 s
        if not store.mismatch_allowed(host, now):
            log(f"{host}: refetch for an unknown key was done under 30 s ago; not again yet")
            return _final_file(cfg, entry, want, say)
        _try(lambda: store.mark_mismatch(host, now), log)
    seen = entry.fetched_at if entry is not None else None
    lock = store.lock(LOCK_WAIT)
    with lock as locked:
        if lock.problem:
            say(f"{lock.problem}: nothing fetched now can be cached")
        latest = store.read_host(host)
        if not force and latest is not None and latest.fetched_at != seen:
            log(f"{host}: another sshpin fetched while this one waited; using its result")
            return _final_file(cfg, latest, want, say)
        if not locked:
            say(f"{host}: timed out waiting for another sshpin's fetch")
        else:
            notes: list[str] = []
            try:
                fresh = HostFileProvider(cfg).fetch_host(host, time.time(), notes)
            except (ProviderError, VerificationError) as e:
                if (
                    not force
                    and entry is not None
                    and cache.age(entry.fetched_at, now) < cfg.ttl + cfg.stale_if_error
                ):
                    say(f"{e}; using keys fetched {_ago(now - entry.fetched_at)} (stale)")
                    return entry
                raise
            records = _file_changes(cfg.name, entry, fresh)
            for note in notes:  # shown when the keys are new or changed, not at every refetch
                (say if records or force else log)(note)
            _save(store, fresh, log)
            if records:
                _try(lambda: cache.append_history(store.root, records), log)
                _announce(records, say)
            return _final_file(cfg, fresh, want, say)
    if entry is not None and cache.age(entry.fetched_at, now) < cfg.ttl + cfg.stale_if_error:
        return entry
    raise ProviderError(f"provider {cfg.name!r}: no key file could be obtained for {host}")


def _final_file(
    cfg: ProviderConfig, entry: cache.HostEntry, want: bytes | None, say: Say
) -> cache.HostEntry:
    if want is not None and not entry.has(want):
        say(
            f"{entry.host}: the server's key is not in the signed key file "
            f"(provider {cfg.name!r}); ssh will refuse it"
        )
    return entry


def _file_changes(
    provider: str, old: cache.HostEntry | None, new: cache.HostEntry
) -> list[dict[str, object]]:
    before = {k.sha256() for k in old.keys} if old is not None else set()
    after = {k.sha256() for k in new.keys}
    if before == after:
        return []
    event = "first-seen" if old is None else "changed"
    return [cache.history_record(new.fetched_at, provider, new.host, new.host, [], event,
                                 before, after, new.source)]  # fmt: skip
