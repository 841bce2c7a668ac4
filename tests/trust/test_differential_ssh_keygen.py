"""Differential tests: sshpin and OpenSSH's ``ssh-keygen`` judge the same signatures and keys.

Signatures: for every key type sshpin accepts as a signing key (Ed25519, RSA, ECDSA P-256,
P-384, P-521 made by ssh-keygen; the two security-key types built as a FIDO token signs),
generated variants of an SSHSIG (reserved field, hash, namespace, version, trailing bytes,
flipped bytes, short and long RSA signatures, SHA-1 RSA, armor layouts) are checked by
``sshsig.verify`` and by ``ssh-keygen -Y verify``: the two must agree on every one.

Keys: well-formed and malformed public keys are read by ``core.keys.parse_line`` and by
``ssh-keygen -l``: what sshpin accepts, ssh-keygen accepts with the same bits and fingerprint;
sshpin refuses more only where listed in ``STRICTER`` (it serves no key below 2048 bits).
A disagreement fails the build, naming the variant.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from sshpin.core.fingerprint import keygen_line
from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line
from sshpin.errors import VerificationError
from sshpin.trust import sshsig
from tests.trust.test_sshsig_sk import SecurityKey

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")
NS = sshsig.NAMESPACE
MESSAGE = b'{"capsuls": [], "generated_at": "2026-01-01T00:00:00Z"}\n'
KEYGEN = {"ed25519": ["-t", "ed25519"], "rsa": ["-t", "rsa", "-b", "2048"],
          "ecdsa256": ["-t", "ecdsa", "-b", "256"], "ecdsa384": ["-t", "ecdsa", "-b", "384"],
          "ecdsa521": ["-t", "ecdsa", "-b", "521"]}  # fmt: skip
HASH = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


def string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def mpint(n: int) -> bytes:
    return string(n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b"")


class Signer:
    """A signing key of one type: its public line, and raw signatures over any data."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.token: SecurityKey | None = None
        if kind.startswith("sk-"):
            self.token = SecurityKey(kind[3:])
            self.line = self.token.line()
            self.private: Any = None
        else:
            path = tmp / f"id_{kind}"
            subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", kind, "-f", str(path),
                            *KEYGEN[kind]], check=True, capture_output=True)  # fmt: skip
            self.line = (tmp / f"id_{kind}.pub").read_text().strip()
            self.private = load_ssh_private_key(path.read_bytes(), password=None)
        self.key = parse_line(self.line, SIGNING_KEY_TYPES)

    def sigtype(self) -> str:
        return "rsa-sha2-512" if self.kind == "rsa" else self.key.key_type

    def sign(self, data: bytes, sigtype: str = "") -> bytes:
        """The ``signature`` field (string type, string sig [, flags, counter])."""
        sigtype = sigtype or self.sigtype()
        if self.token is not None:
            return self.token.authenticator_sign(0x01, 7, data)
        p = self.private
        if isinstance(p, ed25519.Ed25519PrivateKey):
            return string(sigtype.encode()) + string(p.sign(data))
        if isinstance(p, rsa.RSAPrivateKey):
            h = {"rsa-sha2-512": hashes.SHA512(), "rsa-sha2-256": hashes.SHA256(),
                 "ssh-rsa": hashes.SHA1()}[sigtype]  # fmt: skip
            return string(sigtype.encode()) + string(p.sign(data, padding.PKCS1v15(), h))
        assert isinstance(p, ec.EllipticCurvePrivateKey)
        h = HASH[{256: "sha256", 384: "sha384", 521: "sha512"}[p.curve.key_size]]
        r, s = decode_dss_signature(p.sign(data, ec.ECDSA(h)))
        return string(sigtype.encode()) + string(mpint(r) + mpint(s))


def signed_data(ns: str, reserved: bytes, hash_alg: str, message: bytes) -> bytes:
    digest = hashlib.new(hash_alg, message).digest()
    return b"SSHSIG" + string(ns.encode()) + string(reserved) + string(hash_alg.encode()) + (
        string(digest))  # fmt: skip


def sshsig_blob(signer: Signer, message: bytes = MESSAGE, *, ns: str = NS,
                reserved: bytes = b"", signed_reserved: bytes | None = None,
                hash_alg: str = "sha512", declared_hash: str = "", version: int = 1,
                sig: bytes | None = None) -> bytes:  # fmt: skip
    """An SSHSIG: ``reserved`` as carried, ``signed_reserved`` as signed (default: the same)."""
    data = signed_data(ns, reserved if signed_reserved is None else signed_reserved, hash_alg,
                       message)  # fmt: skip
    return (b"SSHSIG" + version.to_bytes(4, "big") + string(signer.key.blob) + string(ns.encode())
            + string(reserved) + string((declared_hash or hash_alg).encode())
            + string(signer.sign(data) if sig is None else sig))  # fmt: skip


