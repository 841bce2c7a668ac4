"""The provider document: what a provider vouches for, validated, and its cached form.

``parse_capsul_api`` is the strict parser of docs/provider-api.md (the part of sshpin that reads
what a network peer wrote, so it is fuzzed). Policy for one capsul's keys:

- a well-formed key of a type we refuse (DSA, RSA under 2048 bits, a type we do not know) is
  skipped and noted: a provider that adds a new key type must not lock users out;
- anything malformed (bad base64, a declared type that differs from the key's own, a
  fingerprint that does not match, control characters) marks the whole capsul as refused: its
  data cannot be trusted, so none of its keys are served;
- a document that is not the right shape, or lists one capsul id twice, is refused whole.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sshpin.core.keys import HostKey, parse_key, parse_line
from sshpin.core.names import is_capsul_id
from sshpin.errors import UnsupportedKeyError, VerificationError
from sshpin.store.history import HistoryRecord

MAX_BODY = 4 * 1024 * 1024
MAX_CAPSULS = 100_000
MAX_KEYS = 16
MAX_TEXT = 255
MAX_TOKEN = 1024  # a next_page_token longer than this is refused
CACHE_VERSION = 1


class Capsul:
    __slots__ = ("id", "ipv4", "ipv6", "keys", "name", "problem", "skipped", "state")

    def __init__(
        self,
        id: str,
        name: str = "",
        state: str = "",
        ipv4: str | None = None,
        ipv6: str | None = None,
        keys: list[HostKey] | None = None,
        problem: str | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.state = state
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.keys = keys or []
        self.problem = problem
        self.skipped = skipped or []

    @classmethod
    def from_json(cls, c: Any) -> Capsul:
        """The cached form (``to_json``); keys parsed again. Raises ValueError and friends."""
        for field in ("ipv4", "ipv6", "problem"):
            if c[field] is not None and not isinstance(c[field], str):
                raise ValueError(f"{field}: expected a string")
        return cls(
            id=_text(c["id"]),
            name=_text(c["name"]),
            state=_text(c["state"]),
            ipv4=c["ipv4"],
            ipv6=c["ipv6"],
            keys=[parse_line(k) for k in c["keys"]],
            problem=c["problem"],
            skipped=[_text(x, 1024) for x in c["skipped"]],
        )

    def matches(self, term: str) -> bool:
        """Does ``?host=term`` select this capsul (id, name, ipv4 or ipv6 equals it)?"""
        return term in (self.id, self.name.lower(), self.ipv4, self.ipv6)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "keys": [k.openssh() for k in self.keys],
            "problem": self.problem,
            "skipped": self.skipped,
        }


class Document:
    """A verified provider document, with the facts of its fetch."""

    __slots__ = (
        "account",
        "api",
        "capsuls",
        "count",
        "etag",
        "expires",
        "fetched_at",
        "generated_at",
        "host",
        "next_page",
        "page_token",
        "pages",
        "provider",
        "revoked",
        "signed",
        "signer",
        "source",
        "trust",
    )

    def __init__(
        self,
        provider: str,
        source: str,
        capsuls: list[Capsul],
        *,
        account: str = "",
        generated_at: float = 0.0,
        etag: str | None = None,
        signed: bool = False,
        fetched_at: float = 0.0,
        revoked: list[HostKey] | None = None,
        api: str = "",
        expires: float = 0.0,
        trust: str = "",
        pages: int = 1,
        count: int | None = None,
    ) -> None:
        self.signer = ""  # the fingerprint of the key that signed the answer (not cached)
        self.next_page = ""  # the answer's next_page_token: more pages follow (not cached)
        self.page_token = ""  # the page_token this page says it answers ("": the first page)
        self.host = ""  # the ?host= this answer says it answers ("": a listing's page)
        self.pages = pages  # > 1: a paged listing, its capsuls only in the cache's index
        self.count = len(capsuls) if count is None else count
        self.api = api  # the API the document says it answers for ("" in the old format)
        self.expires = expires  # its own end of validity (0.0 in the old format)
        self.trust = trust  # the trust context it was verified under (core/config.py)
        self.revoked = revoked or []  # keys the provider revoked: @revoked for its hosts
        self.provider = provider
        self.source = source
        self.capsuls = capsuls
        self.account = account
        self.generated_at = generated_at
        self.etag = etag
        self.signed = signed
        self.fetched_at = fetched_at

    @property
    def partial(self) -> bool:
        """The first page of a paged listing, alone: nothing to keep as the listing."""
        return bool(self.next_page) and self.pages == 1

    def to_bytes(self) -> bytes:
        data = {
            "version": CACHE_VERSION,
            "provider": self.provider,
            "source": self.source,
            "account": self.account,
            "generated_at": self.generated_at,
            "etag": self.etag,
            "signed": self.signed,
            "fetched_at": self.fetched_at,
            "capsuls": [c.to_json() for c in self.capsuls],
            "revoked": [k.openssh() for k in self.revoked],
            "api": self.api,
            "expires": self.expires,
            "trust": self.trust,
            "pages": self.pages,
            "count": self.count,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    def by_id(self, capsul_id: str) -> Capsul | None:
        return next((c for c in self.capsuls if c.id == capsul_id), None)

    def by_address(self, address: str) -> list[Capsul]:
        return [c for c in self.capsuls if address in (c.ipv4, c.ipv6)]

    def changes_since(self, old: Document | None) -> list[HistoryRecord]:
        """History records: one per capsul whose key set differs from ``old``'s."""
        from sshpin.store.history import history_record

        before = {c.id: c for c in old.capsuls} if old is not None else {}
        after = {c.id: c for c in self.capsuls}
        records: list[HistoryRecord] = []
        for capsul_id in sorted(set(before) | set(after)):
            b, a = before.get(capsul_id), after.get(capsul_id)
            old_fps = {k.sha256() for k in b.keys} if b else set()
            new_fps = {k.sha256() for k in a.keys} if a else set()
            if old_fps == new_fps and (b is None) == (a is None):
                continue
            current = a or b
            assert current is not None
            event = "first-seen" if old is None else ("removed" if a is None else "changed")
            addresses = [x for x in (current.ipv4, current.ipv6) if x]
            records.append(
                history_record(
                    self.fetched_at,
                    self.provider,
                    capsul_id,
                    current.name,
                    addresses,
                    event,
                    old_fps,
                    new_fps,
                    self.source,
                )
            )
        return records

    @classmethod
    def from_bytes(cls, raw: bytes) -> Document:
        """The cached form. Keys are parsed again: a damaged cache is refused, never trusted."""
        try:
            data = json.loads(raw)
            if data.get("version") != CACHE_VERSION:
                raise ValueError("cache version")
            capsuls = [Capsul.from_json(c) for c in data["capsuls"]]
            return cls(
                provider=_text(data["provider"]),
                source=_text(data["source"]),
                capsuls=capsuls,
                account=_text(data["account"]),
                generated_at=float(data["generated_at"]),
                etag=data["etag"],
                signed=bool(data["signed"]),
                fetched_at=float(data["fetched_at"]),
                revoked=[parse_line(k) for k in data.get("revoked", [])],
                api=_text(data.get("api", ""), 2048),
                expires=float(data.get("expires", 0.0)),
                trust=_text(data.get("trust", "")),
                pages=int(data.get("pages", 1)),
                count=int(data.get("count", len(capsuls))),
            )
        except (ValueError, KeyError, TypeError, AttributeError, VerificationError) as e:
            raise ValueError(f"damaged cached document: {e}") from e


