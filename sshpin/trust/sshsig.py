"""OpenSSH signatures (SSHSIG, OpenSSH's PROTOCOL.sshsig): verify, and sign for the reference
server and the tests. Interoperates with ``ssh-keygen -Y sign`` / ``-Y verify``.

A signature is, in SSH wire format::

    byte[6] "SSHSIG"  uint32 1  string publickey  string namespace  string reserved
    string hash_algorithm ("sha256" or "sha512")  string signature

and ``signature`` signs ``"SSHSIG" || string namespace || string reserved ||
string hash_algorithm || string H(message)``. Verification fails closed: anything malformed,
a namespace or hash other than expected, a signer not among the allowed keys, a signature
type that does not belong to the signer's key type, or trailing bytes are all refusals.

A security key (``sk-ssh-ed25519@openssh.com``, ``sk-ecdsa-sha2-nistp256@openssh.com``; the
key blob ends with its ``application`` string) signs as FIDO authenticators do: its signature
field is ``string type  string sig  byte flags  uint32 counter``, and ``sig`` signs
``SHA256(application) || flags || counter || SHA256(signed data)`` (Ed25519 over those bytes,
ECDSA with SHA-256 over them, ``sig`` then holding mpint r and s). The flags must show user
presence (0x01): a signature the key made without being touched is refused.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from sshpin.core.keys import (
    ED25519,
    RSA,
    SIGNING_KEY_TYPES,
    SK_ECDSA,
    SK_ED25519,
    SK_TYPES,
    HostKey,
    WireReader,
    parse_blob,
)
from sshpin.errors import VerificationError

NAMESPACE = "sshpin-hostkeys"
MAGIC = b"SSHSIG"
VERSION = 1
HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
MAX_SIGNATURE = 16384
# the signature algorithms each key type may sign with, and the hash each one uses
SIG_TYPES: dict[str, dict[str, str | None]] = {
    ED25519: {ED25519: None},
    RSA: {"rsa-sha2-256": "sha256", "rsa-sha2-512": "sha512"},
    "ecdsa-sha2-nistp256": {"ecdsa-sha2-nistp256": "sha256"},
    "ecdsa-sha2-nistp384": {"ecdsa-sha2-nistp384": "sha384"},
    "ecdsa-sha2-nistp521": {"ecdsa-sha2-nistp521": "sha512"},
    SK_ED25519: {SK_ED25519: None},
    SK_ECDSA: {SK_ECDSA: "sha256"},
}
SK_USER_PRESENT = 0x01  # FIDO flag: the user touched the key for this signature
SK_USER_VERIFIED = 0x04  # FIDO flag: the key checked a PIN or biometric


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@dataclass(frozen=True)
class Signature:
    signer: HostKey
    namespace: str
    hash_algorithm: str
    sig_type: str
    sig: bytes
    reserved: bytes = b""
    sk_flags: int = 0  # security keys only: the authenticator's flags and signature counter
    sk_counter: int = 0


def unarmor(text: str) -> bytes:
    """The binary signature inside ``-----BEGIN SSH SIGNATURE-----`` armor, read as OpenSSH's
    ``sshsig_dearmor`` reads it (tests/trust/test_differential_ssh_keygen.py): the text starts
    with the BEGIN line and its newline, the base64 runs to the first END marker (whitespace
    in it skipped), and anything after that marker is ignored."""
    begin = ARMOR_BEGIN + "\n"
    if not text.startswith(begin):
        raise VerificationError("not an armored SSH signature (no BEGIN line at its start)")
    end = text.find(ARMOR_END, len(begin))
    if end < 0:
        raise VerificationError("not an armored SSH signature (no END line)")
    body = "".join(text[len(begin) : end].split())
    try:
        return binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise VerificationError("armored SSH signature is not valid base64") from None


def armor(blob: bytes) -> str:
    text = binascii.b2a_base64(blob, newline=False).decode()
    body = "\n".join(text[i : i + 70] for i in range(0, len(text), 70))
    return f"{ARMOR_BEGIN}\n{body}\n{ARMOR_END}\n"


def parse(blob: bytes) -> Signature:
    """Parse a binary SSHSIG; raise VerificationError naming what is malformed."""
    if len(blob) > MAX_SIGNATURE:
        raise VerificationError("signature is too large")
    try:
        return _parse(blob)
    except ValueError as e:  # a field cut short, or bytes left over
        raise VerificationError(f"malformed signature: {e}") from None


def _parse(blob: bytes) -> Signature:
    r = WireReader(blob)
    if r.take(6) != MAGIC:
        raise VerificationError("not an SSHSIG signature (bad magic)")
    version = r.uint32()
    if version != VERSION:
        raise VerificationError(f"unsupported SSHSIG version {version}")
    signer = parse_blob(r.string(), SIGNING_KEY_TYPES)
    try:
        namespace = r.string().decode("utf-8")
        reserved = r.string()
        hash_algorithm = r.string().decode("ascii")
    except UnicodeDecodeError:
        raise VerificationError("malformed signature fields") from None
    inner = WireReader(r.string())
    r.end("the signature")
    try:
        sig_type = inner.string().decode("ascii")
    except UnicodeDecodeError:
        raise VerificationError("malformed signature type") from None
    sig = inner.string()
    flags = counter = 0
    if sig_type in SK_TYPES:
        flags = inner.take(1)[0]
        counter = inner.uint32()
    inner.end("the signature")
    return Signature(signer, namespace, hash_algorithm, sig_type, sig, reserved, flags, counter)


def _signed_data(namespace: str, reserved: bytes, hash_algorithm: str, message: bytes) -> bytes:
    digest = HASHES[hash_algorithm](message).digest()
    return (
        MAGIC
        + _string(namespace.encode())
        + _string(reserved)
        + _string(hash_algorithm.encode())
        + _string(digest)
    )


def verify(
    blob: bytes,
    message: bytes,
    allowed: list[HostKey],
    namespace: str = NAMESPACE,
    sk_required_flags: int = SK_USER_PRESENT,
) -> HostKey:
    """Check ``blob`` is a valid signature of ``message`` by one of ``allowed`` in
    ``namespace``; return the signer. Raise VerificationError otherwise (fails closed).
    A security key's signature must also carry ``sk_required_flags`` (user presence)."""
    if not allowed:
        raise VerificationError("no signing key is configured to check the signature with")
    s = parse(blob)
    if s.namespace != namespace:
        raise VerificationError(f"signature namespace is {s.namespace[:40]!a}, not {namespace!r}")
    if s.hash_algorithm not in HASHES:
        raise VerificationError(f"signature hash {s.hash_algorithm[:20]!a} is not allowed")
    if s.signer not in allowed:
        raise VerificationError(f"signed by {s.signer.sha256()}, which is not a signing key")
    if s.sig_type not in SIG_TYPES[s.signer.key_type]:
        raise VerificationError(
            f"signature type {s.sig_type[:40]!a} does not belong to a {s.signer.key_type} key"
        )
    # the reserved field is signed as empty whatever the signature carries, as OpenSSH's
    # sshsig.c does: a signature ssh-keygen -Y verify accepts is accepted here, and no other
    data = _signed_data(s.namespace, b"", s.hash_algorithm, message)
    if s.sig_type in SK_TYPES:
        data = (
            hashlib.sha256(s.signer.application().encode()).digest()
            + bytes([s.sk_flags])
            + s.sk_counter.to_bytes(4, "big")
            + hashlib.sha256(data).digest()
        )
    if not _check(s.signer, s.sig_type, s.sig, data):
        raise VerificationError(f"bad signature by {s.signer.sha256()}")
    missing = sk_required_flags & ~s.sk_flags if s.sig_type in SK_TYPES else 0
    if missing:
        what = "user presence (the key was not touched)" if missing & 1 else "user verification"
        raise VerificationError(
            f"signature by security key {s.signer.sha256()} lacks {what}: flags 0x{s.sk_flags:02x}"
        )
    return s.signer