def armor(blob: bytes, width: int = 70, eol: str = "\n", final: str = "\n") -> str:
    text = base64.b64encode(blob).decode()
    body = eol.join(text[i : i + width] for i in range(0, len(text), width))
    return f"-----BEGIN SSH SIGNATURE-----{eol}{body}{eol}-----END SSH SIGNATURE-----{final}"


def short_rsa(signer: Signer) -> tuple[bytes, bytes]:
    """A message whose RSA signature starts with a zero byte, and the SSHSIG with it stripped."""
    for i in range(20000):
        message = MESSAGE + b" " * (i % 7) + str(i).encode()
        data = signed_data(NS, b"", "sha512", message)
        raw = signer.private.sign(data, padding.PKCS1v15(), hashes.SHA512())
        if raw[0] == 0:
            sig = string(b"rsa-sha2-512") + string(raw[1:])
            return message, sshsig_blob(signer, message, sig=sig)
    raise AssertionError("no RSA signature with a leading zero byte in 20000 tries")


def flip_last(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


Variant = tuple[str, str, bytes]  # name, armored text, message


def variants(signer: Signer) -> list[Variant]:
    good = sshsig_blob(signer)
    out: list[Variant] = [
        ("as signed", armor(good), MESSAGE),
        ("sha256", armor(sshsig_blob(signer, hash_alg="sha256")), MESSAGE),
        ("reserved carried, signed empty", armor(sshsig_blob(signer, reserved=b"future",
                                                             signed_reserved=b"")), MESSAGE),
        ("reserved carried and signed", armor(sshsig_blob(signer, reserved=b"future")), MESSAGE),
        ("other namespace", armor(sshsig_blob(signer, ns="file")), MESSAGE),
        ("declared hash differs", armor(sshsig_blob(signer, declared_hash="sha256")), MESSAGE),
        ("unknown hash", armor(sshsig_blob(signer, hash_alg="sha384")), MESSAGE),
        ("version 2", armor(sshsig_blob(signer, version=2)), MESSAGE),
        ("trailing byte", armor(good + b"\0"), MESSAGE),
        ("flipped last byte", armor(flip_last(good)), MESSAGE),
        ("other message", armor(good), MESSAGE + b"x"),
        ("armor width 76", armor(good, width=76), MESSAGE),
        ("armor one line", armor(good, width=10000), MESSAGE),
        ("armor CRLF", armor(good, eol="\r\n", final="\r\n"), MESSAGE),
        ("armor no final newline", armor(good, final=""), MESSAGE),
        ("armor blank lines around", "\n" + armor(good) + "\n\n", MESSAGE),
        ("armor text after END", armor(good) + "trailing words\n", MESSAGE),
        ("armor missing END", armor(good).replace("-----END SSH SIGNATURE-----\n", ""), MESSAGE),
    ]  # fmt: skip
    if signer.kind == "rsa":
        message, short = short_rsa(signer)
        out.append(("RSA leading zero stripped", armor(short), message))
        raw = signer.private.sign(signed_data(NS, b"", "sha512", MESSAGE), padding.PKCS1v15(),
                                  hashes.SHA512())  # fmt: skip
        out.append(("RSA with an extra zero byte", armor(sshsig_blob(
            signer, sig=string(b"rsa-sha2-512") + string(b"\0" + raw))), MESSAGE))  # fmt: skip
        data = signed_data(NS, b"", "sha512", MESSAGE)
        out.append(("RSA SHA-1 (ssh-rsa)", armor(sshsig_blob(
            signer, sig=signer.sign(data, "ssh-rsa"))), MESSAGE))  # fmt: skip
        out.append(("RSA sha2-256 signature", armor(sshsig_blob(
            signer, sig=signer.sign(data, "rsa-sha2-256"))), MESSAGE))  # fmt: skip
    return out


def sshpin_accepts(text: str, message: bytes, signer: Signer) -> bool:
    try:
        sshsig.verify(sshsig.unarmor(text), message, [signer.key])
    except VerificationError:
        return False
    return True


def keygen_accepts(text: str, message: bytes, signer: Signer, tmp: Path) -> bool:
    allowed = tmp / "allowed_signers"
    allowed.write_text(f'ops@example.org namespaces="{NS}" {signer.line}\n')
    sig = tmp / "document.sig"
    sig.write_bytes(text.encode())
    done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I",
                           "ops@example.org", "-n", NS, "-s", str(sig)], input=message,
                          capture_output=True, timeout=30)  # fmt: skip
    return done.returncode == 0 and b"Good" in done.stdout


