"""The test suite's provider: the reference provider (sshpin/provider_side/refserver.py) with
what a test needs and a user never should: paging, an account of any size made on demand
(``generate``), object storage for ``type = "url"``, and the faults of a broken or hostile
provider (status and body overrides, delays, a gzip bomb, the faults of a paged listing). And
``fill_cache``, a cache as the hook leaves it after N hosts, for tests and benchmarks.

Each knob is a step of ``CapsulAPI.get`` overridden here; the protocol itself is the shipped
server's.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from typing import Any

from sshpin.core.times import rfc3339
from sshpin.provider_side import refserver as base
from sshpin.provider_side.refserver import Answer, host_key_entry

__all__ = ["CapsulAPI", "ReferenceServer", "fill_cache", "generated_key", "host_key_entry"]


class CapsulAPI(base.CapsulAPI):
    """The provider's state, with the knobs tests turn while the server runs."""

    def __init__(self, tokens: set[str], account: str = "alice@example.org") -> None:
        super().__init__(tokens, account)
        self.status_override: int | None = None
        self.override_count: int | None = None  # answer only this many with the override
        self.extra_headers: dict[str, str] = {}
        self.body_override: bytes | None = None
        self.delay = 0.0
        self.page_delay = 0.0  # seconds before each later page (?page_token=): a slow listing
        self.generated_at: str | None = None
        self.expires: str | None = None  # default: generated_at + 7 days
        self.bound = True  # False: the old format, without "api" and "expires"
        self.require_token = True  # False: a broken provider that lists for anyone
        self.honour_etag = True  # False: a broken provider that ignores If-None-Match
        self.send_etag = True  # False: an honest provider without ETag (a SHOULD of the spec)
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
        # first_is_lookup (a host: its lookup answers the first request), lookup_no_host,
        # page_signer ((page number, private key): that page signed by another key)
        self.bytes_sent = 0  # body bytes of every answer of /capsuls, as sent

    def generate(self, count: int) -> None:
        """An account of ``count`` more capsuls, made when asked for (cheap at any size)."""
        with self.lock:
            self.generated = count
            self.changed_at = time.time()

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        if path.startswith("/files/"):
            with self.lock:
                self.file_requests += 1
                data = self.files.get(path[len("/files/") :])
            if data is None:
                return 404, b"not found\n", {"Content-Type": "text/plain"}
            return 200, data, {"Content-Type": "application/octet-stream"}
        return super().get(path, headers)

    def put(self, path: str, data: bytes) -> Answer:
        """Object storage upload (a presigned URL stands in for its own authorization)."""
        if not path.startswith("/files/") or not data:
            return 400, b"bad upload\n", {"Content-Type": "text/plain"}
        with self.lock:
            self.files[path[len("/files/") :]] = data
        return 200, b"", {}

    def before(self, query: dict[str, list[str]]) -> Answer | None:
        with self.lock:
            override, delay = self.status_override, self.delay
            if override is not None and self.override_count is not None:
                self.override_count -= 1
                if self.override_count <= 0:
                    self.status_override = self.override_count = None
        if delay:
            time.sleep(delay)
        if self.page_delay and query.get("page_token"):
            time.sleep(self.page_delay)
        if override is not None:
            return override, b"{}", {"Content-Type": base.JSON, **self.extra_headers}
        return None

    def authorized(self, authorization: str) -> bool:
        return not self.require_token or super().authorized(authorization)

    def selected(self, host: str | None) -> list[dict[str, Any]] | None:
        """``?host=`` (lower case): the added capsuls and the generated one it names."""
        if not self.honour_host:
            return None
        found = super().selected(host)
        index = generated_index(host) if host is not None else None
        if found is not None and index is not None and index < self.generated:
            found.append(generated_capsul(index))
        return found

    def document(self, host: str | None, token: str | None) -> tuple[bytes, str]:
        if self.body_override is not None:
            return self.body_override, ""
        with self.lock:
            if token is None and self.faults.get("first_is_last"):
                host = None  # the last page answers the first request (a lookup's too)
            if host is None and token is None and self.faults.get("first_is_lookup"):
                host = str(self.faults["first_is_lookup"])  # a lookup's answer, replayed
            selected = self.selected(host)
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
                elif token is not None:
                    raise LookupError(token)
                added = self.capsuls[start : start + size]
                first = max(0, start - len(self.capsuls))
                last = min(self.generated, start + size - len(self.capsuls))
                selected = added + [generated_capsul(i) for i in range(first, last)]
            elif self.faults.get("lookup_other"):
                selected = [generated_capsul(int(self.faults["lookup_other"]))]
            generated = self.generated_at or rfc3339(self.changed_at)
            if page_number is not None and page_number == self.faults.get("page_old"):
                generated = rfc3339(time.time() - 3600)  # a page replayed from an hour ago
            account = self.account
            if page_number is not None and page_number == self.faults.get("page_account"):
                account = "mallory@example.org"
            echo = None if self.faults.get("no_page_token") else token
            answers = host if host is not None and self.honour_host else None  # a lookup
            if self.faults.get("lookup_no_host"):
                answers = None
            body = self.render(selected, answers, next_token, echo, generated, account,
                               self.bound, self.expires)  # fmt: skip
            return body, str(page_number or "")

    def matches(self, etag: str, if_none_match: str | None) -> bool:
        return self.honour_etag and super().matches(etag, if_none_match)

    def signature(self, body: bytes, page: str) -> str | None:
        if self.signature_override is not None:
            return self.signature_override
        other = self.faults.get("page_signer")  # (page number, key): signed by another key
        if other is not None and page == str(other[0]):
            import base64

            from sshpin.trust.sshsig import sign

            return base64.b64encode(sign(other[1], body)).decode()
        spoilt = page and page == str(self.faults.get("page_bad_sig"))
        return super().signature(body + b" " if spoilt else body, page)

    def finish(
        self, status: int, body: bytes, out: dict[str, str], request: dict[str, str], page: str
    ) -> Answer:
        if page and page == str(self.faults.get("page_fail")):
            return 500, b"{}", {"Content-Type": base.JSON}
        out = {**out, **self.extra_headers}
        if not self.send_etag:
            del out["ETag"]
        if self.faults.get("bomb"):
            body = _bomb()
            out["Content-Encoding"] = "gzip"
        elif self.gzip and "gzip" in request.get("accept-encoding", ""):
            import gzip

            body = gzip.compress(body, 6)
            out["Content-Encoding"] = "gzip"
        with self.lock:
            self.bytes_sent += len(body)
        return status, body, out


