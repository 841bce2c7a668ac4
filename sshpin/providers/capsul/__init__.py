"""``type = "capsul"``: the capsul host-key API, v1 (docs/provider-api.md).

One verified document per provider lists the account's capsuls and their keys; a host's entry
is derived from it (providers/matching.py says which capsul a host is) and cached on its own,
so a cached hit reads one small file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sshpin.core.schema import fetching, flag, https_url, string, trust_context
from sshpin.errors import NoKeysError, ProviderError, SshpinError, VerificationError, log, say
from sshpin.providers.capsul.client import CapsulClient
from sshpin.providers.capsul.fetches import DocumentFetch, LookupFetch
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.providers.matching import resolve
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, document_mtime, fresh, servable, usable
from sshpin.trust.document import Document
from sshpin.trust.listing import Listing, ListingWriter
from sshpin.trust.obtain import ago, obtain

if TYPE_CHECKING:
    from sshpin.core.names import Query
    from sshpin.store.history import HistoryRecord

__all__ = ["CapsulProvider", "DocumentFetch", "LookupFetch"]


class CapsulProvider(CapsulClient, Provider):
    KEYS = frozenset(
        {"api_url", "aliases", "resolve_dns", "signing_keys", "ca_bundle", "token_command"}
        | {"ttl", "stale_if_error", "account", "allow_unbound", "ports"}
    )
    takes_token = True

    def __init__(self, cfg: Any, root: str) -> None:
        super().__init__(cfg, root)
        self.url = str(cfg.get("api_url")) + "/capsuls"
        self.store = ProviderCache(root, cfg.name)
        self.token: str | None = None  # set by ``sshpin login`` to check a token not yet stored
        self.logging_in = False  # ``sshpin login``: any account may answer; it is recorded

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        from sshpin.core.names import bare_host, is_capsul_id, valid_host

        fetching(table, out)  # ttl, stale_if_error, ports, signing_keys, ca_bundle
        out["api_url"] = https_url(string(table, "api_url"), "api_url").rstrip("/")
        aliases = table.get("aliases", {})
        if not isinstance(aliases, dict):
            raise ValueError("aliases: expected a table of name = capsul id")
        clean: dict[str, str] = {}
        for alias, target in aliases.items():
            if not valid_host(alias) or not isinstance(target, str) or not is_capsul_id(target):
                raise ValueError(f'aliases: {alias!r} = {target!r}: expected name = "capsul-..."')
            clean[bare_host(alias)] = target  # as the hook keys the host it is asked
        out["aliases"] = clean
        resolve_dns = table.get("resolve_dns", True)
        if not isinstance(resolve_dns, bool):
            raise ValueError("resolve_dns: expected true or false")
        out["resolve_dns"] = resolve_dns
        out["token_command"] = string(table, "token_command", "")
        account = string(table, "account", "")
        if not account.isprintable() or len(account) > 255:
            raise ValueError("account: expected the account name the provider's documents state")
        out["account"] = account
        out["allow_unbound"] = flag(table, "allow_unbound")
        # aliases and resolve_dns decide which capsul a name is: an answer cached under
        # other ones may be another machine's keys
        out["trust"] = trust_context("capsul", out["signing_keys"], out["api_url"],
                                     out["ca_bundle"], account, out["allow_unbound"], clean,
                                     resolve_dns)  # fmt: skip

    # -- the answer ----------------------------------------------------------------------

    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        """From the listing's index when it is fresh and holds the key (a few small reads, at
        any account size); else one fetch through ``obtain``: the whole listing, or, once the
        provider was seen to page it, a ``?host=`` lookup (docs/provider-api.md)."""
        host, want = query.host, query.want
        header, derived = self._indexed(host, query.token)
        entry = self.cached_entry(host)
        if derived is not None and entry is not None and entry.fetched_at > derived.fetched_at:
            derived = None  # a later answer for this host (a lookup) prevails over the index
        if not fetch:
            return entry if derived is None else derived
        now = time.time()
        current = header is not None and fresh(header.fetched_at, header.expires, self.cfg.ttl, now)
        if current and derived is not None and derived.has(want):
            self._save(derived)
            return derived
        if self.store.paged() or header is None:
            # paged, or a cold miss (no listing cached): ask ?host= first; a server that
            # ignores it answers its whole listing, filtered (and kept) by fetch_lookup
            if current and derived is not None:
                self._save(derived)  # fresh: an unknown key refetches at most once per 30 s
            return self._looked_up(query)
        documents = DocumentFetch(self, query.token)
        try:
            doc = obtain(documents, self.store, self.cfg, mismatch=host if current else None)
            derived = None if doc.partial else self._derive_from(doc, host)
        except (ProviderError, VerificationError) as e:
            entry = self.cached_entry(host)  # no usable document: the entry may be in time
            ttl, stale = self.cfg.ttl, self.cfg.stale_if_error
            if entry is None or not servable(entry.fetched_at, entry.expires, ttl, stale, now):
                return self._revoked_only(query, documents.read(), e)
            say(query.token, f"{e}; using keys fetched {ago(now - entry.fetched_at)} (stale)")
            return entry
        except NoKeysError as e:
            return self._revoked_only(query, header, e)
        if derived is None:  # the provider pages its listing now: a lookup answers, its
            return self._looked_up(query)  # errors its own (not the listing's fallbacks)
        self._save(derived)
        if not derived.has(want):
            unknown_key(query, derived, self.name, derived.capsul)
        return derived

    def _looked_up(self, query: Query) -> HostEntry:
        """A cold miss, or any miss of a paged provider: one ``?host=`` lookup through
        ``obtain``."""
        host, now = query.host, time.time()
        cached = self.cached_entry(host)
        current = cached is not None and fresh(cached.fetched_at, cached.expires, self.cfg.ttl, now)
        if current and cached is not None and cached.has(query.want):
            newer = document_mtime(self.root, self.name)  # as the cached path asks (entries.ask)
            if newer is None or newer <= cached.fetched_at + 0.001:
                log(host, "another sshpin fetched since this one looked; using its result")
                return cached  # a hit now: not an unknown key, no refetch
        lookup = LookupFetch(self, host, query.token)
        entry = obtain(lookup, self.store, self.cfg, mismatch=host if current else None)
        if not entry.has(query.want):
            unknown_key(query, entry, self.name, entry.capsul)
        return entry

    def listing(self, subject: str = "") -> Listing | None:
        """The cached listing's index, if usable under today's configuration and built for
        the cached document (which is written first: an index left behind is not used)."""
        listing = Listing.open(self.store.listing_path)
        if listing is None:
            return None
        stamp = self.store.document_stamp()
        usable = stamp == listing.stamp and self.usable(listing.header, subject)
        if not usable:
            listing.close()
            return None
        return listing

    def usable(self, doc: Document, subject: str) -> bool:
        if not usable(doc.signed, doc.trust, self.signed_only, self.trust_context):
            why = "verified under another configuration (signing_keys, api_url, ca_bundle, ...)"
            log(subject or self.name, f"the cached document was {why}; fetching it again")
            return False
        expected = self.expected_account()
        if expected is not None and doc.account != expected[0]:
            log(subject or self.name, f"the cached document is for account {doc.account!r}")
            return False
        return True

    def _indexed(self, host: str, subject: str) -> tuple[Document | None, HostEntry | None]:
        """(the cached listing's header, the entry it implies for ``host``): O(1). A cached
        document without its index (an older sshpin's cache, or one rewritten since) is
        parsed as before, until the next fetch writes both: reading never writes."""
        listing = self.listing(subject)
        if listing is None:
            doc = DocumentFetch(self, subject).read()
            if doc is None or doc.pages > 1:
                return None, None
            return doc, self.derive_quiet(doc, host)
        try:
            return listing.header, self.derive_quiet(listing, host)
        except (ValueError, KeyError, TypeError, VerificationError):
            return None, None  # a damaged index: a miss
        finally:
            listing.close()

    def index(self, doc: Document, writer: ListingWriter | None = None) -> None:
        """Write the index of the document just written (``writer``: a paged listing's,
        filled while its pages came in; else built from the document's capsuls)."""
        if writer is None:
            writer = ListingWriter(self.store.listing_path)
            try:
                for capsul in doc.capsuls:
                    writer.add(capsul)
            except BaseException:
                writer.abort()
                raise
        stamp = self.store.document_stamp()
        if stamp is None:
            writer.abort()
            raise OSError("the document just written is gone")
        writer.commit(doc, stamp)

    def _derive_from(self, doc: Document, host: str) -> HostEntry:
        if doc.pages <= 1:
            return self.derive(doc, host)
        listing = self.listing()  # a paged listing lives in the index only
        if listing is None:
            raise NoKeysError(f"the cached listing of provider {self.name!r} is unusable")
        try:
            return self.derive(listing, host)
        finally:
            listing.close()

    def derive(self, source: Document | Listing, host: str) -> HostEntry:
        """The entry a document implies for ``host``; NoKeysError when it has none."""
        doc = source if isinstance(source, Document) else source.header
        found = resolve(source, host, self.cfg.aliases, bool(self.cfg.get("resolve_dns")))
        if found is None:
            raise NoKeysError(f"not a capsul of account {doc.account} at provider {self.name!r}")
        capsul, rule = found
        if capsul.problem:
            raise VerificationError(f"provider's data for {capsul.id} refused: {capsul.problem}")
        if not capsul.keys:
            raise NoKeysError(f"provider lists no usable host key for {capsul.id}")
        address = capsul.ipv4 or capsul.ipv6 or ""
        return HostEntry(host, capsul.id, rule, doc.fetched_at, list(capsul.keys),
                         signed=doc.signed, source=doc.source, revoked=list(doc.revoked),
                         address=address, expires=doc.expires, trust=doc.trust,
                         generated=doc.generated_at)  # fmt: skip

    def derive_quiet(self, doc: Document | Listing | None, host: str) -> HostEntry | None:
        if doc is None:
            return None
        try:
            return self.derive(doc, host)
        except NoKeysError:
            return None

    def cached_entry(self, host: str) -> HostEntry | None:
        entry = self.store.read_host(host)
        if entry is None or not usable(entry.signed, entry.trust, self.signed_only,
                                       self.trust_context):  # fmt: skip
            return None  # unsigned while signatures are required, or another configuration
        return entry

    def _revoked_only(self, query: Query, doc: Document | None, error: SshpinError) -> HostEntry:
        """No keys to vouch for; a revocation the provider published still stands."""
        if doc is None or not doc.revoked:
            raise error
        say(query.token, str(error), error.hint)
        return HostEntry(query.host, "", "revoked", doc.fetched_at, [], signed=doc.signed,
                         source=doc.source, revoked=list(doc.revoked))  # fmt: skip

    def _save(self, entry: HostEntry) -> None:
        try:
            self.store.write_host(entry)
        except OSError:
            pass  # best effort: the next call derives it again

    # -- the commands --------------------------------------------------------------------

    def rows(self) -> list[Row]:
        documents = DocumentFetch(self)
        doc = documents.read()
        raw = self.store.read_document() if doc is None else None
        if raw is not None and not _parses(raw):
            say("cache", f"{self.store.document_path}: damaged, ignored (the next use refetches)")
        by_capsul: dict[str, list[str]] = {}
        for host in self.store.hosts():
            peeked = self.store.peek_host(host)
            if peeked is None:
                say("cache", f"{self.store.host_path(host)}: damaged, ignored")
            else:
                by_capsul.setdefault(peeked[1], []).append(peeked[0])
        out: list[Row] = []
        listed = set()
        listing = self.listing() if doc is not None and doc.pages > 1 else None
        capsuls = listing.capsuls() if listing is not None else doc.capsuls if doc else []
        for c in capsuls:
            assert doc is not None
            listed.add(c.id)
            names = [c.name] if c.name and c.name != c.id else []
            addresses = [a for a in (c.ipv4, c.ipv6) if a]
            names += [h for h in by_capsul.get(c.id, []) if h not in (c.id, *names, *addresses)]
            entry = HostEntry(c.id, c.id, "capsul id", doc.fetched_at, list(c.keys),
                              signed=doc.signed, source=doc.source,
                              revoked=list(doc.revoked))  # fmt: skip
            out.append(Row(self.name, c.id, names, addresses, entry))
        if listing is not None:
            listing.close()
        for capsul_id, group in sorted(by_capsul.items()):
            orphan = self.store.read_host(group[0]) if capsul_id not in listed else None
            if orphan is not None:  # no document lists it: what the hook would still serve
                out.append(Row(self.name, capsul_id, group, [], orphan))
        return out

    def refresh(self, host: str | None) -> list[HistoryRecord]:
        """The listing (``all_pages``: every page of a paged one), then every cached host
        derived from it again; a paged provider without ``all_pages``: a lookup per cached
        host (or the one asked about)."""
        if self.all_pages or not self.store.paged():
            from sshpin.providers.refresh import refresh_listing

            # aside, then swapped in: the hook never waits on it (providers/refresh.py); None:
            # the provider pages its listing now, and this refresh is by lookups
            done = refresh_listing(self, DocumentFetch(self, all_pages=self.all_pages))
            if done is not None:
                self.last_count = done[0].count
                return done[1]
        changed: list[HistoryRecord] = []
        hosts = [host] if host else self.store.hosts()
        for h in hosts:
            lookup = LookupFetch(self, h)
            obtain(lookup, self.store, self.cfg, force=True)
            changed += lookup.changed
        self.last_count = len(hosts)
        return changed

    def try_token(self, token: str) -> str:
        """Check the token, and record the account it answers for: from now on a document for
        any other account is refused (mix-and-match)."""
        from sshpin.trust.credentials import record_account

        self.token = token
        self.logging_in = True
        doc = self.fetch_document(None, time.time())
        before = record_account(self.name, doc.account) or self.store.first_account(self.api_url)
        if before is not None and before != doc.account:
            dropped = self.store.drop_document()
            for host in self.store.hosts():
                dropped |= self.store.drop_host(host)
            say(f"provider {self.name!r}", f"account changed from {before!r} to "
                f"{doc.account!r}; cached keys of the old account dropped")  # fmt: skip
        first = " on the first page of its listing" if doc.next_page else ""
        return (f"the provider lists {len(doc.capsuls)} capsul(s){first} of account "
                f"{doc.account} (recorded: documents for another account are refused)")  # fmt: skip

    def check(self) -> str:
        chain = ""
        if self.cfg.get("signing_keys"):
            state = self.follow_chain()
            keys = ", ".join(k.sha256() for k in state.trusted())
            chain = f"; signing keys version {state.version}: {keys}"
            chain += f" ({len(state.revoked)} revoked)" if state.revoked else ""
        doc = self.fetch_document(None, time.time())
        signed = ", signature verified" if doc.signed else ""
        first = " on its first page (paged)" if doc.next_page else ""
        return (
            f"{self.url} lists {len(doc.capsuls)} capsul(s){first} of {doc.account}{signed}{chain}"
        )

    # -- the fetch -----------------------------------------------------------------------


def _parses(raw: bytes) -> bool:
    try:
        Document.from_bytes(raw)
    except ValueError:
        return False
    return True