KINDS = [*KEYGEN, "sk-ed25519", "sk-ecdsa"]


@pytest.mark.parametrize("kind", KINDS)
def test_sshpin_and_ssh_keygen_agree_on_every_signature_variant(kind: str, tmp_path: Path) -> None:
    signer = Signer(kind, tmp_path)
    disagree = []
    verdicts = {}
    for name, text, message in variants(signer):
        ours, theirs = sshpin_accepts(text, message, signer), keygen_accepts(
            text, message, signer, tmp_path)  # fmt: skip
        verdicts[name] = theirs
        if ours != theirs:
            disagree.append(f"{name}: sshpin {ours}, ssh-keygen {theirs}")
    assert not disagree, f"{kind}: " + "; ".join(disagree)
    assert verdicts["as signed"] and verdicts["reserved carried, signed empty"]
    assert not verdicts["flipped last byte"] and not verdicts["reserved carried and signed"]
    if kind == "rsa":
        assert verdicts["RSA leading zero stripped"]


def rsa_blob(e: int, n: int) -> bytes:
    return string(b"ssh-rsa") + mpint(e) + mpint(n)


def ec_blob(curve: str, point: bytes) -> bytes:
    return string(f"ecdsa-sha2-{curve}".encode()) + string(curve.encode()) + string(point)


STRICTER = {"RSA 1024 bits", "RSA e >= n", "RSA even exponent", "RSA exponent 1"}


def key_variants(tmp: Path) -> list[tuple[str, str]]:
    out = []
    for kind in KINDS:
        signer = Signer(kind, tmp)
        out.append((kind, signer.line))
        blob = signer.key.blob
        out.append((f"{kind} trailing byte", "x " + base64.b64encode(blob + b"\0").decode()))
        out.append((f"{kind} truncated", "x " + base64.b64encode(blob[:-1]).decode()))
    n2048 = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n
    n1024 = rsa.generate_private_key(65537, 1024).public_key().public_numbers().n
    bad: list[tuple[str, bytes]] = [
        ("RSA 1024 bits", rsa_blob(65537, n1024)),
        ("RSA e >= n", rsa_blob(n2048 + 2, n2048)),
        ("RSA even exponent", rsa_blob(65536, n2048)),
        ("RSA exponent 1", rsa_blob(1, n2048)),
        ("Ed25519 31 bytes", string(b"ssh-ed25519") + string(b"\1" * 31)),
        ("ECDSA point off the curve", ec_blob("nistp256", b"\4" + b"\1" * 64)),
        ("ECDSA compressed point", ec_blob("nistp256", b"\2" + b"\1" * 32)),
    ]
    for name, blob in bad:
        text = base64.b64encode(blob).decode()
        out.append((name, f"{blob[4 : 4 + int.from_bytes(blob[:4], 'big')].decode()} {text}"))
    return [(name, line if not line.startswith("x ") else
             f"{parse_type(line)} {line[2:]}") for name, line in out]  # fmt: skip


def parse_type(line: str) -> str:
    blob = base64.b64decode(line.split()[1])
    return blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()


def test_sshpin_and_ssh_keygen_l_agree_on_keys(tmp_path: Path) -> None:
    disagree = []
    for name, line in key_variants(tmp_path):
        try:
            ours: str | None = keygen_line(parse_line(line, SIGNING_KEY_TYPES), "c")
        except VerificationError:
            ours = None
        path = tmp_path / "key.pub"
        path.write_text(line.split()[0] + " " + line.split()[1] + " c\n")
        done = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        theirs = done.stdout.strip() if done.returncode == 0 else None
        if ours is not None and ours != theirs:
            disagree.append(f"{name}: sshpin {ours!r}, ssh-keygen {theirs!r}")
        elif ours is None and theirs is not None and name not in STRICTER:
            disagree.append(f"{name}: refused by sshpin only (ssh-keygen: {theirs!r})")
    assert not disagree, "; ".join(disagree)


Check = Callable[[], None]