class ReferenceServer(base.ReferenceServer):
    """The shipped server, serving the tests' ``CapsulAPI``."""

    api: CapsulAPI

    def __init__(
        self, api: CapsulAPI, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(api, context, host, port)

    def start(self) -> ReferenceServer:
        super().start()
        return self


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


_BOMB: list[bytes] = []


def _bomb() -> bytes:
    """A gzip body of 64 KiB that inflates to 64 MiB of JSON-looking spaces."""
    if not _BOMB:
        import gzip

        _BOMB.append(gzip.compress(b"{" + b" " * (64 * 1024 * 1024), 9))
    return _BOMB[0]


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
    doc = Document(provider, source, capsuls, account="bench@example.org",
                   generated_at=fetched_at, fetched_at=fetched_at, trust=trust)  # fmt: skip
    store.write_document(doc.to_bytes(), fetched_at)
    store.write_host(HostEntry("capsul-x", "", "", 0, []))  # makes hosts/
    os.unlink(store.host_path("capsul-x"))
    for c in capsuls:  # plain writes: atomic ones fsync each file, minutes for a big cache
        entry = HostEntry(c.id, c.id, "capsul id", fetched_at, c.keys, source=source, trust=trust)
        with open(store.host_path(c.id), "w", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(entry.to_text())
    return [c.id for c in capsuls]
