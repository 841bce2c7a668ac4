"""Fuzz target over trust material (issue 20): signing keys and CA keys, valid first.

Each example starts from a valid key of every signing type (so the accepting branch is reached)
and is then, most of the time, mutated the ways malformed material arrives: a flipped or cut
byte, bytes appended, an RSA exponent at or past the modulus, an even or tiny exponent, a point
off the curve. Whatever comes out, the config either accepts it or raises ConfigError (never
another exception), and an accepted key only ever verifies signatures without a traceback.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sshpin.core.config import parse_document
from sshpin.errors import ConfigError, VerificationError
from sshpin.providers import validate_table
from sshpin.trust import sshsig
from tests.trust.test_sshsig_sk import SecurityKey

RSA_KEY = rsa.generate_private_key(65537, 2048)
PRIVATE: list[Any] = [ed25519.Ed25519PrivateKey.generate(), RSA_KEY,
           ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
           ec.generate_private_key(ec.SECP521R1())]  # fmt: skip
VALID = [k.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
         for k in PRIVATE]  # fmt: skip
SK = SecurityKey("ed25519").line()


def _string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _mpint(n: int) -> bytes:
    return _string(n.to_bytes((n.bit_length() + 8) // 8, "big"))


@st.composite
def key_lines(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from([*VALID, SK]))
    kind, text = line.split()[:2]
    blob = bytearray(base64.b64decode(text))
    how = draw(st.sampled_from(["none", "flip", "cut", "append", "rsa-e", "ec-point"]))
    if how == "flip":
        i = draw(st.integers(0, len(blob) - 1))
        blob[i] ^= draw(st.integers(1, 255))
    elif how == "cut":
        del blob[draw(st.integers(0, len(blob) - 1)) :]
    elif how == "append":
        blob += draw(st.binary(min_size=1, max_size=8))
    elif how == "rsa-e" and kind == "ssh-rsa":
        n = RSA_KEY.public_key().public_numbers().n
        e = draw(st.sampled_from([n, n + 2, n * 3, 1, 3, 65536, 2**4096 + 1]))
        blob = bytearray(_string(b"ssh-rsa") + _mpint(e) + _mpint(n))
    elif how == "ec-point" and kind.startswith("ecdsa"):
        size = len(blob) - len(_string(kind.encode())) - len(_string(kind[11:].encode())) - 4
        point = b"\4" + draw(st.binary(min_size=size - 1, max_size=size - 1))
        blob = bytearray(_string(kind.encode()) + _string(kind[11:].encode()) + _string(point))
    return f"{kind} {base64.b64encode(bytes(blob)).decode()}"


TABLES = {
    "signing_keys": {"name": "c", "type": "capsul", "api_url": "https://p.example/api",
                     "hosts": ["capsul-*"]},
    "ca_keys": {"name": "ca", "type": "cert-authority", "hosts": ["*.example.org"]},
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(line=key_lines(), where=st.sampled_from(sorted(TABLES)), message=st.binary(max_size=64))
def test_trust_material_is_accepted_or_a_config_error(
    line: str, where: str, message: bytes
) -> None:
    table = {**TABLES[where], where: [line]}
    try:
        (provider,) = parse_document({"provider": [table]}, validate_table)
    except ConfigError:
        event("refused")
        return
    event("accepted")
    from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line

    key = parse_line(provider.get(where)[0], SIGNING_KEY_TYPES)
    signer = next((p for p, v in zip(PRIVATE, VALID, strict=True) if v.split()[1] ==
                   line.split()[1]), None)  # fmt: skip
    blob = sshsig.sign(signer or PRIVATE[0], message)
    try:
        assert sshsig.verify(blob, message, [key]) == key
        assert signer is not None  # only the unmutated key verifies its own signature
    except VerificationError:
        assert signer is None or key.key_type.startswith("sk-")


def test_every_valid_signing_key_type_is_accepted_and_verifies() -> None:
    for private, line in zip(PRIVATE, VALID, strict=True):
        table = {**TABLES["signing_keys"], "signing_keys": [line]}
        (provider,) = parse_document({"provider": [table]}, validate_table)
        assert provider.get("signing_keys") == [line]
        from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line

        key = parse_line(line, SIGNING_KEY_TYPES)
        assert sshsig.verify(sshsig.sign(private, b"m"), b"m", [key]) == key
