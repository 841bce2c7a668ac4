"""Hypothesis strategies that build VALID inputs first: real public keys (made with
``cryptography``), key lines, host entries and provider documents. Property tests then mutate
them, so every example reaches the parser's accepting branch before it probes a refusal.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

from hypothesis import strategies as st

from sshpin.core.keys import HostKey, parse_blob


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b""
    return _ssh_string(raw)


def ed25519_blob(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _ssh_string(b"ssh-ed25519") + _ssh_string(raw)


CURVES = {256: "nistp256", 384: "nistp384", 521: "nistp521"}


def ecdsa_blob(bits: int, secret: int) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[bits]
    pub = ec.derive_private_key(secret, curve).public_key()
    point = pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    name = CURVES[bits].encode()
    return _ssh_string(b"ecdsa-sha2-" + name) + _ssh_string(name) + _ssh_string(point)


@cache
def rsa_blobs() -> tuple[bytes, ...]:
    """Two RSA keys per session (RSA generation is too slow to do per example)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    out = []
    for bits in (2048, 3072):
        numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()
        out.append(_ssh_string(b"ssh-rsa") + _mpint(numbers.e) + _mpint(numbers.n))
    return tuple(out)


def _ec_secret(bits: int) -> st.SearchStrategy[int]:
    return st.integers(1, 2 ** (bits - 2))


valid_blobs: st.SearchStrategy[bytes] = st.one_of(
    st.binary(min_size=32, max_size=32).map(ed25519_blob),
    *[_ec_secret(bits).map(lambda s, b=bits: ecdsa_blob(b, s)) for bits in CURVES],  # type: ignore[misc]
    st.integers(0, 1).map(lambda i: rsa_blobs()[i]),
)
valid_keys: st.SearchStrategy[HostKey] = valid_blobs.map(parse_blob)

# A comment as ssh-keygen writes one, and worse: spaces, key-type look-alikes, base64.
comments = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    st.sampled_from(["root@host", "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5", "a b  c", "#x"]),
)


@st.composite
def pub_lines(draw: st.DrawFn) -> tuple[str, HostKey]:
    """A ``.pub`` line (``type base64 [comment]``) and the key it holds."""
    key = draw(valid_keys)
    comment = draw(comments)
    return f"{key.key_type} {key.base64}" + (f" {comment}" if comment else ""), key


def listed(key: HostKey) -> dict[str, str]:
    """A provider document's ``ssh_host_keys`` entry for a key."""
    return {"key_type": key.key_type, "content": key.base64, "sha256": key.sha256()}


NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                              categories=["L", "N", "P", "S"], include_characters=" "),
                max_size=12)  # fmt: skip


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, list[HostKey]]]:
    """A valid capsul API document and, per capsul id, the keys it lists."""
    count = draw(st.integers(1, 4))
    suffixes = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
    ids = draw(st.lists(suffixes, min_size=count, max_size=count, unique=True))
    capsuls, expected = [], {}
    for n, suffix in enumerate(ids):
        keys = draw(st.lists(valid_keys, min_size=1, max_size=3, unique_by=lambda k: k.blob))
        capsul_id = f"capsul-{suffix}"
        capsuls.append({"id": capsul_id, "name": draw(NAMES),
                        "state": "running", "ipv4": f"198.51.100.{n + 1}", "ipv6": None,
                        "ssh_host_keys": [listed(k) for k in keys]})  # fmt: skip
        expected[capsul_id] = keys
    doc = {"account": "alice@example.org", "generated_at": "2026-11-22T10:00:00Z",
           "capsuls": capsuls}  # fmt: skip
    return doc, expected


def fingerprint(blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
