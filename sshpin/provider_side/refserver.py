"""The reference capsul provider: docs/provider-api.md served from memory over HTTPS.

Used by ``sshpin demo`` and by the tests. It is a faithful server of the contract (bearer
tokens, ETag/If-None-Match, JSON bodies, ``?host=``, pages, gzip) with knobs a test needs:
counting requests, going down, answering with a given status, serving raw (even hostile)
capsul entries, an account of any size made on demand (``generate``), and the faults of a
paged listing (``faults``).
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
    """A ``ssh_host_keys`` entry for a ``.pub`` line, as ``sshpin publish`` writes it."""
    from sshpin.core.keys import parse_line
    from sshpin.provider_side.publish import key_entry

    return key_entry(parse_line(pub_line))


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
        self.page_delay = 0.0  # seconds before each later page (?page_token=): a slow listing
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
        self.send_etag = True  # False: an honest provider without ETag (a SHOULD of the spec)
        self.not_modified = 0  # 304 answers sent
        self.signature_override: str | None = None  # a Sshpin-Signature header to send
        self.files: dict[str, bytes] = {}  # object storage: /files/<path> (type = "url")
        self.file_requests = 0
        self.generated = 0  # capsuls made on demand after the added ones (``generated_capsul``)
        self.page_size: int | None = None  # page the listing: this many capsuls a page
        self.honour_host = True  # False: an old server, ?host= ignored
        self.gzip = False  # gzip answers to clients that accept it
        self.faults: dict[str, Any] = {}  # page_fail, token_cycle, page_account, page_bad_sig,
        # page_old (a page number), bomb, lookup_other (a generated capsul's index),
        # first_is_last (the last page answers the first request), no_page_token,
        # first_is_lookup (a host: its lookup answers the first request), lookup_no_host
        self.queries: list[str] = []  # the query string of every GET of /capsuls
        self.bytes_sent = 0  # body bytes of every answer of /capsuls, as sent

    def generate(self, count: int) -> None:
        """An account of ``count`` more capsuls, made when asked for (cheap at any size)."""
        with self.lock:
            self.generated = count
            self.changed_at = time.time()

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
        return self.document(None, None)[0]

    def _selected(self, host: str | None) -> list[dict[str, Any]] | None:
        """``?host=`` (lower case): the added capsuls and the generated one it names."""
        if host is None or not self.honour_host:
            return None
        found = [c for c in self.capsuls
                 if host in (c.get("id"), str(c.get("name", "")).lower(), c.get("ipv4"),
                             c.get("ipv6"))]  # fmt: skip
        index = generated_index(host)
        if index is not None and index < self.generated:
            found.append(generated_capsul(index))
        return found

    def document(self, host: str | None, token: str | None) -> tuple[bytes, str]:
        """The body for ``?host=`` / ``?page_token=`` (None: absent), and the page's number
        (for the faults), or raise LookupError for a token that names no page."""
        with self.lock:
            if token is None and self.faults.get("first_is_last"):
                host = None  # the last page answers the first request (a lookup's too)
            if host is None and token is None and self.faults.get("first_is_lookup"):
                host = str(self.faults["first_is_lookup"])  # a lookup's answer, replayed
            selected = self._selected(host)
            next_token = None
            page_number = None
            if selected is None:
                total = len(self.capsuls) + self.generated
                start, size = 0, total
                if self.page_size is not None and not (host is not None and self.honour_host):
                    if token is None and self.faults.get("first_is_last"):
                        last = max(0, (total - 1) // self.page_size * self.page_size)
                        token = f"p{last}" if last else None  # the last page, for the first
                    if token is not None:
                        if not token.startswith("p") or not token[1:].isdigit():
                            raise LookupError(token)
                        start = int(token[1:])
                    size = self.page_size
                    page_number = start // size + 1
                    if start + size < total:
                        next_token = f"p{start + size}"
                        if token is not None and self.faults.get("token_cycle"):
                            next_token = token  # a server that sends the same page again
                added = self.capsuls[start : start + size]
                first = max(0, start - len(self.capsuls))
                last = min(self.generated, start + size - len(self.capsuls))
                selected = added + [generated_capsul(i) for i in range(first, last)]
            elif self.faults.get("lookup_other"):
                selected = [generated_capsul(int(self.faults["lookup_other"]))]
            generated = self.generated_at or _iso(self.changed_at)
            if page_number is not None and page_number == self.faults.get("page_old"):
                generated = _iso(time.time() - 3600)  # a page replayed from an hour ago
            account = self.account
            if page_number is not None and page_number == self.faults.get("page_account"):
                account = "mallory@example.org"
            from sshpin.provider_side.publish import v1_document

            expires = None
            if self.bound:
                from datetime import datetime

                begins = datetime.fromisoformat(generated).timestamp()
                expires = self.expires or _iso(begins + 7 * 86400)
            api = self.api_url if self.bound else None
            echo = None if self.faults.get("no_page_token") else token
            answers = host if host is not None and self.honour_host else None  # a lookup
            if self.faults.get("lookup_no_host"):
                answers = None
            doc = v1_document(account, api, generated, expires, selected, self.revoked, next_token,
                              echo, answers)  # fmt: skip
            indent = 1 if len(selected) < 1000 else None  # a big page: compact, as a real one
            return json.dumps(doc, indent=indent).encode(), str(page_number or "")

    def revoke(self, pub_lines: list[str]) -> None:
        with self.lock:
            self.changed_at = time.time()
            self.revoked = [host_key_entry(line) for line in pub_lines]

    def count(self) -> int:
        with self.lock:
            return self.requests


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


GENERATED_PREFIX = "capsul-g"


def generated_key(index: int) -> tuple[str, str]:
    """(key line, SHA256 fingerprint) of generated capsul ``index``: an Ed25519 public key
    made from the index alone (nobody holds its private half; it is for lookups, not ssh)."""
    import base64

    point = hashlib.sha256(b"sshpin refserver generated capsul %d" % index).digest()
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + point
    fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return "ssh-ed25519 " + base64.b64encode(blob).decode(), "SHA256:" + fingerprint


def generated_address(index: int) -> str:
    n = index + 1
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def generated_index(host: str) -> int | None:
    """Which generated capsul ``host`` (its id, name or address) names, if any."""
    text = None
    if host.startswith(GENERATED_PREFIX):
        text = host[len(GENERATED_PREFIX) :]
    elif host.startswith("vm"):
        text = host[2:]
    elif host.startswith("10."):
        parts = host.split(".")
        if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
            n = int(parts[1]) << 16 | int(parts[2]) << 8 | int(parts[3])
            return n - 1 if n > 0 else None
        return None
    if text is None or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def generated_capsul(index: int) -> dict[str, Any]:
    line, fingerprint = generated_key(index)
    return {
        "id": f"{GENERATED_PREFIX}{index:06d}",
        "name": f"vm{index}",
        "state": "running",
        "ipv4": generated_address(index),
        "ipv6": None,
        "ssh_host_keys": [
            {"key_type": "ssh-ed25519", "content": line.split()[1], "sha256": fingerprint}
        ],
    }


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
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != self.server.prefix + "/capsuls":
            self._send(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        query = parse_qs(parts.query)
        with api.lock:
            api.requests += 1
            api.queries.append(parts.query)
            override, delay = api.status_override, api.delay
            if override is not None and api.override_count is not None:
                api.override_count -= 1
                if api.override_count <= 0:
                    api.status_override = api.override_count = None
        if delay:
            time.sleep(delay)
        if api.page_delay and query.get("page_token"):
            time.sleep(api.page_delay)
        if override is not None:
            self._send(override, b"{}", {"Content-Type": "application/json", **api.extra_headers})
            return
        auth = self.headers.get("Authorization", "")
        if api.require_token and (not auth.startswith("Bearer ") or auth[7:] not in api.tokens):
            self._send(401, b'{"error": "bad token"}', {"Content-Type": "application/json"})
            return
        host: str | None = query["host"][0] if query.get("host") else None
        token: str | None = query["page_token"][0] if query.get("page_token") else None
        page = ""
        if api.body_override is not None:
            body = api.body_override
        else:
            try:
                body, page = api.document(host.lower() if host else None, token)
            except LookupError:
                bad = b'{"error": "bad page_token"}'
                self._send(400, bad, {"Content-Type": "application/json"})
                return
        if page and page == str(api.faults.get("page_fail")):
            self._send(500, b"{}", {"Content-Type": "application/json"})
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if api.honour_etag and self.headers.get("If-None-Match") == etag:
            with api.lock:
                api.not_modified += 1
            self._send(304, b"", {"ETag": etag})
            return
        headers = {"Content-Type": "application/json", "ETag": etag, **api.extra_headers}
        if not api.send_etag:
            del headers["ETag"]
        if api.signature_override is not None:
            headers["Sshpin-Signature"] = api.signature_override
        elif api.signing_key is not None:
            import base64

            from sshpin.trust.sshsig import sign

            signed = body + b" " if page and page == str(api.faults.get("page_bad_sig")) else body
            headers["Sshpin-Signature"] = base64.b64encode(sign(api.signing_key, signed)).decode()
        accepts = "gzip" in self.headers.get("Accept-Encoding", "")
        if api.faults.get("bomb"):
            body = _bomb()
            headers["Content-Encoding"] = "gzip"
        elif api.gzip and accepts:
            import gzip

            body = gzip.compress(body, 6)
            headers["Content-Encoding"] = "gzip"
        with api.lock:
            api.bytes_sent += len(body)
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


_BOMB: list[bytes] = []


def _bomb() -> bytes:
    """A gzip body of 64 KiB that inflates to 64 MiB of JSON-looking spaces."""
    if not _BOMB:
        import gzip

        _BOMB.append(gzip.compress(b"{" + b" " * (64 * 1024 * 1024), 9))
    return _BOMB[0]


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
