"""The authenticated client of a capsul provider's API: one token and TLS path for every
request, and every answer handed to the trust core (trust/verify.py) with what was asked.

This module sequences; it decides nothing about trust. It gathers the bytes (the answer, its
detached ``capsuls.sig``, the signing-key chain when an unknown key signed), the floors and the
account expected, calls ``verify``, and persists what verifying moved (the chain reached, the
floors raised once an answer is kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sshpin.errors import AuthError, VerificationError, say
from sshpin.trust import verify
from sshpin.trust.document import MAX_BODY, Document

if TYPE_CHECKING:
    from sshpin.core.config import ProviderConfig
    from sshpin.store.cachedir import ProviderCache
    from sshpin.trust.keychain import KeyState


class CapsulClient:
    """The provider's half that talks to its API (``CapsulProvider`` is the other half)."""

    cfg: ProviderConfig
    store: ProviderCache
    url: str  # {api_url}/capsuls
    token: str | None  # set by ``sshpin login`` to check a token not yet stored
    logging_in: bool  # ``sshpin login``: any account may answer; it is recorded

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def signed_only(self) -> bool:
        """Signatures are required (``signing_keys`` set): nothing unsigned is usable."""
        return bool(self.cfg.get("signing_keys"))

    @property
    def trust_context(self) -> str:
        return str(self.cfg.get("trust") or "")

    @property
    def api_url(self) -> str:
        return str(self.cfg.get("api_url")).rstrip("/")

    def session(self) -> Any:
        from sshpin.trust import http

        return http.session(str(self.cfg.get("ca_bundle") or ""))

    def get(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        allow_404: bool = False,
        session: Any = None,
    ) -> Any:
        """One authenticated GET of the provider's API (trust/http.py: TLS, caps, retries)."""
        from sshpin.trust import http
        from sshpin.trust.credentials import get_token, token_hint

        command = str(self.cfg.get("token_command") or "")
        token = self.token or get_token(self.name, command)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **headers}
        s = session if session is not None else self.session()
        try:
            return http.get(s, url, headers, limit, f"provider {self.name!r}", allow_404)
        except AuthError as e:
            if self.token is not None or e.hint:
                raise
            raise AuthError(e.message, token_hint(self.name, command)) from None
        finally:
            if session is None:
                s.close()

    # -- what the trust core is given ----------------------------------------------------

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

    def asked(self, page_token: str = "", host: str = "", listing: bool = True) -> verify.Asked:
        expected = self.expected_account()
        account, why, hint = "", "", ""
        if expected is not None:
            account, why = expected
            if why.startswith("the config"):
                hint = "correct 'account' in the config if you changed accounts"
            elif why.startswith("you"):
                hint = f"'sshpin login {self.name}' again if you changed accounts"
            else:
                hint = (f"if you changed accounts, set account = \"...\" in provider "
                        f"{self.name!r}'s config, or remove {self.store.account_path}")  # fmt: skip
        return verify.Asked(self.name, self.api_url, self.url, account, why, hint, page_token,
                            host, listing)  # fmt: skip

    def trust(self) -> verify.Trust:
        state = self.signing_state() if self.cfg.get("signing_keys") else None
        return verify.Trust(state, bool(self.cfg.get("allow_unbound")),
                            str(self.cfg.get("trust") or ""))  # fmt: skip

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
        chain = self.chain_bytes()
        if chain is None:
            return state
        reached, steps = follow(state, chain, self.api_url)
        self.moved(state, reached, steps)
        return reached

    def chain_bytes(self) -> bytes | None:
        r = self.get(self.api_url + "/signing-keys", {}, 1 << 20, allow_404=True)
        return bytes(r.body) if r.status == 200 else None

    def moved(self, state: KeyState | None, reached: KeyState | None, steps: list[str]) -> None:
        """Say the chain's steps; keep the state reached when its version changed."""
        for step in steps:
            say(f"provider {self.name!r}", step)
        if state is not None and reached is not None and reached.version != state.version:
            try:
                self.store.write_chain(reached.to_bytes())
            except OSError:
                pass  # best effort: followed again next time

    # -- one answer ------------------------------------------------------------------------

    def fetch_document(self, previous: Document | None, now: float) -> Document:
        """A fresh verified document (the listing's first page: ``sshpin login``, ``doctor``).
        With ``previous`` the fetch revalidates (ETag) and returns ``previous`` with a new
        ``fetched_at`` when nothing changed."""
        with self.session() as s:
            doc = self.fetch_answer(s, self.url, previous, now)
        self.record_newest(doc, "account", doc.account)
        return doc

    def fetch_answer(
        self,
        s: Any,
        url: str,
        previous: Document | None,
        now: float,
        asked: verify.Asked | None = None,
    ) -> Document:
        """One answer of the API (a listing's page, or a lookup), fetched and verified by the
        trust core against ``asked`` (default: the listing's first page). The floor is raised
        only once the answer is kept (``record_newest``)."""
        from sshpin.trust import http

        asked = asked or self.asked()
        headers = {}
        if previous is not None and previous.etag:
            headers["If-None-Match"] = previous.etag
        try:
            r = self.get(url, headers, MAX_BODY, session=s)
        except http.TooLarge as e:
            raise VerificationError(
                f"{e}: an answer past the {MAX_BODY // (1024 * 1024)} MiB cap is refused, and "
                "the listing of a large account must come in pages",
                "ask the provider to serve ?host= lookups and to page its listing "
                "(docs/provider-api.md, 'Large accounts')",
            ) from None
        if r.status == 304:
            return verify.verify_not_modified(previous, asked, now)
        trust = self.trust()
        signature = r.headers.get("sshpin-signature")
        received = verify.Received(
            r.body,
            r.headers.get("content-type", "").split(";")[0].strip().lower(),
            signature,
            self.detached() if trust.state is not None and not signature else None,
            r.headers.get("etag"),
        )
        if verify.wants_chain(received, trust) and trust.state is not None:
            # followed, kept and said before the answer is judged: a rotation (a revocation
            # above all) stands even when this answer is refused for another reason
            chain = self.chain_bytes()
            if chain is not None:
                from dataclasses import replace

                from sshpin.trust.keychain import follow

                reached, steps = follow(trust.state, chain, self.api_url)
                self.moved(trust.state, reached, steps)
                trust = replace(trust, state=reached)
        verified = verify.verify_document(
            received, asked, trust, now, self.store.floors(), previous
        )
        for warning in verified.warnings:
            say(f"provider {self.name!r}", warning)
        return verified.doc

    def detached(self) -> bytes | None:
        """For static hosting, which cannot set a header: ``{api_url}/capsuls.sig``, the
        armored SSHSIG ``sshpin publish`` writes beside the document. Same bytes signed."""
        r = self.get(self.url + ".sig", {}, 16384, allow_404=True)
        return bytes(r.body) if r.status == 200 else None

    def record_newest(self, doc: Document, kind: str, name: str) -> None:
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
            self.store.record_newest(verify.floor_key(kind, name, doc.signer), doc.generated_at)
        except OSError:
            pass  # best effort: the cached document still stops a rollback below it

    def check_kept(self, doc: Document, latest: Document | None) -> None:
        """Before a listing fetched a while ago is kept: the account expected now (one may
        have been recorded since) and the rollback floors now."""
        verify.check_account(doc.account, self.asked())
        if doc.signed:
            floor = verify.listing_floor(doc, latest, self.store.floors())
            verify.check_rollback(doc.generated_at, floor, f"provider {self.name!r}")
