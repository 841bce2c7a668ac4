"""The one interface every provider implements, and the answer it gives.

A provider answers one question: which known_hosts lines does it vouch for, for this host?
It answers from the cache when it can and, when asked to (``fetch``), by fetching through
``trust.obtain``. The same answer serves the hook, ``sshpin proxy``, ``cache show``,
``fingerprints`` and ``doctor``, so they never disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from sshpin.core.config import ProviderConfig
    from sshpin.core.names import Query
    from sshpin.store.entries import HostEntry
    from sshpin.store.history import HistoryRecord


class Row:
    """One line of ``sshpin cache list``: a capsul or host a provider's cache holds."""

    __slots__ = ("addresses", "capsul", "entry", "names", "provider", "state")

    def __init__(
        self, provider: str, capsul: str, names: list[str], addresses: list[str], entry: HostEntry
    ) -> None:
        self.provider = provider
        self.capsul = capsul
        self.names = names
        self.addresses = addresses
        self.entry = entry  # keys, fetch time, signature, source
        self.state = ""


class Provider(ABC):
    """One ``[[provider]]`` table's behaviour. Implementations: one module per ``type``,
    registered in ``sshpin.providers.TYPES``.

    Answers raise ``SshpinError`` subclasses: ``NoKeysError`` (nothing to vouch for),
    ``VerificationError`` (fetched, but not to be trusted), ``ProviderError`` (not fetched).
    Nothing unverified is ever returned.
    """

    KEYS: ClassVar[frozenset[str]] = frozenset()  # config keys beyond name, type and hosts
    caches: ClassVar[bool] = True  # keeps fetched keys in the cache dir
    takes_token: ClassVar[bool] = False  # ``sshpin login`` stores a token for it
    local: ClassVar[bool] = False  # its check reads local files only (doctor --offline runs it)

    def __init__(self, cfg: ProviderConfig, root: str) -> None:
        self.cfg = cfg
        self.root = root  # the cache dir
        self.all_pages = False  # ``cache refresh --all``: every page of a paged listing
        self.progress: Callable[[int, int], None] | None = None  # (pages, capsuls) so far

    @property
    def name(self) -> str:
        return self.cfg.name

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        """Check this type's own config keys in ``table``; put their clean values in ``out``.
        Raise ValueError naming the key. (A type with no keys of its own has nothing to do.)"""
        return None

    @abstractmethod
    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        """The entry (keys, certificate authorities, revocations, and their origin) this
        provider vouches for, for ``query.host``; None when it has nothing for the host.
        Without ``fetch``, only what the cache already holds (no network)."""

    def rows(self) -> list[Row]:
        """What this provider's cache holds, for ``sshpin cache list``."""
        return []

    def refresh(self, host: str | None) -> list[HistoryRecord]:
        """Fetch now (for ``host``, or everything cached) and return the history records of
        what changed (``sshpin cache refresh``). Failures raise."""
        return []

    def try_token(self, token: str) -> str:
        """``sshpin login``: check a token not yet stored; say what the provider answered."""
        from sshpin.errors import UsageError

        raise UsageError(f"provider {self.name!r} takes no token")

    def check(self) -> str:
        """``sshpin doctor``: one line on what this provider answers now; raise if it fails."""
        return "nothing to check"


def unknown_key(query: Query, entry: HostEntry, provider: str, subject: str) -> None:
    """Say, once, that the server's key is not one the provider vouches for, and what to do.
    (The hook then names it ``@revoked`` to ssh: lookup.Answer.lines.)"""
    from sshpin.core.keys import parse_blob
    from sshpin.errors import VerificationError, say

    assert query.want is not None
    try:
        shown = parse_blob(query.want).sha256()
    except VerificationError:
        shown = "of an unsupported type"
    if any(k.blob == query.want for k in entry.revoked):
        say(query.token, f"the server's key {shown} is revoked by provider {provider!r}")
        return
    say(
        query.token,
        f"the server's key {shown} is not one provider {provider!r} vouches for {subject}"
        " (told to ssh as revoked, whatever your known_hosts holds)",
        "compare with the provider's records; 'sshpin cache refresh' after a rebuild; "
        "'sshpin doctor' lists stale known_hosts lines",
    )
