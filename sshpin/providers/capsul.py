"""``type = "capsul"``: the capsul host-key API, v1 (docs/provider-api.md).

One verified document per provider lists the account's capsuls and their keys; a host's entry
is derived from it (providers/matching.py says which capsul a host is) and cached on its own,
so a cached hit reads one small file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sshpin.core.config import freshness, https_url, key_lines, string
from sshpin.errors import NoKeysError, ProviderError, SshpinError, VerificationError, say
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.providers.matching import resolve
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, age
from sshpin.trust.document import Document
from sshpin.trust.obtain import Fetch, ago, obtain

if TYPE_CHECKING:
    from sshpin.core.names import Query

MAX_AGE = 30 * 86400  # a signed document older than this is refused (docs/provider-api.md)
SKEW = 300.0  # clocks may differ this much


class CapsulProvider(Provider):
    KEYS = frozenset(
        {"api_url", "aliases", "resolve_dns", "signing_keys", "ca_bundle", "token_command"}
        | {"ttl", "stale_if_error"}
    )
    takes_token = True

    def __init__(self, cfg: Any, root: str) -> None:
        super().__init__(cfg, root)
        self.url = str(cfg.get("api_url")) + "/capsuls"
        self.store = ProviderCache(root, cfg.name)
        self.token: str | None = None  # set by ``sshpin login`` to check a token not yet stored

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        from sshpin.core.names import is_capsul_id, valid_host

        freshness(table, out)
        out["signing_keys"] = key_lines(_list(table, "signing_keys"))
        ca_bundle = string(table, "ca_bundle", "")
        out["ca_bundle"] = _expand(ca_bundle)
        out["api_url"] = https_url(string(table, "api_url"), "api_url").rstrip("/")
        aliases = table.get("aliases", {})
        if not isinstance(aliases, dict):
            raise ValueError("aliases: expected a table of name = capsul id")
        clean: dict[str, str] = {}
        for alias, target in aliases.items():
            if not valid_host(alias) or not isinstance(target, str) or not is_capsul_id(target):
                raise ValueError(f'aliases: {alias!r} = {target!r}: expected name = "capsul-..."')
            clean[alias.lower()] = target
        out["aliases"] = clean
        resolve_dns = table.get("resolve_dns", True)
        if not isinstance(resolve_dns, bool):
            raise ValueError("resolve_dns: expected true or false")
        out["resolve_dns"] = resolve_dns
        out["token_command"] = string(table, "token_command", "")

    # -- the answer ----------------------------------------------------------------------

    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        host, want = query.host, query.want
        documents = DocumentFetch(self, query.token)
        doc = documents.read()
        derived = self._derive_quiet(doc, host)
        if not fetch:
            entry = self._cached_entry(host)
            if entry is not None and (derived is None or entry.fetched_at >= derived.fetched_at):
                return entry
            return derived
        now = time.time()
        fresh = doc is not None and age(doc.fetched_at, now) < self.cfg.ttl
        if fresh and derived is not None and derived.has(want):
            self._save(derived)
            return derived
        try:
            doc = obtain(documents, self.store, self.cfg, mismatch=host if fresh else None)
            derived = self.derive(doc, host)
        except (ProviderError, VerificationError) as e:
            entry = self._cached_entry(host)  # no usable document: the entry may be in time
            if (
                entry is None
                or age(entry.fetched_at, now) >= self.cfg.ttl + self.cfg.stale_if_error
            ):
                return self._revoked_only(query, documents.read(), e)
            say(query.token, f"{e}; using keys fetched {ago(now - entry.fetched_at)} (stale)")
            return entry
        except NoKeysError as e:
            return self._revoked_only(query, doc, e)
        self._save(derived)
        if not derived.has(want):
            unknown_key(query, derived, self.name, derived.capsul)
        return derived

    def derive(self, doc: Document, host: str) -> HostEntry:
        """The entry a document implies for ``host``; NoKeysError when it has none."""
        found = resolve(doc, host, self.cfg.aliases, bool(self.cfg.get("resolve_dns")))
        if found is None:
            raise NoKeysError(f"not a capsul of account {doc.account} at provider {self.name!r}")
        capsul, rule = found
        if capsul.problem:
            raise VerificationError(f"provider's data for {capsul.id} refused: {capsul.problem}")
        if not capsul.keys:
            raise NoKeysError(f"provider lists no usable host key for {capsul.id}")
        address = capsul.ipv4 or capsul.ipv6 or ""
        return HostEntry(host, capsul.id, rule, doc.fetched_at, list(capsul.keys), doc.signed,
                         doc.source, list(doc.revoked), address)  # fmt: skip

    def _derive_quiet(self, doc: Document | None, host: str) -> HostEntry | None:
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
        if doc is None and self.store.read_document() is not None:
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
        for c in doc.capsuls if doc else []:
            assert doc is not None
            listed.add(c.id)
            names = [c.name] if c.name and c.name != c.id else []
            addresses = [a for a in (c.ipv4, c.ipv6) if a]
            names += [h for h in by_capsul.get(c.id, []) if h not in (c.id, *names, *addresses)]
            entry = HostEntry(c.id, c.id, "capsul id", doc.fetched_at, list(c.keys), doc.signed,
                              doc.source, list(doc.revoked))  # fmt: skip
            out.append(Row(self.name, c.id, names, addresses, entry))
        for capsul_id, group in sorted(by_capsul.items()):
            orphan = self.store.read_host(group[0]) if capsul_id not in listed else None
            if orphan is not None:  # no document lists it: what the hook would still serve
                out.append(Row(self.name, capsul_id, group, [], orphan))
        return out

    def refresh(self, host: str | None) -> list[dict[str, object]]:
        documents = DocumentFetch(self)
        doc = obtain(documents, self.store, self.cfg, force=True)
        for cached in self.store.hosts():
            derived = self._derive_quiet(doc, cached)
            if derived is None:
                self.store.drop_host(cached)
            else:
                self.store.write_host(derived)
        self.last_count = len(doc.capsuls)
        return documents.changed

    def try_token(self, token: str) -> str:
        self.token = token
        doc = self.fetch_document(None, time.time())
        return f"the provider lists {len(doc.capsuls)} capsul(s) of {doc.account}"

    def check(self) -> str:
        doc = self.fetch_document(None, time.time())
        signed = ", signature verified" if doc.signed else ""
        return f"{self.url} lists {len(doc.capsuls)} capsul(s) of {doc.account}{signed}"

    # -- the fetch -----------------------------------------------------------------------

    def fetch_document(self, previous: Document | None, now: float) -> Document:
        """A fresh verified document. With ``previous`` the fetch revalidates (ETag) and
        returns ``previous`` with a new ``fetched_at`` when nothing changed."""
        from sshpin.trust import http
        from sshpin.trust.credentials import get_token
        from sshpin.trust.document import MAX_BODY, parse_capsul_api

        token = self.token or get_token(self.name, str(self.cfg.get("token_command") or ""))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if previous is not None and previous.etag:
            headers["If-None-Match"] = previous.etag
        what = f"provider {self.name!r}"
        s = http.session(str(self.cfg.get("ca_bundle") or ""))
        try:
            r = http.get(s, self.url, headers, MAX_BODY, what)
        finally:
            s.close()
        if r.status == 304:
            if previous is None:
                raise VerificationError(f"{what}: 'not modified' answer to an unconditional GET")
            previous.fetched_at = now
            return previous
        content_type = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise VerificationError(
                f"{what}: answer is {content_type or 'untyped'}, not application/json"
            )
        signing_keys = list(self.cfg.get("signing_keys") or [])
        if signing_keys:
            self._check_signature(r.headers.get("sshpin-signature"), r.body, signing_keys)
        try:
            doc = parse_capsul_api(r.body, self.name, self.url)
        except VerificationError as e:
            raise VerificationError(f"{what}: {e}") from None
        if signing_keys:
            self._check_age(doc, previous, now)
            doc.signed = True
        etag = r.headers.get("etag")
        doc.etag = etag if etag and etag.isascii() and etag.isprintable() else None
        doc.fetched_at = now
        return doc

    def _check_signature(self, header: str | None, body: bytes, signing_keys: list[str]) -> None:
        """``Sshpin-Signature``: base64 of a binary SSHSIG over the exact body bytes."""
        import binascii

        from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line
        from sshpin.trust import sshsig

        what = f"provider {self.name!r}"
        if not header:
            raise VerificationError(f"{what}: document is not signed (no Sshpin-Signature)")
        try:
            blob = binascii.a2b_base64(header.strip().encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise VerificationError(f"{what}: Sshpin-Signature is not base64") from None
        allowed = [parse_line(line, SIGNING_KEY_TYPES) for line in signing_keys]
        try:
            sshsig.verify(blob, body, allowed)
        except VerificationError as e:
            raise VerificationError(f"{what}: document signature refused: {e}") from None

    def _check_age(self, doc: Document, previous: Document | None, now: float) -> None:
        """No rollback to an older document, and none older than 30 days."""
        what = f"provider {self.name!r}"
        if previous is not None and previous.signed and doc.generated_at < previous.generated_at:
            raise VerificationError(
                f"{what}: document generated at {_iso(doc.generated_at)} is older than the "
                f"cached one ({_iso(previous.generated_at)}): refused as a rollback"
            )
        if doc.generated_at < now - MAX_AGE:
            raise VerificationError(
                f"{what}: signed document generated at {_iso(doc.generated_at)} is more than "
                "30 days old: refused"
            )
        if doc.generated_at > now + SKEW:
            raise VerificationError(
                f"{what}: document generated at {_iso(doc.generated_at)}, in the future"
            )


class DocumentFetch(Fetch[Document]):
    """What a capsul provider fetches: its account's whole document."""

    def __init__(self, provider: CapsulProvider, subject: str = "") -> None:
        self.provider = provider
        self.subject = subject or f"provider {provider.name!r}"  # the host asked about
        self.changed: list[dict[str, object]] = []

    def read(self) -> Document | None:
        raw = self.provider.store.read_document()
        if raw is None:
            return None
        try:
            doc = Document.from_bytes(raw)
        except ValueError:
            return None  # damaged: a miss
        if self.provider.cfg.get("signing_keys") and not doc.signed:
            return None  # signatures are required now: an unsigned document is not usable
        return doc

    def fetch(self, previous: Document | None) -> Document:
        return self.provider.fetch_document(previous, time.time())

    def changes(self, item: Document, previous: Document | None) -> list[dict[str, object]]:
        self.changed = item.changes_since(previous)
        return self.changed

    def write(self, item: Document) -> None:
        self.provider.store.write_document(item.to_bytes(), item.fetched_at)


def _list(table: dict[str, Any], key: str) -> list[str]:
    from sshpin.core.config import string_list

    return string_list(table, key)


def _expand(path: str) -> str:
    import os

    return os.path.expanduser(path) if path else ""


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
