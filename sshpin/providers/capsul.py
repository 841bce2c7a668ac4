"""``type = "capsul"``: the capsul host-key API, v1 (docs/provider-api.md).

One verified document per provider lists the account's capsuls and their keys; a host's entry
is derived from it (providers/matching.py says which capsul a host is) and cached on its own,
so a cached hit reads one small file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sshpin.core.config import (
    flag,
    freshness,
    https_url,
    key_lines,
    path_value,
    ports,
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
from sshpin.providers.matching import resolve
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, fresh, servable
from sshpin.trust.document import Document
from sshpin.trust.obtain import Fetch, ago, obtain

if TYPE_CHECKING:
    from sshpin.core.names import Query
    from sshpin.trust.keychain import KeyState

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
        from sshpin.core.names import is_capsul_id, valid_host

        freshness(table, out)
        ports(table, out, [22])
        out["signing_keys"] = key_lines(_list(table, "signing_keys"))
        out["ca_bundle"] = path_value(table, "ca_bundle")
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
        account = string(table, "account", "")
        if not account.isprintable() or len(account) > 255:
            raise ValueError("account: expected the account name the provider's documents state")
        out["account"] = account
        out["allow_unbound"] = flag(table, "allow_unbound")
        out["trust"] = trust_context("capsul", out["signing_keys"], out["api_url"],
                                     out["ca_bundle"], account, out["allow_unbound"])  # fmt: skip

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
        current = doc is not None and fresh(doc.fetched_at, doc.expires, self.cfg.ttl, now)
        if current and derived is not None and derived.has(want):
            self._save(derived)
            return derived
        try:
            doc = obtain(documents, self.store, self.cfg, mismatch=host if current else None)
            derived = self.derive(doc, host)
        except (ProviderError, VerificationError) as e:
            entry = self._cached_entry(host)  # no usable document: the entry may be in time
            ttl, stale = self.cfg.ttl, self.cfg.stale_if_error
            if entry is None or not servable(entry.fetched_at, entry.expires, ttl, stale, now):
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
                         doc.source, list(doc.revoked), address, expires=doc.expires,
                         trust=doc.trust, generated=doc.generated_at)  # fmt: skip

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
        """Check the token, and record the account it answers for: from now on a document for
        any other account is refused (mix-and-match)."""
        from sshpin.trust.credentials import record_account

        self.token = token
        self.logging_in = True
        doc = self.fetch_document(None, time.time())
        before = record_account(self.name, doc.account)
        if before is not None and before != doc.account:
            dropped = self.store.drop_document()
            for host in self.store.hosts():
                dropped |= self.store.drop_host(host)
            say(f"provider {self.name!r}", f"account changed from {before!r} to "
                f"{doc.account!r}; cached keys of the old account dropped")  # fmt: skip
        return (f"the provider lists {len(doc.capsuls)} capsul(s) of account {doc.account} "
                "(recorded: documents for another account are refused)")  # fmt: skip

    def check(self) -> str:
        chain = ""
        if self.cfg.get("signing_keys"):
            state = self.follow_chain()
            keys = ", ".join(k.sha256() for k in state.trusted())
            chain = f"; signing keys version {state.version}: {keys}"
            chain += f" ({len(state.revoked)} revoked)" if state.revoked else ""
        doc = self.fetch_document(None, time.time())
        signed = ", signature verified" if doc.signed else ""
        return f"{self.url} lists {len(doc.capsuls)} capsul(s) of {doc.account}{signed}{chain}"

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
        """A fresh verified document. With ``previous`` the fetch revalidates (ETag) and
        returns ``previous`` with a new ``fetched_at`` when nothing changed."""
        from sshpin.trust.document import MAX_BODY, parse_capsul_api

        headers = {"If-None-Match": previous.etag} if previous is not None and previous.etag else {}
        what = f"provider {self.name!r}"
        r = self._get(self.url, headers, MAX_BODY)
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
        if signing_keys:
            self._check_binding(doc)
            self._check_time(doc, now)
            self._check_rollback(doc, previous, signer)
            doc.signed = True
        doc.trust = str(self.cfg.get("trust") or "")
        etag = r.headers.get("etag")
        doc.etag = etag if etag and etag.isascii() and etag.isprintable() else None
        doc.fetched_at = now
        if signer:
            try:
                self.store.record_newest(f"account {doc.account} {signer}", doc.generated_at)
            except OSError:
                pass  # best effort: the cached document still stops a rollback below it
        return doc

    @property
    def api_url(self) -> str:
        return str(self.cfg.get("api_url")).rstrip("/")

    def expected_account(self) -> tuple[str, str] | None:
        """(account, how the user chose it): the config's ``account``, else the one
        ``sshpin login`` saw. None while neither says."""
        pinned = str(self.cfg.get("account") or "")
        if pinned:
            return pinned, "the config pins account"
        from sshpin.trust.credentials import recorded_account

        seen = None if self.logging_in else recorded_account(self.name)
        return (seen, "you logged in as") if seen else None

    def _check_account(self, doc: Document) -> None:
        expected = self.expected_account()
        if expected is not None and doc.account != expected[0]:
            raise VerificationError(
                f"provider {self.name!r}: refused as mix-and-match: document is for account "
                f"{doc.account[:80]!r}, {expected[1]} {expected[0]!r}",
                f"'sshpin login {self.name}' again if you changed accounts"
                if expected[1].startswith("you")
                else "correct 'account' in the config if you changed accounts",
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
        if doc.trust != self.provider.cfg.get("trust"):
            log(self.subject, "the cached document was verified under another configuration "
                "(signing_keys, api_url, ca_bundle, account); fetching it again")  # fmt: skip
            return None
        expected = self.provider.expected_account()
        if expected is not None and doc.account != expected[0]:
            log(self.subject, f"the cached document is for account {doc.account!r}; not used")
            return None
        return doc

    def fetch(self, previous: Document | None) -> Document:
        return self.provider.fetch_document(previous, time.time())

    def changes(self, item: Document, previous: Document | None) -> list[dict[str, object]]:
        self.changed = item.changes_since(previous)
        return self.changed

    def write(self, item: Document) -> None:
        self.provider.store.write_document(item.to_bytes(), item.fetched_at)


def _parses(raw: bytes) -> bool:
    try:
        Document.from_bytes(raw)
    except ValueError:
        return False
    return True


def _list(table: dict[str, Any], key: str) -> list[str]:
    from sshpin.core.config import string_list

    return string_list(table, key)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
