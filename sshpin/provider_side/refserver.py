"""The reference capsul provider: docs/provider-api.md served from memory over HTTPS.

Used by ``sshpin demo`` and by the tests. It is a faithful server of the contract (bearer
tokens, ETag/If-None-Match, JSON bodies) with knobs a test needs: counting requests, going
down, answering with a given status, and serving raw (even hostile) capsul entries.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def host_key_entry(pub_line: str) -> dict[str, str]:
    """A ``ssh_host_keys`` entry for a ``.pub`` line, as the provider publishes it."""
    from sshpin.core.keys import parse_line

    key = parse_line(pub_line)
    return {"key_type": key.key_type, "content": key.base64, "sha256": key.sha256()}


class CapsulAPI:
    """The provider's state. Thread-safe; tests mutate it while the server runs."""

    def __init__(self, tokens: set[str], account: str = "alice@example.org") -> None:
        self.tokens = set(tokens)
        self.account = account
        self.capsuls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.requests = 0  # every GET of /capsuls, answered or not
        self.status_override: int | None = None
        self.override_count: int | None = None  # answer only this many with the override
        self.extra_headers: dict[str, str] = {}
        self.body_override: bytes | None = None
        self.delay = 0.0
        self.generated_at: str | None = None
        self.api_url: str | None = None  # the "api" binding; ReferenceServer sets its own URL
        self.expires: str | None = None  # default: generated_at + 7 days
        self.bound = True  # False: the old format, without "api" and "expires"
        self.revoked: list[dict[str, str]] = []  # top-level revoked_keys entries
        self.signing_key: Any = None  # a cryptography private key: sign every body
        self.chain: list[dict[str, str]] = []  # signing-key statements (GET .../signing-keys)
        self.changed_at = time.time()  # generated_at: when the listing last changed, as a real
        # provider's document is stable (and its ETag too) until its data changes
        self.require_token = True  # False: a broken provider that lists for anyone
        self.honour_etag = True  # False: a broken provider that ignores If-None-Match
        self.signature_override: str | None = None  # a Sshpin-Signature header to send
        self.files: dict[str, bytes] = {}  # object storage: /files/<path> (type = "url")
        self.file_requests = 0

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

    def rotate(self, new_key: Any, revoke: list[Any] | None = None, keep: bool = False) -> str:
        """Publish the next signing-key statement, signed by the current signing key, and
        sign from now on with ``new_key``: as an operator rotates (docs/provider-api.md).
        ``revoke`` lists private keys whose public halves are never to be trusted again;
        ``keep`` keeps the current key in the set. Returns the statement's text."""
        import base64

        from sshpin.trust.keychain import MAGIC, NAMESPACE
        from sshpin.trust.sshsig import sign

        keys = [_public_line(new_key)] + ([_public_line(self.signing_key)] if keep else [])
        lines = [MAGIC, f"api {self.api_url}", f"version {len(self.chain) + 2}"]
        lines += [f"key {k}" for k in keys]
        lines += [f"revoked {_public_line(k)}" for k in revoke or []]
        text = "\n".join(lines) + "\n"
        signature = sign(self.signing_key, text.encode(), namespace=NAMESPACE)
        with self.lock:
            self.chain.append(
                {"statement": text, "signature": base64.b64encode(signature).decode()}
            )
            self.signing_key = new_key
        return text

    def body(self) -> bytes:
        with self.lock:
            generated = self.generated_at or _iso(self.changed_at)
            doc: dict[str, Any] = {"account": self.account}
            if self.bound and self.api_url:
                doc["api"] = self.api_url
            doc["generated_at"] = generated
            if self.bound:
                from datetime import datetime

                start = datetime.fromisoformat(generated).timestamp()
                doc["expires"] = self.expires or _iso(start + 7 * 86400)
            doc["capsuls"] = self.capsuls
            if self.revoked:
                doc["revoked_keys"] = self.revoked
            return json.dumps(doc, indent=1).encode()

    def revoke(self, pub_lines: list[str]) -> None:
        with self.lock:
            self.changed_at = time.time()
            self.revoked = [host_key_entry(line) for line in pub_lines]

    def count(self) -> int:
        with self.lock:
            return self.requests


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        api = self.server.api
        if self.path.startswith("/files/"):
            with api.lock:
                api.file_requests += 1
                data = api.files.get(self.path[len("/files/") :])
            if data is None:
                self._send(404, b"not found\n", {"Content-Type": "text/plain"})
            else:
                self._send(200, data, {"Content-Type": "application/octet-stream"})
            return
        if self.path == self.server.prefix + "/signing-keys":
            with api.lock:
                body = json.dumps({"chain": api.chain}, indent=1).encode()
            self._send(200, body, {"Content-Type": "application/json"})
            return
        if self.path.split("?", 1)[0].rstrip("/") != self.server.prefix + "/capsuls":
            self._send(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        with api.lock:
            api.requests += 1
            override, delay = api.status_override, api.delay
            if override is not None and api.override_count is not None:
                api.override_count -= 1
                if api.override_count <= 0:
                    api.status_override = api.override_count = None
        if delay:
            time.sleep(delay)
        if override is not None:
            self._send(override, b"{}", {"Content-Type": "application/json", **api.extra_headers})
            return
        auth = self.headers.get("Authorization", "")
        if api.require_token and (not auth.startswith("Bearer ") or auth[7:] not in api.tokens):
            self._send(401, b'{"error": "bad token"}', {"Content-Type": "application/json"})
            return
        body = api.body_override if api.body_override is not None else api.body()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if api.honour_etag and self.headers.get("If-None-Match") == etag:
            self._send(304, b"", {"ETag": etag})
            return
        headers = {"Content-Type": "application/json", "ETag": etag, **api.extra_headers}
        if api.signature_override is not None:
            headers["Sshpin-Signature"] = api.signature_override
        elif api.signing_key is not None:
            import base64

            from sshpin.trust.sshsig import sign

            headers["Sshpin-Signature"] = base64.b64encode(sign(api.signing_key, body)).decode()
        self._send(200, body, headers)

    def do_PUT(self) -> None:
        """Object storage upload (a presigned URL stands in for its own authorization)."""
        api = self.server.api
        length = int(self.headers.get("Content-Length") or 0)
        if not self.path.startswith("/files/") or not 0 < length <= 65536:
            self._send(400, b"bad upload\n", {"Content-Type": "text/plain"})
            return
        data = self.rfile.read(length)
        with api.lock:
            api.files[self.path[len("/files/") :]] = data
        self._send(200, b"", {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: CapsulAPI, prefix: str) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.prefix = prefix


class ReferenceServer:
    """The API on ``https://127.0.0.1:<port>/api``, in a background thread."""

    def __init__(
        self, api: CapsulAPI, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.api = api
        self._server = _Server((host, port), api, "/api")
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


def fill_cache(
    root: str, provider: str, count: int, fetched_at: float, trust: str = ""
) -> list[str]:
    """A cache as the hook leaves it after ``count`` hosts were used: a document listing
    ``count`` capsuls (one Ed25519 key each, made from random bytes) and one host entry per
    capsul. For the tests and benchmarks of large caches. ``trust``: the trust context of the
    provider's config (``load_config(...).provider(name).get("trust")``), without which the
    cache is a miss. Returns the capsul ids."""
    import os

    from sshpin.core.keys import parse_blob
    from sshpin.store.cachedir import ProviderCache
    from sshpin.store.entries import HostEntry
    from sshpin.trust.document import Capsul, Document

    def key() -> Any:
        return parse_blob(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32))

    source = "https://capsul.example/api/capsuls"
    capsuls = [
        Capsul(
            f"capsul-{i:06d}",
            f"vm{i}",
            "running",
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            None,
            [key()],
        )
        for i in range(count)
    ]
    store = ProviderCache(root, provider)
    doc = Document(provider, source, capsuls, "bench@example.org", fetched_at, None, False,
                   fetched_at, trust=trust)  # fmt: skip
    store.write_document(doc.to_bytes(), fetched_at)
    store.write_host(HostEntry("capsul-x", "", "", 0, [], False, ""))  # makes hosts/
    os.unlink(store.host_path("capsul-x"))
    for c in capsuls:  # plain writes: atomic ones fsync each file, minutes for a big cache
        entry = HostEntry(c.id, c.id, "capsul id", fetched_at, c.keys, False, source, trust=trust)
        with open(store.host_path(c.id), "w", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(entry.to_text())
    return [c.id for c in capsuls]


def _public_line(private_key: Any) -> str:
    """``type base64`` of a cryptography private key's public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return str(
        private_key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    )
