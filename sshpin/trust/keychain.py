"""Signing-key rotation: the chain of signing-key statements a provider publishes.

A provider rotates (or revokes) its document signing keys without any client editing its
config, as TUF rotates its root: statement N lists the complete set of signing keys from
version N on, and the keys it revokes, and is signed by a key of version N-1's set. Version 1
is the user's ``signing_keys``. The exact format is in docs/provider-api.md ("Signing-key
rotation"); the statement text is what is signed::

    sshpin-signing-keys v1
    api https://capsul.example/api
    version 2
    key ssh-ed25519 AAAA...
    revoked ssh-ed25519 BBBB...

The client keeps the newest state it reached (``<cache>/<provider>/signing-chain.json``, not
removed by ``cache clear``, reset when the configured keys change) and follows the chain only
forward, one version at a time: a gap, a statement for another API, a signature by a key not
in the previous set, or a key both listed and revoked stops it there.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass, field

from sshpin.core.keys import SIGNING_KEY_TYPES, HostKey, parse_line
from sshpin.errors import VerificationError

NAMESPACE = "sshpin-signing-keys"
MAGIC = "sshpin-signing-keys v1"
MAX_CHAIN = 64  # statements in one answer
MAX_STATEMENT = 16384
MAX_KEYS = 16


@dataclass
class KeyState:
    """The signing keys trusted now, how they were reached, and the keys never to trust."""

    base: str  # digest of the configured signing_keys the chain starts from
    version: int = 1
    keys: list[str] = field(default_factory=list)  # "type base64" lines
    revoked: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, configured: list[str]) -> KeyState:
        return cls(digest(configured), 1, list(configured), [])

    def trusted(self) -> list[HostKey]:
        return [parse_line(line, SIGNING_KEY_TYPES) for line in self.keys]

    def is_revoked(self, key: HostKey) -> bool:
        return key.openssh() in self.revoked

    def to_bytes(self) -> bytes:
        data = {"base": self.base, "version": self.version, "keys": self.keys,
                "revoked": self.revoked}  # fmt: skip
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None, configured: list[str]) -> KeyState:
        """The stored state when it grew from the same configured keys; else a fresh start."""
        fresh = cls.start(configured)
        if not raw:
            return fresh
        try:
            data = json.loads(raw)
            state = cls(str(data["base"]), int(data["version"]), list(data["keys"]),
                        list(data["revoked"]))  # fmt: skip
            state.trusted()  # every key parses, or the file is damaged
            for line in state.revoked:
                parse_line(line, SIGNING_KEY_TYPES)
        except (ValueError, KeyError, TypeError, VerificationError):
            return fresh
        return state if state.base == fresh.base and state.version >= 1 else fresh


def digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:32]


@dataclass
class Statement:
    version: int
    api: str
    keys: list[str]
    revoked: list[str]


def parse_statement(text: str) -> Statement:
    """The signed text of one statement, strictly: magic, api, version, key and revoked lines."""
    if len(text) > MAX_STATEMENT or not text.endswith("\n"):
        raise VerificationError("signing-key statement: too long or not newline-terminated")
    lines = text[:-1].split("\n")
    if lines[0] != MAGIC:
        raise VerificationError(f"signing-key statement: does not start with {MAGIC!r}")
    api, version = "", 0
    keys: list[str] = []
    revoked: list[str] = []
    for line in lines[1:]:
        name, _, value = line.partition(" ")
        if name == "api" and not api:
            api = value
        elif name == "version" and not version and value.isdigit() and len(value) < 10:
            version = int(value)
        elif name in ("key", "revoked"):
            key = parse_line(value, SIGNING_KEY_TYPES).openssh()
            (keys if name == "key" else revoked).append(key)
        else:
            raise VerificationError(f"signing-key statement: unexpected line {line[:60]!a}")
    if not api or version < 2:
        raise VerificationError("signing-key statement: no api, or a version below 2")
    if not keys or len(keys) > MAX_KEYS or set(keys) & set(revoked):
        raise VerificationError("signing-key statement: no keys, too many, or a key revoked")
    return Statement(version, api, keys, revoked)


def follow(state: KeyState, body: bytes, api: str) -> tuple[KeyState, list[str]]:
    """Follow the published chain forward from ``state``. Returns the new state and one line
    per step taken; raises VerificationError for a malformed answer. Statements at or below
    the current version are skipped (already followed); the first one that cannot be
    followed ends the walk, and what was reached until then stands."""
    from sshpin.trust import sshsig

    try:
        chain = json.loads(body)["chain"]
        if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
            raise ValueError("chain")
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError(f"signing-key chain: not a JSON chain ({e})") from None
    steps: list[str] = []
    current = state
    for item in chain:
        try:
            text = str(item["statement"])
            blob = binascii.a2b_base64(str(item["signature"]).encode("ascii"), strict_mode=True)
        except (KeyError, TypeError, binascii.Error, UnicodeEncodeError):
            raise VerificationError(
                "signing-key chain: an entry lacks statement or signature"
            ) from None
        statement = parse_statement(text)
        if statement.version <= current.version:
            continue
        if statement.version != current.version + 1:
            steps.append(f"stopped at version {current.version}: version {statement.version} "
                         "follows no statement this client has")  # fmt: skip
            break
        if statement.api != api:
            raise VerificationError(
                f"signing-key statement {statement.version} is for API {statement.api[:80]!r}, "
                f"not {api!r}: refused as mix-and-match"
            )
        allowed = [k for k in current.trusted() if not current.is_revoked(k)]
        try:
            signer = sshsig.verify(blob, text.encode(), allowed, namespace=NAMESPACE)
        except VerificationError as e:
            raise VerificationError(
                f"signing-key statement {statement.version} refused: {e} of version "
                f"{current.version}"
            ) from None
        revoked = sorted(set(current.revoked) | set(statement.revoked))
        current = KeyState(current.base, statement.version,
                           [k for k in statement.keys if k not in revoked], revoked)  # fmt: skip
        steps.append(f"signing keys version {statement.version}, signed by {signer.sha256()}: "
                     f"{len(current.keys)} key(s), {len(statement.revoked)} revoked")  # fmt: skip
    return current, steps