def _public_key(key: HostKey) -> Any:
    if key.key_type in SK_TYPES:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        r = WireReader(key.blob)
        r.string()
        if key.key_type == SK_ED25519:
            return ed25519.Ed25519PublicKey.from_public_bytes(r.string())
        r.string()  # the curve name, checked by parse_blob
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), r.string())
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    return load_ssh_public_key(key.openssh().encode())


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def _check(key: HostKey, sig_type: str, sig: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        public = _public_key(key)
    except (ValueError, TypeError, VerificationError) as e:  # parse_blob checks, this is a net
        raise VerificationError(f"unusable signing key {key.sha256()}: {e}") from None
    try:
        if key.key_type in (ED25519, SK_ED25519):
            if len(sig) != 64:
                return False
            public.verify(sig, data)
        elif key.key_type == RSA:
            size = (public.key_size + 7) // 8
            if not 0 < len(sig) <= size:
                return False
            # as OpenSSH's ssh-rsa.c: a signature shorter than the modulus (its leading zero
            # bytes stripped, as some signers emit it) is padded back, a longer one refused
            sig = sig.rjust(size, b"\0")
            public.verify(sig, data, padding.PKCS1v15(), _hash(SIG_TYPES[RSA][sig_type] or ""))
        else:
            r = WireReader(sig)
            numbers = [int.from_bytes(r.string(), "big", signed=True) for _ in range(2)]
            r.end("the signature")
            if any(n <= 0 for n in numbers):
                return False
            der = encode_dss_signature(numbers[0], numbers[1])
            public.verify(der, data, ec.ECDSA(_hash(SIG_TYPES[key.key_type][sig_type] or "")))
    except (InvalidSignature, VerificationError, ValueError):
        return False
    return True


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b""
    return _string(raw)


def sign(
    private_key: Any, message: bytes, namespace: str = NAMESPACE, hash_algorithm: str = "sha512"
) -> bytes:
    """A binary SSHSIG of ``message`` by a cryptography private key (Ed25519, ECDSA, RSA)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public_line = private_key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    signer = parse_blob(binascii.a2b_base64(public_line.split()[1]))
    data = _signed_data(namespace, b"", hash_algorithm, message)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        sig_type, sig = ED25519, private_key.sign(data)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        sig_type = "rsa-sha2-512"
        sig = private_key.sign(data, padding.PKCS1v15(), _hash("sha512"))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        sig_type = signer.key_type
        hash_name = next(iter(SIG_TYPES[sig_type].values())) or ""
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(_hash(hash_name))))
        sig = _mpint(r) + _mpint(s)
    else:
        raise TypeError(f"cannot sign with {type(private_key).__name__}")
    return (
        MAGIC
        + VERSION.to_bytes(4, "big")
        + _string(signer.blob)
        + _string(namespace.encode())
        + _string(b"")
        + _string(hash_algorithm.encode())
        + _string(_string(sig_type.encode()) + _string(sig))
    )


def load_private_key(path: str) -> Any:
    """An OpenSSH private key file (unencrypted), for the reference server and tests."""
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    with open(path, "rb") as f:
        return load_ssh_private_key(f.read(), password=None)
