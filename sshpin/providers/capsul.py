"""The capsul host-key API, v1 (DESIGN.md section 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sshpin import http
from sshpin.credentials import get_token
from sshpin.document import MAX_BODY, Document, parse_capsul_api
from sshpin.errors import VerificationError
from sshpin.providers.interface import Provider

if TYPE_CHECKING:
    from sshpin.config import ProviderConfig


MAX_AGE = 30 * 86400  # a signed document older than this is refused (DESIGN.md section 4)
SKEW = 300.0  # clocks may differ this much


class CapsulProvider(Provider):
    def __init__(self, cfg: ProviderConfig) -> None:
        super().__init__(cfg)
        self.url = str(cfg.get("api_url")) + "/capsuls"
        self.token: str | None = None  # set by ``sshpin login`` to check a token not yet stored

    def source(self) -> str:
        return self.url

    def fetch(self, previous: Document | None, now: float) -> Document:
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

        from sshpin import sshsig
        from sshpin.keys import SIGNING_KEY_TYPES, parse_line

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


def _iso(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
