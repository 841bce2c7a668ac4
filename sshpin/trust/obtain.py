"""The one slow path: lock, re-check, fetch, verify, write, record history, fall back to stale.

Every provider that fetches runs ``obtain`` with a ``Fetch``, which says what is fetched (a
provider's document, one host's signed key file, ...): how to read it from the cache, how to
fetch and verify it, and how to write it and what changed. The sequence is written once here:

1. a refetch because the server offered an unknown key (``mismatch``) happens at most once per
   30 s per host, and only for a fresh cached item (a stale one is refetched anyway);
2. a caller asks without ``mismatch`` only when it found nothing fresh; a fresh item found
   here was fetched by another process since, and is used. Otherwise the provider's lock is
   taken (bounded wait); under it the cache is read again, and if another process fetched
   while this one waited, its result is used: N cold starts, one request;
3. the fetch verifies before anything is written; the write is atomic; a change of a key set is
   appended to the history and announced in a few lines;
4. when the fetch fails (or the lock is not had in time), the cached item is served while the
   one freshness rule (``store.entries.servable``) allows: within ``ttl + stale_if_error`` and
   never past the signed statement's own ``expires`` (with a warning once past ``ttl``); else
   the error stands.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from sshpin.core.times import rfc3339
from sshpin.errors import ConfigError, ProviderError, VerificationError, log, say
from sshpin.store.entries import age, fresh, servable
from sshpin.store.history import append_history

if TYPE_CHECKING:
    from collections.abc import Callable

    from sshpin.core.config import ProviderConfig
    from sshpin.store.cachedir import ProviderCache
    from sshpin.store.history import HistoryRecord

LOCK_WAIT = 15.0  # longer than one whole fetch (10 s), so waiters normally get its result;
# in the hook, less: it ends a second before the hook's deadline (core/bounded.py ``within``)
ANNOUNCED = 3  # key changes announced one by one on stderr; the rest as one summary line


class Fetched(Protocol):
    fetched_at: float
    expires: float  # 0: the item states no end of validity


T = TypeVar("T", bound=Fetched)


class Fetch(ABC, Generic[T]):
    """What one ``obtain`` fetches. ``subject`` names it in messages (a host, a provider)."""

    subject: str

    @abstractmethod
    def read(self) -> T | None:
        """The cached item, if any is usable under today's configuration."""

    @abstractmethod
    def fetch(self, previous: T | None) -> T:
        """Fetch and verify; raise ProviderError or VerificationError. May return ``previous``
        revalidated (a new ``fetched_at``) when the provider says nothing changed."""

    @abstractmethod
    def changes(self, item: T, previous: T | None) -> list[HistoryRecord]:
        """The history records of the key sets a fetched item changes."""

    @abstractmethod
    def write(self, item: T) -> None:
        """Store a verified item (atomically)."""


def obtain(
    what: Fetch[T],
    store: ProviderCache,
    cfg: ProviderConfig,
    mismatch: str | None = None,
    force: bool = False,
) -> T:
    """A verified item: freshly fetched, fetched by a concurrent process, or the cached one
    where the rules above allow it. ``mismatch`` is the host whose server offered a key the
    fresh cached item lacks; ``force`` (``sshpin cache refresh``) always fetches and never
    falls back to the cache."""
    now = time.time()
    cached = what.read()
    if (
        mismatch
        and cached is not None
        and not force
        and fresh(cached.fetched_at, cached.expires, cfg.ttl, now)
    ):
        if not store.mismatch_allowed(mismatch, now):
            log(mismatch, "refetch for an unknown key was done under 30 s ago; not again yet")
            return cached
        _best_effort(lambda: store.mark_mismatch(mismatch, now))
    elif (
        not force and cached is not None and fresh(cached.fetched_at, cached.expires, cfg.ttl, now)
    ):
        # The caller found nothing fresh (that is why it asks without ``mismatch``), but
        # another process has fetched since it looked: N cold starts, one request.
        log(what.subject, "another sshpin fetched since this one looked; using its result")
        return cached
    seen = cached.fetched_at if cached is not None else None
    from sshpin.core.bounded import doing, within

    doing("waiting for another sshpin's fetch (the provider's lock)")
    lock = store.lock(within(LOCK_WAIT))  # ends before the hook's deadline, to say so
    with lock as locked:
        if lock.problem and force:
            raise ConfigError(f"{lock.problem}: cannot refresh the cache")
        if lock.problem:
            say(what.subject, f"{lock.problem}: nothing fetched now can be cached")
        latest = what.read()
        if not force and latest is not None and latest.fetched_at != seen:
            log(what.subject, "another sshpin fetched while this one waited; using its result")
            return latest
        if not locked:
            if force:
                raise ProviderError(f"provider {cfg.name!r}: another sshpin holds the cache lock")
            late = ProviderError(
                f"provider {cfg.name!r}: timed out waiting for another sshpin's fetch"
            )
            return _fallback(what, cfg, latest, late, time.time())
        try:
            log(what.subject, "fetching")
            item = what.fetch(latest)
        except (ProviderError, VerificationError) as e:
            if force:
                raise
            return _fallback(what, cfg, latest, e, time.time())
        records = what.changes(item, latest)  # announced even where the cache cannot keep it
        if force:
            what.write(item)  # the user asked for it: a failed write is an error
        else:
            _best_effort(lambda: what.write(item))
    if records:
        _best_effort(lambda: append_history(store.root, records))
        announce(records)
    return item


def _fallback(
    what: Fetch[T], cfg: ProviderConfig, cached: T | None, error: Exception | None, now: float
) -> T:
    """The cached item while it is within ttl + stale_if_error; else the error stands."""
    why = error or ProviderError(f"provider {cfg.name!r}: nothing could be fetched in time")
    if cached is None:
        raise why
    if not servable(cached.fetched_at, cached.expires, cfg.ttl, cfg.stale_if_error, now):
        if cached.expires and now >= cached.expires:
            raise VerificationError(
                f"{why}; the cached keys expired at {rfc3339(cached.expires)} and are not served "
                "(refused as a freeze)"
            )
        raise why
    if age(cached.fetched_at, now) >= cfg.ttl:
        say(what.subject, f"{why}; using keys fetched {ago(now - cached.fetched_at)} (stale)")
    else:
        log(what.subject, f"{why}; the cached keys are still fresh")
    return cached


def _best_effort(action: Callable[[], object]) -> None:
    """Cache writes on the hook's path: a full disk or read-only cache must not stop ssh."""
    try:
        action()
    except OSError as e:
        log("cache", f"write failed: {e.strerror or e}")


def announce(records: list[HistoryRecord]) -> None:
    """A few lines on stderr per fetch, however many keys changed: the rest is in history."""
    changed = [r for r in records if r["event"] != "first-seen"]
    for r in changed[:ANNOUNCED]:
        added = " ".join(f"+{fp}" for fp in r["added"])
        removed = " ".join(f"-{fp}" for fp in r["removed"])
        say(str(r["capsul"]), f"host keys {r['event']} at provider: {added} {removed}".rstrip())
    if len(changed) > ANNOUNCED:
        say("", f"{len(changed) - ANNOUNCED} more key changes; see 'sshpin cache history'")


def ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"
