"""SSHSIG: interop both ways with the real ``ssh-keygen -Y`` for every key type, and every
refusal path with hostile signatures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.keys import parse_line
from sshpin.errors import VerificationError
from sshpin.trust import sshsig

TYPES = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa": ["-t", "rsa", "-b", "2048"],
}
MESSAGE = b'{"capsuls": []}\n'


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sshsig")
    out = {}
    for name, args in TYPES.items():
        path = d / name
        subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-C", name, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        out[name] = path
    return out


def pub(path: Path) -> str:
    return Path(str(path) + ".pub").read_text().strip()


def keygen_sign(key: Path, message_file: Path, namespace: str = sshsig.NAMESPACE) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(message_file)],
        check=True,
        capture_output=True,
    )
    return Path(str(message_file) + ".sig").read_text()


@pytest.mark.parametrize("name", list(TYPES))
def test_we_verify_what_ssh_keygen_signs(
    signers: dict[str, Path], name: str, tmp_path: Path
) -> None:
    message = tmp_path / "body"
    message.write_bytes(MESSAGE)
    blob = sshsig.unarmor(keygen_sign(signers[name], message))
    key = parse_line(pub(signers[name]))
    assert sshsig.verify(blob, MESSAGE, [key]) == key
    with pytest.raises(VerificationError, match="bad signature"):
        sshsig.verify(blob, MESSAGE + b" ", [key])  # a different body


@pytest.mark.parametrize("name", list(TYPES))
def test_ssh_keygen_verifies_what_we_sign(
    signers: dict[str, Path], name: str, tmp_path: Path
) -> None:
    blob = sshsig.sign(sshsig.load_private_key(str(signers[name])), MESSAGE)
    (tmp_path / "sig").write_text(sshsig.armor(blob))
    (tmp_path / "allowed").write_text(f"ops@example {pub(signers[name])}\n")
    done = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "ops@example",
         "-n", sshsig.NAMESPACE, "-s", str(tmp_path / "sig")],
        input=MESSAGE, capture_output=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"Good" in done.stdout
    wrong = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "ops@example",
         "-n", sshsig.NAMESPACE, "-s", str(tmp_path / "sig")],
        input=MESSAGE + b"x", capture_output=True,
    )  # fmt: skip
    assert wrong.returncode != 0


@pytest.fixture(scope="module")
def signed(signers: dict[str, Path]) -> tuple[bytes, object]:
    key = parse_line(pub(signers["ed25519"]))
    return sshsig.sign(sshsig.load_private_key(str(signers["ed25519"])), MESSAGE), key


def field_offsets(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of each length-prefixed field after the magic and version."""
    pos, out = 10, []
    while pos < len(blob):
        n = int.from_bytes(blob[pos : pos + 4], "big")
        out.append((pos, pos + 4 + n))
        pos += 4 + n
    return out


def replace_field(blob: bytes, index: int, value: bytes) -> bytes:
    start, end = field_offsets(blob)[index]
    return blob[:start] + len(value).to_bytes(4, "big") + value + blob[end:]


def test_refusals(signed: tuple[bytes, object], signers: dict[str, Path]) -> None:
    blob, key = signed
    assert sshsig.verify(blob, MESSAGE, [key]) == key  # type: ignore[list-item]
    other = parse_line(pub(signers["rsa"]))
    cases = {
        "truncated": (blob[:-10], "truncated"),
        "trailing bytes": (blob + b"\x00", "trailing"),
        "bad magic": (b"SSHSIX" + blob[6:], "magic"),
        "version 2": (blob[:6] + (2).to_bytes(4, "big") + blob[10:], "version"),
        "other namespace": (replace_field(blob, 1, b"git"), "namespace"),
        "md5 hash": (replace_field(blob, 3, b"md5"), "hash"),
        # the signature blob claims RSA inside a signature by an Ed25519 key
        "type mismatch": (
            replace_field(blob, 4, b"\x00\x00\x00\x0crsa-sha2-512\x00\x00\x00\x40" + b"\x00" * 64),
            "does not belong",
        ),
        "other signer in blob": (
            replace_field(blob, 0, other.blob),
            "not a signing key",
        ),
    }
    for bad, words in cases.values():
        with pytest.raises(VerificationError, match=words):
            sshsig.verify(bad, MESSAGE, [key])  # type: ignore[list-item]
    with pytest.raises(VerificationError, match="not a signing key"):
        sshsig.verify(blob, MESSAGE, [other])
    with pytest.raises(VerificationError, match="no signing key"):
        sshsig.verify(blob, MESSAGE, [])
    with pytest.raises(VerificationError, match="namespace"):
        sshsig.verify(blob, MESSAGE, [key], namespace="file")  # type: ignore[list-item]


def test_every_cut_of_a_signature_is_refused_by_name(signed: tuple[bytes, object]) -> None:
    # the one wire reader (core/keys.WireReader) raises ValueError; parse turns every one into
    # a VerificationError that says what was cut short
    blob, _ = signed
    for n in range(len(blob)):
        with pytest.raises(VerificationError) as refused:
            sshsig.parse(blob[:n])
        assert any(w in str(refused.value) for w in ("truncated", "magic")), (n, refused.value)


def test_armor_round_trip_and_refusals(signed: tuple[bytes, object]) -> None:
    blob, _ = signed
    assert sshsig.unarmor(sshsig.armor(blob)) == blob
    for bad in ("", "hello", sshsig.armor(blob).replace("SIGNATURE", "MESSAGE"),
                sshsig.armor(blob).replace("A", "*", 1)):  # fmt: skip
        with pytest.raises(VerificationError):
            sshsig.unarmor(bad)


@given(st.binary(max_size=400))
def test_parse_random_bytes_only_ever_refuses(data: bytes) -> None:
    try:
        sshsig.parse(b"SSHSIG\x00\x00\x00\x01" + data)
    except VerificationError:
        pass


@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    blob = sshsig.sign(private, MESSAGE)
    signer = sshsig.parse(blob).signer
    sshsig.verify(blob, MESSAGE, [signer])  # the accepting branch first
    i = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1 :]
    with pytest.raises(VerificationError):
        sshsig.verify(bad, MESSAGE, [signer])
