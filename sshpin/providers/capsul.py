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
        try:
            doc = parse_capsul_api(r.body, self.name, self.url)
        except VerificationError as e:
            raise VerificationError(f"{what}: {e}") from None
        etag = r.headers.get("etag")
        doc.etag = etag if etag and etag.isascii() and etag.isprintable() else None
        doc.fetched_at = now
        return doc
