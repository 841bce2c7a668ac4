"""``type = "capsul"``: the capsul host-key API, v1 (docs/provider-api.md).

One verified document per provider lists the account's capsuls and their keys; a host's entry
is derived from it (providers/matching.py says which capsul a host is) and cached on its own,
so a cached hit reads one small file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sshpin.core.schema import (
    fetching,
    flag,
    https_url,
    string,
    trust_context,
)
from sshpin.errors import (
    AuthError,
    NoKeysError,
    ProviderError,
    SshpinError,
    VerificationError,
    log,
    say,
)
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.providers.matching import lookup_term, resolve
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, document_mtime, fresh, servable
from sshpin.trust.document import Capsul, Document, Listing, ListingWriter
from sshpin.trust.obtain import Fetch, ago, obtain

if TYPE_CHECKING:
    from sshpin.core.names import Query
    from sshpin.trust.keychain import KeyState

MAX_PAGES = 10_000  # a listing of more pages is refused (a server that never ends it)
MAX_AGE = 30 * 86400  # a signed document older than this is refused (docs/provider-api.md)
SKEW = 300.0  # clocks may differ this much


class CapsulProvider(Provider):
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
        entry = self._cached_entry(host)
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
            derived = self._derive_from(doc, host)
        except NeedsLookup:
            return self._looked_up(query)
        except (ProviderError, VerificationError) as e:
            entry = self._cached_entry(host)  # no usable document: the entry may be in time
            ttl, stale = self.cfg.ttl, self.cfg.stale_if_error
            if entry is None or not servable(entry.fetched_at, entry.expires, ttl, stale, now):
                return self._revoked_only(query, documents.read(), e)
            say(query.token, f"{e}; using keys fetched {ago(now - entry.fetched_at)} (stale)")
            return entry
        except NoKeysError as e:
            return self._revoked_only(query, header, e)
        self._save(derived)
        if not derived.has(want):
            unknown_key(query, derived, self.name, derived.capsul)
        return derived

    def _looked_up(self, query: Query) -> HostEntry:
        """A cold miss, or any miss of a paged provider: one ``?host=`` lookup through
        ``obtain``."""
        host, now = query.host, time.time()
        cached = self._cached_entry(host)
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
        usable = stamp == listing.stamp and self._usable(listing.header, subject)
        if not usable:
            listing.close()
            return None
        return listing

    def _usable(self, doc: Document, subject: str) -> bool:
        if self.cfg.get("signing_keys") and not doc.signed:
            return False  # signatures are required now: an unsigned document is not usable
        if doc.trust != self.cfg.get("trust"):
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
            return doc, self._derive_quiet(doc, host)
        try:
            return listing.header, self._derive_quiet(listing, host)
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
        return HostEntry(host, capsul.id, rule, doc.fetched_at, list(capsul.keys), doc.signed,
                         doc.source, list(doc.revoked), address, expires=doc.expires,
                         trust=doc.trust, generated=doc.generated_at)  # fmt: skip

    def _derive_quiet(self, doc: Document | Listing | None, host: str) -> HostEntry | None:
        if doc is None:
            return None
        try:
            return self.derive(doc, host)
        except NoKeysError:
            return None

    def _cached_entry(self, host: str) -> HostEntry | None:
        entry = self.store.read_host(host)
        if entry is not None and self.cfg.get("signing_keys") and not entry.signed:
            return None  # signing_keys were added since: unsigned keys are not good enough now
        if entry is not None and entry.trust != self.cfg.get("trust"):
            return None  # verified under another configuration
        return entry

    def _revoked_only(self, query: Query, doc: Document | None, error: SshpinError) -> HostEntry:
        """No keys to vouch for; a revocation the provider published still stands."""
        if doc is None or not doc.revoked:
            raise error
        say(query.token, str(error), error.hint)
        return HostEntry(query.host, "", "revoked", doc.fetched_at, [], doc.signed, doc.source,
                         list(doc.revoked))  # fmt: skip

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
            entry = HostEntry(c.id, c.id, "capsul id", doc.fetched_at, list(c.keys), doc.signed,
                              doc.source, list(doc.revoked))  # fmt: skip
            out.append(Row(self.name, c.id, names, addresses, entry))
        if listing is not None:
            listing.close()
        for capsul_id, group in sorted(by_capsul.items()):
            orphan = self.store.read_host(group[0]) if capsul_id not in listed else None
            if orphan is not None:  # no document lists it: what the hook would still serve
                out.append(Row(self.name, capsul_id, group, [], orphan))
        return out

    def refresh(self, host: str | None) -> list[dict[str, object]]:
        """The listing (``all_pages``: every page of a paged one), then every cached host
        derived from it again; a paged provider without ``all_pages``: a lookup per cached
        host (or the one asked about)."""
        if self.all_pages or not self.store.paged():
            from sshpin.providers.refresh import refresh_listing

            try:  # aside, then swapped in: the hook never waits on it (providers/refresh.py)
                doc, records = refresh_listing(self, DocumentFetch(self, all_pages=self.all_pages))
            except NeedsLookup:
                pass
            else:
                self.last_count = doc.count
                return records
        changed: list[dict[str, object]] = []
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

    def _get(self, url: str, headers: dict[str, str], limit: int, allow_404: bool = False) -> Any:
        """One authenticated GET of the provider's API (trust/http.py: TLS, caps, retries)."""
        from sshpin.trust import http
        from sshpin.trust.credentials import get_token, token_hint

        token = self.token or get_token(self.name, str(self.cfg.get("token_command") or ""))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **headers}
        s = http.session(str(self.cfg.get("ca_bundle") or ""))
        try:
            return http.get(s, url, headers, limit, f"provider {self.name!r}", allow_404)
        except AuthError as e:
            if self.token is not None or e.hint:
                raise
            hint = token_hint(self.name, str(self.cfg.get("token_command") or ""))
            raise AuthError(e.message, hint) from None  # the fix for the token source in use
        finally:
            s.close()

    def fetch_document(self, previous: Document | None, now: float) -> Document:
        """A fresh verified document (the listing's first page: ``sshpin login``, ``doctor``).
        With ``previous`` the fetch revalidates (ETag) and returns ``previous`` with a new
        ``fetched_at`` when nothing changed."""
        with self._session() as s:
            doc = self._page(s, self.url, previous, now)
        self.record_newest(doc, f"account {doc.account}")
        return doc

    def _session(self) -> Any:
        from sshpin.trust import http

        return http.session(str(self.cfg.get("ca_bundle") or ""))

    def _page(
        self,
        s: Any,
        url: str,
        previous: Document | None,
        now: float,
        listing: bool = True,
        page_token: str = "",
        host: str = "",
    ) -> Document:
        """One answer of the API (a listing's page, or a lookup), fetched and verified:
        signature, account, API binding, what it says it answers (``page_token``: the token
        asked with, "" for the first page or a lookup; ``host``: the ``?host=`` asked, "" for
        a listing's page), time, and (``listing``: every page of a listing) the account's
        rollback floor. The floor is raised only once the answer is kept
        (``record_newest``)."""
        from sshpin.trust import http
        from sshpin.trust.credentials import get_token, token_hint
        from sshpin.trust.document import MAX_BODY, parse_capsul_api

        token = self.token or get_token(self.name, str(self.cfg.get("token_command") or ""))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if previous is not None and previous.etag:
            headers["If-None-Match"] = previous.etag
        what = f"provider {self.name!r}"
        try:
            r = http.get(s, url, headers, MAX_BODY, what)
        except http.TooLarge as e:
            raise VerificationError(
                f"{e}: an answer past the {MAX_BODY // (1024 * 1024)} MiB cap is refused, and "
                "the listing of a large account must come in pages",
                "ask the provider to serve ?host= lookups and to page its listing "
                "(docs/provider-api.md, 'Large accounts')",
            ) from None
        except AuthError as e:
            if self.token is not None or e.hint:
                raise
            hint = token_hint(self.name, str(self.cfg.get("token_command") or ""))
            raise AuthError(e.message, hint) from None  # the fix for the token source in use
        if r.status == 304:
            if previous is None:
                raise VerificationError(f"{what}: 'not modified' answer to an unconditional GET")
            # "Not modified" vouches for nothing new: the cached document must still pass the
            # rules a fresh one would (account, expiry, 30 days), or a frozen answer lives on.
            self._check_account(previous)
            if previous.signed:
                self._check_time(previous, now)
            previous.fetched_at = now
            return previous
        content_type = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise VerificationError(
                f"{what}: answer is {content_type or 'untyped'}, not application/json"
            )
        signing_keys = list(self.cfg.get("signing_keys") or [])
        signer = ""
        if signing_keys:
            header = r.headers.get("sshpin-signature") or self._detached_signature()
            signer = self._check_signature(header, r.body)
        try:
            doc = parse_capsul_api(r.body, self.name, self.url)
        except VerificationError as e:
            raise VerificationError(f"{what}: {e}") from None
        self._check_account(doc)
        if doc.api and doc.api != self.api_url:
            raise VerificationError(
                f"{what}: refused as mix-and-match: document is for API {doc.api[:80]!r}, "
                f"not the configured api_url {self.api_url!r}"
            )
        if doc.page_token != page_token and (doc.page_token or signing_keys):
            # a signed page names the token it answers, so a later page (the last one, say)
            # cannot pass for the first, nor one page for another: a listing cut short
            # would drop capsuls and account-wide revocations
            said = f"page_token {doc.page_token[:40]!a}" if doc.page_token else "no page_token"
            asked = f"page_token {page_token[:40]!a}" if page_token else "the first page"
            raise VerificationError(
                f"{what}: refused as mix-and-match: an answer with {said} to a request for {asked}",
                "a provider that pages names in each later page the token it answers "
                "(docs/provider-api.md, 'Large accounts')",
            )
        if doc.host and doc.host != host:
            # a ?host= answer names its host, so that it cannot pass for the listing (a
            # listing of one capsul) nor for another host's answer
            asked = f"?host={host[:80]}" if host else "the listing"
            raise VerificationError(
                f"{what}: refused as mix-and-match: an answer for host {doc.host[:80]!a} "
                f"to a request for {asked}"
            )
        if signing_keys:
            self._check_binding(doc)
            self._check_time(doc, now)
            if listing:
                self._check_rollback(doc, previous, signer)
            doc.signed = True
        doc.signer = signer
        doc.trust = str(self.cfg.get("trust") or "")
        etag = r.headers.get("etag")
        doc.etag = etag if etag and etag.isascii() and etag.isprintable() else None
        doc.fetched_at = now
        return doc

    def record_newest(self, doc: Document, key: str) -> None:
        """Raise the rollback floor once a verified answer is kept (never for a listing
        refused part way: the cache stays as it was); and, before any account is known, keep
        this one's (``expected_account``)."""
        if not self.logging_in and doc.account and self.expected_account() is None:
            try:
                self.store.record_first_account(self.api_url, doc.account)
            except OSError:
                pass  # best effort (a read-only cache): checked from a later fetch on
        if not doc.signer:
            return
        try:
            self.store.record_newest(f"{key} {doc.signer}", doc.generated_at)
        except OSError:
            pass  # best effort: the cached document still stops a rollback below it

    def fetch_listing(
        self, previous: Document | None, now: float, all_pages: bool
    ) -> tuple[Document, ListingWriter | None, list[dict[str, object]]]:
        """The account's listing, verified. One page: that document. Paged: with
        ``all_pages``, every page, each verified, streamed into a new index (the writer
        returned, to commit); without, ``NeedsLookup``. A listing is whole or nothing: any
        page that fails leaves the cache as it was. Returns the changes of a paged listing
        (a single page's are the document's ``changes_since``)."""
        from urllib.parse import quote

        with self._session() as s:
            first = self._page(s, self.url, previous, now)
            if not first.next_page:
                return first, None, []
            if not all_pages:
                try:
                    self.store.mark_paged()
                except OSError:
                    pass  # best effort: the next cold miss sees the pages again
                raise NeedsLookup(f"provider {self.name!r} pages its listing")
            first.etag = None  # no revalidation of a paged listing as a whole
            old = self.listing()
            writer = ListingWriter(self.store.listing_path)
            try:
                changes: list[dict[str, object]] = []
                seen: set[str] = set()
                page, pages, revoked = first, 1, list(first.revoked)
                while True:
                    for capsul in page.capsuls:
                        writer.add(capsul)
                        changes += self._changed(capsul, old, first)
                    if self.progress is not None:
                        self.progress(pages, len(writer.ids))
                    token = page.next_page
                    if not token:
                        break
                    if token in seen:
                        raise VerificationError(
                            f"provider {self.name!r}: page token {token[:40]!a} repeats: the "
                            "listing loops; refused whole"
                        )
                    if pages >= MAX_PAGES:
                        raise VerificationError(
                            f"provider {self.name!r}: listing of more than {MAX_PAGES} pages "
                            "refused"
                        )
                    seen.add(token)
                    url = f"{self.url}?page_token={quote(token, safe='')}"
                    page = self._page(s, url, None, now, page_token=token)  # floor: the account's
                    pages += 1
                    self._same_listing(first, page, pages)
                    first.generated_at = min(first.generated_at, page.generated_at)
                    if page.expires:
                        first.expires = min(first.expires or page.expires, page.expires)
                    revoked += [k for k in page.revoked if k not in revoked]
                first.revoked = revoked
                first.pages, first.count, first.capsuls = pages, len(writer.ids), []
                if old is not None:
                    changes += self._removed(old, writer.ids, first)
            except BaseException:
                writer.abort()
                raise
            finally:
                if old is not None:
                    old.close()
        return first, writer, changes

    def _same_listing(self, first: Document, page: Document, number: int) -> None:
        """Every page of one listing: same account, API and signing key as the first."""
        what = f"provider {self.name!r}: page {number} of the listing"
        if page.account != first.account:
            raise VerificationError(
                f"{what} is for account {page.account[:80]!r}, not {first.account!r}: refused "
                "as mix-and-match"
            )
        if page.api != first.api or page.signed != first.signed:
            raise VerificationError(f"{what} differs from the first in API or signature")

    def _changed(
        self, capsul: Capsul, old: Listing | None, doc: Document
    ) -> list[dict[str, object]]:
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

    def _removed(self, old: Listing, ids: set[str], doc: Document) -> list[dict[str, object]]:
        out = []
        for capsul_id in old.ids():
            if capsul_id not in ids:
                before = old.by_id(capsul_id)
                if before is not None:
                    fps = {k.sha256() for k in before.keys}
                    out.append(_record(doc, before, "removed", fps, set()))
        return out

    def fetch_lookup(
        self, host: str, previous: HostEntry | None, now: float
    ) -> tuple[HostEntry, Document | None]:
        """``GET /capsuls?host=H``: one host's entry, verified as any document, then filtered
        here (a server may ignore the parameter), and never older than what was accepted for
        that capsul (or the account's listing) from the same signing key. And the whole
        listing, when the server ignored ``?host=`` and answered it all (no ``host``, no
        ``next_page_token``): to keep as the listing, as its first fetch would have."""
        import copy
        from urllib.parse import quote

        aliases, dns = self.cfg.aliases, bool(self.cfg.get("resolve_dns"))
        term = lookup_term(host, aliases, dns)
        what = f"provider {self.name!r}"
        if term is None:
            raise NoKeysError(f"not a capsul of provider {self.name!r} (no address to ask for)")
        with self._session() as s:
            doc = self._page(s, f"{self.url}?host={quote(term, safe='')}", None, now, False,
                             host=term)  # fmt: skip
        mine = [c for c in doc.capsuls if c.matches(term)]
        # a lookup answer names its host; without, the server ignored ?host=: its listing
        whole = doc if not doc.host and not doc.next_page else None  # never a page of it
        if not doc.host and doc.next_page:
            try:
                self.store.mark_paged()
            except OSError:
                pass  # best effort: the next cold miss sees the pages again
        if not mine and doc.next_page:
            raise ProviderError(
                f"{what} pages its listing but ignores ?host=: {term} is not on the first page",
                f"'sshpin cache refresh --all' fetches every page of provider {self.name!r}",
            )
        if not mine and doc.capsuls and doc.host:
            others = ", ".join(c.id for c in doc.capsuls[:3])
            raise VerificationError(
                f"{what}: lookup for {term} answered with another host's capsul ({others}): refused"
            )
        doc = copy.copy(doc)
        doc.capsuls = mine
        entry = self.derive(doc, host)
        if doc.signed:
            floor = max(
                self.store.newest(f"account {doc.account} {doc.signer}"),
                self.store.newest(f"capsul {entry.capsul} {doc.signer}"),
            )
            if previous is not None and previous.signed and previous.capsul == entry.capsul:
                floor = max(floor, previous.generated)
            if floor > doc.generated_at:
                raise VerificationError(
                    f"{what}: answer for {entry.capsul} generated at {_iso(doc.generated_at)} "
                    f"is older than one already accepted ({_iso(floor)}): refused as a rollback"
                )
        self.record_newest(doc, f"capsul {entry.capsul}")  # (and the account, if none is known)
        return entry, whole

    @property
    def api_url(self) -> str:
        return str(self.cfg.get("api_url")).rstrip("/")

    def expected_account(self) -> tuple[str, str] | None:
        """(account, how it was chosen): the config's ``account``, else the one ``sshpin
        login`` saw, else the one of the provider's first document. None before any."""
        pinned = str(self.cfg.get("account") or "")
        if pinned:
            return pinned, "the config pins account"
        if self.logging_in:
            return None
        from sshpin.trust.credentials import recorded_account

        seen = recorded_account(self.name)
        if seen:
            return seen, "you logged in as"
        # a token from the environment or token_command, no login, no ``account``: the first
        # kept document's account (for this api_url), so that another account's document
        # (signed by the same provider, replayed through a rogue TLS certificate) is refused
        first = self.store.first_account(self.api_url)
        return (first, "its first document was for") if first else None

    def _check_account(self, doc: Document) -> None:
        expected = self.expected_account()
        if expected is None or doc.account == expected[0]:
            return
        if expected[1].startswith("the config"):
            hint = "correct 'account' in the config if you changed accounts"
        elif expected[1].startswith("you"):
            hint = f"'sshpin login {self.name}' again if you changed accounts"
        else:
            hint = (f"if you changed accounts, set account = \"...\" in provider "
                    f"{self.name!r}'s config, or remove {self.store.account_path}")  # fmt: skip
        raise VerificationError(
            f"provider {self.name!r}: refused as mix-and-match: document is for account "
            f"{doc.account[:80]!r}, {expected[1]} {expected[0]!r}",
            hint,
        )

    def _check_binding(self, doc: Document) -> None:
        """A signed document must say which API it answers for and until when it holds."""
        if doc.api and doc.expires:
            return
        missing = " and ".join(f for f, v in (("api", doc.api), ("expires", doc.expires)) if not v)
        weakness = "it could be replayed from another API or account, or served forever"
        if not self.cfg.get("allow_unbound"):
            raise VerificationError(
                f"provider {self.name!r}: refused as unbound: signed document has no {missing}; "
                f"{weakness}",
                "ask the provider for bound documents, or set allow_unbound = true",
            )
        say(f"provider {self.name!r}", f"warning: accepting an unbound signed document (no "
            f"{missing}; allow_unbound = true): {weakness}")  # fmt: skip

    def _check_signature(self, header: str | None, body: bytes) -> str:
        """``Sshpin-Signature``: base64 of a binary SSHSIG over the exact body bytes. Returns
        the signer's fingerprint."""
        import binascii

        from sshpin.trust import sshsig

        what = f"provider {self.name!r}"
        if not header:
            raise VerificationError(f"{what}: document is not signed (no Sshpin-Signature)")
        try:
            blob = binascii.a2b_base64(header.strip().encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise VerificationError(f"{what}: Sshpin-Signature is not base64") from None
        state = self.signing_state()
        try:
            return sshsig.verify(blob, body, state.trusted()).sha256()
        except VerificationError as e:
            refused = VerificationError(f"{what}: document signature refused: {e}")
        try:
            claimed = sshsig.parse(blob).signer
        except VerificationError:
            raise refused from None
        if not state.is_revoked(claimed) and all(k.blob != claimed.blob for k in state.trusted()):
            state = self.follow_chain(state)  # an unknown signer: the provider may have rotated
        if state.is_revoked(claimed):
            raise VerificationError(
                f"{what}: document signed by {claimed.sha256()}, a signing key the provider "
                "revoked: refused"
            )
        try:
            return sshsig.verify(blob, body, state.trusted()).sha256()
        except VerificationError as e:
            raise VerificationError(f"{what}: document signature refused: {e}") from None

    def _detached_signature(self) -> str | None:
        """For static hosting, which cannot set a header: ``{api_url}/capsuls.sig``, the
        armored SSHSIG ``sshpin publish`` writes beside the document. Same bytes signed."""
        import base64

        from sshpin.trust import sshsig

        r = self._get(self.url + ".sig", {}, 16384, allow_404=True)
        if r.status != 200:
            return None
        try:
            return base64.b64encode(sshsig.unarmor(r.body.decode("ascii"))).decode()
        except (UnicodeDecodeError, VerificationError):
            return None  # then: "not signed", the one clear refusal

    def signing_state(self) -> KeyState:
        """The signing keys trusted now: ``signing_keys``, as far as the chain has moved on."""
        from sshpin.trust.keychain import KeyState

        configured = list(self.cfg.get("signing_keys") or [])
        return KeyState.from_bytes(self.store.read_chain(), configured)

    def follow_chain(self, state: KeyState | None = None) -> KeyState:
        """Fetch ``{api_url}/signing-keys`` and follow it forward from ``state``; record and
        announce every step (docs/provider-api.md, "Signing-key rotation")."""
        from sshpin.trust.keychain import follow

        state = state or self.signing_state()
        r = self._get(self.api_url + "/signing-keys", {}, 1 << 20, allow_404=True)
        if r.status != 200:
            return state
        reached, steps = follow(state, r.body, self.api_url)
        for step in steps:
            say(f"provider {self.name!r}", step)
        if reached.version != state.version:
            try:
                self.store.write_chain(reached.to_bytes())
            except OSError:
                pass  # best effort: followed again next time
        return reached

    def _check_time(self, doc: Document, now: float) -> None:
        """Within its time: none older than 30 days, none past its ``expires`` (freeze), none
        valid for longer than 30 days, none from the future (fast-forward)."""
        what = f"provider {self.name!r}"
        if doc.generated_at < now - MAX_AGE:
            raise VerificationError(
                f"{what}: signed document generated at {_iso(doc.generated_at)} is more than "
                "30 days old: refused as a freeze"
            )
        if doc.expires and now >= doc.expires:
            raise VerificationError(
                f"{what}: refused as a freeze: signed document expired at {_iso(doc.expires)}"
            )
        if doc.expires > doc.generated_at + MAX_AGE:
            raise VerificationError(
                f"{what}: refused as endless data: signed document claims validity until "
                f"{_iso(doc.expires)}, more than 30 days after it was generated"
            )
        if doc.generated_at > now + SKEW:
            raise VerificationError(
                f"{what}: refused as fast-forward: document generated at "
                f"{_iso(doc.generated_at)}, in the future"
            )

    def _check_rollback(self, doc: Document, previous: Document | None, signer: str) -> None:
        """Never older than the cached document, nor than the newest this client accepted for
        the account from the same signing key."""
        what = f"provider {self.name!r}"
        floor = self.store.newest(f"account {doc.account} {signer}")
        if previous is not None and previous.signed and previous.account == doc.account:
            floor = max(floor, previous.generated_at)
        if doc.generated_at < floor:
            raise VerificationError(
                f"{what}: document generated at {_iso(doc.generated_at)} is older than one "
                f"already accepted ({_iso(floor)}): refused as a rollback"
            )


class NeedsLookup(SshpinError):
    """The provider pages its listing: the hook asks ``?host=`` instead (not a failure)."""


class DocumentFetch(Fetch[Document]):
    """What a capsul provider fetches: its account's listing (``all_pages``: every page)."""

    def __init__(
        self, provider: CapsulProvider, subject: str = "", all_pages: bool = False
    ) -> None:
        self.provider = provider
        self.subject = subject or f"provider {provider.name!r}"  # the host asked about
        self.all_pages = all_pages
        self.changed: list[dict[str, object]] = []
        self.pending: ListingWriter | None = None  # a paged listing's index, to commit

    def read(self) -> Document | None:
        raw = self.provider.store.read_document()
        if raw is None:
            return None
        try:
            doc = Document.from_bytes(raw)
        except ValueError:
            return None  # damaged: a miss
        return doc if self.provider._usable(doc, self.subject) else None

    def fetch(self, previous: Document | None) -> Document:
        doc, self.pending, self.changed = self.provider.fetch_listing(
            previous, time.time(), self.all_pages
        )
        return doc

    def changes(self, item: Document, previous: Document | None) -> list[dict[str, object]]:
        if self.pending is None:  # a paged listing's were found while its pages came in
            paged = previous is not None and previous.pages > 1  # its capsuls were in the index
            self.changed = item.changes_since(None if paged else previous)
        return self.changed

    def write(self, item: Document) -> None:
        store = self.provider.store
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
        self.provider.record_newest(item, f"account {item.account}")


class LookupFetch(Fetch[HostEntry]):
    """What a cold miss of a paged provider fetches: ``?host=``, one host's entry."""

    def __init__(self, provider: CapsulProvider, host: str, subject: str = "") -> None:
        self.provider = provider
        self.host = host
        self.subject = subject or host
        self.changed: list[dict[str, object]] = []
        self.listing: DocumentFetch | None = None
        self.whole: Document | None = None

    def read(self) -> HostEntry | None:
        return self.provider._cached_entry(self.host)

    def fetch(self, previous: HostEntry | None) -> HostEntry:
        entry, whole = self.provider.fetch_lookup(self.host, previous, time.time())
        self.listing = DocumentFetch(self.provider, self.subject) if whole is not None else None
        self.whole = whole
        return entry

    def changes(self, item: HostEntry, previous: HostEntry | None) -> list[dict[str, object]]:
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


def _record(
    doc: Document, capsul: Capsul, event: str, before: set[str], after: set[str]
) -> dict[str, object]:
    from sshpin.store.history import history_record

    addresses = [x for x in (capsul.ipv4, capsul.ipv6) if x]
    return history_record(doc.fetched_at, doc.provider, capsul.id, capsul.name, addresses,
                          event, before, after, doc.source)  # fmt: skip


def _parses(raw: bytes) -> bool:
    try:
        Document.from_bytes(raw)
    except ValueError:
        return False
    return True


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