def _text(value: object, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if len(value) > limit:
        raise ValueError("string too long")
    return value


def parse_timestamp(value: object, field: str = "generated_at") -> float:
    """RFC 3339 with a time zone (``2026-11-22T10:00:00Z``) to a POSIX time."""
    if not isinstance(value, str) or len(value) > 40:
        raise VerificationError(f"{field}: expected an RFC 3339 time string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise VerificationError(f"{field}: not an RFC 3339 time: {value[:40]!r}") from e
    if when.tzinfo is None:
        raise VerificationError(f"{field}: time zone missing")
    return when.astimezone(UTC).timestamp()


def parse_capsul_api(body: bytes, provider: str, source: str) -> Document:
    """Parse and check a ``GET /capsuls`` body. Raises VerificationError naming the fault."""
    if len(body) > MAX_BODY:
        raise VerificationError(f"document of {len(body)} bytes exceeds the 4 MiB limit")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise VerificationError(f"document is not JSON: {str(e)[:80]}") from e
    if not isinstance(data, dict):
        raise VerificationError("document is not a JSON object")
    account = data.get("account")
    if not isinstance(account, str) or not account.isprintable() or len(account) > MAX_TEXT:
        raise VerificationError("document: 'account' missing or not a clean string")
    generated_at = parse_timestamp(data.get("generated_at"))
    api = data.get("api", "")
    if not isinstance(api, str) or not api.isprintable() or len(api) > 2048:
        raise VerificationError("document: 'api' is not a clean string")
    expires = 0.0
    if data.get("expires") is not None:
        expires = parse_timestamp(data.get("expires"), "expires")
        if expires <= generated_at:
            raise VerificationError("document: 'expires' is not after 'generated_at'")
    entries = data.get("capsuls")
    if not isinstance(entries, list):
        raise VerificationError("document: 'capsuls' missing or not a list")
    if len(entries) > MAX_CAPSULS:
        raise VerificationError("document: too many capsuls")
    revoked = _revoked(data.get("revoked_keys", []))
    capsuls: list[Capsul] = []
    seen: set[str] = set()
    for entry in entries:
        capsul = _parse_capsul(entry)
        if capsul is None:
            continue
        if capsul.id in seen:
            raise VerificationError(f"document lists capsul {capsul.id} twice")
        seen.add(capsul.id)
        capsul.keys = [k for k in capsul.keys if k not in revoked]  # revocation wins
        capsuls.append(capsul)
    doc = Document(provider, source, capsuls, account=account, generated_at=generated_at,
                   revoked=revoked, api=api.rstrip("/"), expires=expires)  # fmt: skip
    doc.next_page = _token(data, "next_page_token")
    doc.page_token = _token(data, "page_token")
    doc.host = _token(data, "host")
    return doc


def _token(data: dict[str, Any], field: str) -> str:
    """A page token (or the host a lookup answers): absent (""), or printable ASCII without a
    space, 1 to MAX_TOKEN characters."""
    token = data.get(field)
    if token is None:
        return ""
    clean = isinstance(token, str) and token.isascii() and token.isprintable()
    if not clean or not 0 < len(token) <= MAX_TOKEN or " " in token:
        raise VerificationError(f"document: {field!r} is not a short clean string")
    return str(token)


def _revoked(raw: object) -> list[HostKey]:
    """The optional top-level ``revoked_keys``: entries shaped as ``ssh_host_keys``. A
    malformed one refuses the whole document (a revocation must never be lost silently)."""
    if not isinstance(raw, list) or len(raw) > MAX_KEYS * 16:
        raise VerificationError("document: 'revoked_keys' is not a short list")
    holder = Capsul("capsul-revoked")
    keys: list[HostKey] = []
    for entry in raw:
        try:
            key = _parse_listed_key(entry, holder)
        except VerificationError as e:
            raise VerificationError(f"document: revoked_keys: {e}") from None
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def _parse_capsul(entry: object) -> Capsul | None:
    """One capsul; None when it cannot even be named (no clean id): it is then unreachable."""
    if not isinstance(entry, dict):
        return None
    capsul_id = entry.get("id")
    if not isinstance(capsul_id, str) or not is_capsul_id(capsul_id):
        return None
    capsul = Capsul(capsul_id)
    try:
        for field in ("name", "state"):
            value = entry.get(field, "")
            if value is None:
                value = ""
            if not isinstance(value, str) or not value.isprintable() or len(value) > MAX_TEXT:
                raise VerificationError(f"'{field}' is not a clean string")
            setattr(capsul, field, value)
        capsul.ipv4 = _address(entry.get("ipv4"), 4)
        capsul.ipv6 = _address(entry.get("ipv6"), 6)
        raw_keys = entry.get("ssh_host_keys")
        if not isinstance(raw_keys, list) or len(raw_keys) > MAX_KEYS:
            raise VerificationError("'ssh_host_keys' missing or not a short list")
        for raw in raw_keys:
            key = _parse_listed_key(raw, capsul)
            if key is not None and key not in capsul.keys:
                capsul.keys.append(key)
    except VerificationError as e:
        capsul.keys = []
        capsul.problem = str(e)
    return capsul


def _parse_listed_key(raw: object, capsul: Capsul) -> HostKey | None:
    if not isinstance(raw, dict):
        raise VerificationError("a host key entry is not an object")
    key_type, content, sha256 = raw.get("key_type"), raw.get("content"), raw.get("sha256")
    if not (isinstance(key_type, str) and isinstance(content, str) and isinstance(sha256, str)):
        raise VerificationError("a host key lacks key_type, content or sha256")
    clean_type = 0 < len(key_type) <= 64 and key_type.isascii() and key_type.isprintable()
    if not clean_type or " " in key_type:
        raise VerificationError(f"key_type {key_type[:40]!a} is malformed")
    try:
        key = parse_key(key_type, content)
    except UnsupportedKeyError as e:
        capsul.skipped.append(f"{key_type}: {e}")
        return None
    if key.sha256() != sha256:
        raise VerificationError(
            f"{key_type} key: fingerprint {sha256[:60]!a} does not match the key"
        )
    return key


def _address(value: object, version: int) -> str | None:
    if value is None:
        return None
    import ipaddress

    if not isinstance(value, str) or len(value) > 64:
        raise VerificationError(f"'ipv{version}' is not an address")
    try:
        address = ipaddress.ip_address(value)
    except ValueError as e:
        raise VerificationError(f"'ipv{version}' {value[:40]!a} is not an address") from e
    if address.version != version:
        raise VerificationError(f"'ipv{version}' holds an IPv{address.version} address")
    return str(address)
