"""The reference provider: the capsul host-key API v1 (docs/provider-api.md), as ``sshpin demo``
serves it on loopback over TLS.

It answers as the spec says, and nothing else: a bearer token (401 without), ``GET /capsuls``
with ``?host=`` lookups that name the host they answer, ETag and If-None-Match, the
``Sshpin-Signature`` header when it has a signing key, and ``GET /signing-keys`` (the chain).
The test suite's provider (tests/refserver.py) extends it at the steps of ``CapsulAPI.get``
with paging, generated accounts and the faults a test needs; none of that ships.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sshpin.core.times import rfc3339

Answer = tuple[int, bytes, dict[str, str]]  # status, body, headers
JSON = "application/json"


def host_key_entry(pub_line: str) -> dict[str, str]:
    """A ``ssh_host_keys`` entry for a ``.pub`` line, as ``sshpin publish`` writes it."""
    from sshpin.core.keys import parse_line
    from sshpin.provider_side.publish import key_entry

    return key_entry(parse_line(pub_line))


class CapsulAPI:
    """The provider's state, and its answers. Thread-safe: the demo and the tests change it
    while the server runs."""

    def __init__(self, tokens: set[str], account: str = "alice@example.org") -> None:
        self.tokens = set(tokens)
        self.account = account
        self.capsuls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.requests = 0  # every GET of /capsuls, answered or not
        self.queries: list[str] = []  # the query string of each
        self.not_modified = 0  # 304 answers sent
        self.api_url: str | None = None  # the "api" binding; ReferenceServer sets its own URL
        self.revoked: list[dict[str, str]] = []  # top-level revoked_keys entries
        self.signing_key: Any = None  # a cryptography private key: sign every body
        self.chain: list[dict[str, str]] = []  # signing-key statements (GET .../signing-keys)
        self.changed_at = time.time()  # generated_at: when the listing last changed, as a
        # real provider's document is stable (and its ETag too) until its data changes

    # -- what the provider holds ---------------------------------------------------------

    def add(
        self,
        capsul_id: str,
        pub_lines: list[str],
        ipv4: str | None = None,
        ipv6: str | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        entry = {
            "id": capsul_id,
            "name": name or capsul_id,
            "state": "running",
            "ipv4": ipv4,
            "ipv6": ipv6,
            "ssh_host_keys": [host_key_entry(line) for line in pub_lines],
        }
        with self.lock:
            self.changed_at = time.time()
            self.capsuls = [c for c in self.capsuls if c.get("id") != capsul_id] + [entry]
        return entry

    def add_raw(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.changed_at = time.time()
            self.capsuls.append(entry)

    def set_keys(self, capsul_id: str, pub_lines: list[str]) -> None:
        with self.lock:
            self.changed_at = time.time()
            for c in self.capsuls:
                if c.get("id") == capsul_id:
                    c["ssh_host_keys"] = [host_key_entry(line) for line in pub_lines]

    def revoke(self, pub_lines: list[str]) -> None:
        with self.lock:
            self.changed_at = time.time()
            self.revoked = [host_key_entry(line) for line in pub_lines]

    def rotate(self, new_key: Any, revoke: list[Any] | None = None, keep: bool = False) -> str:
        """Publish the next signing-key statement, signed by the current signing key, and
        sign from now on with ``new_key``: as an operator rotates (docs/provider-api.md).
        ``revoke`` lists private keys whose public halves are never to be trusted again;
        ``keep`` keeps the current key in the set. Returns the statement's text."""
        import base64

        from sshpin.trust.keychain import MAGIC, NAMESPACE
        from sshpin.trust.sshsig import sign

        keys = [public_line(new_key)] + ([public_line(self.signing_key)] if keep else [])
        lines = [MAGIC, f"api {self.api_url}", f"version {len(self.chain) + 2}"]
        lines += [f"key {k}" for k in keys]
        lines += [f"revoked {public_line(k)}" for k in revoke or []]
        text = "\n".join(lines) + "\n"
        blob = sign(self.signing_key, text.encode(), NAMESPACE)
        with self.lock:
            self.chain.append({"statement": text, "signature": base64.b64encode(blob).decode()})
            self.signing_key = new_key
        return text

    def body(self) -> bytes:
        """The listing as it is served now."""
        return self.document(None, None)[0]

    def count(self) -> int:
        with self.lock:
            return self.requests

    # -- what it answers: ``get``, in steps a test server extends ----------------------

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        """The answer to ``GET path`` with the request's ``headers`` (lower-case names)."""
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(path)
        if parts.path == "/api/signing-keys":
            with self.lock:
                body = json.dumps({"chain": self.chain}, indent=1).encode()
            return 200, body, {"Content-Type": JSON}
        if parts.path.rstrip("/") != "/api/capsuls":
            return 404, b"not found\n", {"Content-Type": "text/plain"}
        query = parse_qs(parts.query)
        with self.lock:
            self.requests += 1
            self.queries.append(parts.query)
        early = self.before(query)
        if early is not None:
            return early
        if not self.authorized(headers.get("authorization", "")):
            return 401, b'{"error": "bad token"}', {"Content-Type": JSON}
        host = query["host"][0].lower() if query.get("host") else None
        token = query["page_token"][0] if query.get("page_token") else None
        try:
            body, page = self.document(host, token)
        except LookupError:
            return 400, b'{"error": "bad page_token"}', {"Content-Type": JSON}
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if self.matches(etag, headers.get("if-none-match")):
            with self.lock:
                self.not_modified += 1
            return 304, b"", {"ETag": etag}
        out = {"Content-Type": JSON, "ETag": etag}
        signature = self.signature(body, page)
        if signature is not None:
            out["Sshpin-Signature"] = signature
        return self.finish(200, body, out, headers, page)

    def before(self, query: dict[str, list[str]]) -> Answer | None:
        """An answer given before the token is looked at (none: go on)."""
        return None

    def authorized(self, authorization: str) -> bool:
        return authorization.startswith("Bearer ") and authorization[7:] in self.tokens

    def selected(self, host: str | None) -> list[dict[str, Any]] | None:
        """The capsuls ``?host=`` selects (id, name, ipv4 or ipv6); None without ``host``."""
        if host is None:
            return None
        return [c for c in self.capsuls
                if host in (c.get("id"), str(c.get("name", "")).lower(), c.get("ipv4"),
                            c.get("ipv6"))]  # fmt: skip

    def document(self, host: str | None, token: str | None) -> tuple[bytes, str]:
        """The body for ``?host=`` / ``?page_token=`` (None: absent), and the number of the
        page it is ("": not paged). This one does not page: any token names no page."""
        if token is not None:
            raise LookupError(token)
        with self.lock:
            selected = self.selected(host)
            capsuls = list(self.capsuls) if selected is None else selected
            return self.render(capsuls, host), ""

    def render(
        self,
        capsuls: list[dict[str, Any]],
        host: str | None,
        next_token: str | None = None,
        page_token: str | None = None,
        generated: str | None = None,
        account: str | None = None,
        bound: bool = True,
        expires: str | None = None,
    ) -> bytes:
        """One document, as ``sshpin publish`` writes it: valid 7 days from its
        ``generated_at`` (when the listing last changed) unless ``expires`` says otherwise."""
        from sshpin.provider_side.publish import v1_document

        generated = generated or rfc3339(self.changed_at)
        if bound and expires is None:
            from datetime import datetime

            expires = rfc3339(datetime.fromisoformat(generated).timestamp() + 7 * 86400)
        doc = v1_document(account or self.account, self.api_url if bound else None, generated,
                          expires if bound else None, capsuls, self.revoked, next_token,
                          page_token, host)  # fmt: skip
        indent = 1 if len(capsuls) < 1000 else None  # a big page: compact, as a real one
        return json.dumps(doc, indent=indent).encode()

    def matches(self, etag: str, if_none_match: str | None) -> bool:
        return if_none_match == etag

    def signature(self, body: bytes, page: str) -> str | None:
        """The Sshpin-Signature of ``body`` (None: the provider does not sign)."""
        if self.signing_key is None:
            return None
        import base64

        from sshpin.trust.sshsig import sign

        return base64.b64encode(sign(self.signing_key, body)).decode()

    def finish(
        self, status: int, body: bytes, out: dict[str, str], request: dict[str, str], page: str
    ) -> Answer:
        """The answer as sent (a test server encodes it, or spoils it, here)."""
        return status, body, out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, answer: Answer) -> None:
        status, body, headers = answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def do_GET(self) -> None:
        self._send(self.server.api.get(self.path, self._headers()))

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if 0 < length <= 65536 else b""
        put = getattr(self.server.api, "put", None)
        answer = put(self.path, data) if put is not None else None
        self._send(answer or (405, b"", {}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: CapsulAPI) -> None:
        super().__init__(address, _Handler)
        self.api = api


class ReferenceServer:
    """The API on ``https://127.0.0.1:<port>/api``, in a background thread."""

    def __init__(
        self, api: CapsulAPI, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.api = api
        self._server = _Server((host, port), api)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        if api.api_url is None:
            api.api_url = self.api_url  # documents say which API they answer for
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api"

    @property
    def files_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/files"

    def start(self) -> ReferenceServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def public_line(private_key: Any) -> str:
    """``type base64`` of a cryptography private key's public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return str(
        private_key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    )
