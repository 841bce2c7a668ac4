"""keys.py: parsing agrees with the real ssh-keygen, and nothing malformed gets through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.keys import HostKey, decode_base64, parse_blob, parse_key, parse_line
from sshpin.errors import UnsupportedKeyError, VerificationError

TYPES = [("ed25519", None), ("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521"),
         ("rsa", "2048"), ("rsa", "3072")]  # fmt: skip


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("realkeys")
    out = []
    for kind, bits in TYPES:
        path = d / f"{kind}{bits or ''}"
        cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)]
        subprocess.run(cmd + (["-b", bits] if bits else []), check=True)
        out.append(path.with_suffix(".pub"))
    return out


def test_fingerprints_and_sizes_match_ssh_keygen(real_keys: list[Path]) -> None:
    for pub in real_keys:
        key = parse_line(pub.read_text())
        bits, sha, _, label = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert key.sha256() == sha
        assert str(key.bits()) == bits
        assert f"({key.type_label()})" == label
        md5 = subprocess.run(
            ["ssh-keygen", "-l", "-E", "md5", "-f", str(pub)], capture_output=True, text=True
        ).stdout.split()[1]
        assert key.md5() == md5


def test_rendered_line_is_the_canonical_public_key(real_keys: list[Path]) -> None:
    for pub in real_keys:
        key_type, b64 = pub.read_text().split()[:2]
        assert parse_key(key_type, b64).openssh() == f"{key_type} {b64}"


def test_weak_and_unknown_types_are_unsupported(tmp_path: Path) -> None:
    for kind, bits in (("dsa", None), ("rsa", "1024")):
        path = tmp_path / kind
        cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)]
        subprocess.run(cmd + (["-b", bits] if bits else []), check=True)
        with pytest.raises(UnsupportedKeyError):
            parse_line(path.with_suffix(".pub").read_text())


def test_declared_type_must_match_blob(real_keys: list[Path]) -> None:
    key_type, b64 = real_keys[0].read_text().split()[:2]
    with pytest.raises(VerificationError, match="differs"):
        parse_key("ssh-rsa", b64)
    with pytest.raises(VerificationError):
        parse_key(key_type, b64 + "\n@cert-authority * x")
    with pytest.raises(VerificationError):
        parse_key(key_type, b64[:-4])


def test_ecdsa_point_off_the_curve_refused(real_keys: list[Path]) -> None:
    key = parse_line(real_keys[1].read_text())
    bad = bytearray(key.blob)
    bad[-1] ^= 1
    with pytest.raises(VerificationError, match="curve"):
        parse_blob(bytes(bad))


def test_trailing_bytes_refused(real_keys: list[Path]) -> None:
    key = parse_line(real_keys[0].read_text())
    with pytest.raises(VerificationError, match="trailing"):
        parse_blob(key.blob + b"\x00")


@given(st.binary(max_size=600))
def test_any_blob_parses_or_is_refused_cleanly(blob: bytes) -> None:
    try:
        key = parse_blob(blob)
    except VerificationError:
        return
    assert isinstance(key, HostKey) and key.blob == blob


@given(st.text(max_size=300))
def test_any_line_parses_or_is_refused_cleanly(line: str) -> None:
    try:
        key = parse_line(line)
    except VerificationError:
        return
    rendered = key.openssh()
    assert "\n" not in rendered and rendered.isprintable()


@given(st.binary(max_size=3000))
def test_base64_encoding_is_binascii_s(data: bytes) -> None:
    """keys.py encodes base64 itself (no binascii on the hook's path): byte for byte what
    binascii writes, for any blob up to larger than an RSA-16384 key's."""
    import binascii

    from sshpin.core.keys import encode_base64

    assert encode_base64(data) == binascii.b2a_base64(data, newline=False).decode()


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_EDITED_BASE64 = st.tuples(
    st.binary(min_size=1, max_size=600),
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(_B64 + " \n.-_")), max_size=3),
)


def _edited(case: tuple[bytes, list[tuple[int, str]]]) -> str:
    """Valid base64 of the blob, with up to three characters replaced."""
    import binascii

    data, edits = case
    text = list(binascii.b2a_base64(data, newline=False).decode())
    for where, char in edits:
        text[where % len(text)] = char
    return "".join(text)


@given(_EDITED_BASE64)
def test_base64_decoding_accepts_exactly_strict_canonical_base64(
    case: tuple[bytes, list[tuple[int, str]]],
) -> None:
    """Valid base64 of a random blob, then up to three characters replaced (by alphabet
    characters, padding, or junk): decode_base64 accepts exactly what binascii decodes in
    strict mode and encodes back to the same text, and returns the same bytes."""
    import binascii

    from hypothesis import event

    candidate = _edited(case)
    expected: bytes | None = None
    try:
        decoded = binascii.a2b_base64(candidate.encode(), strict_mode=True)
        if decoded and binascii.b2a_base64(decoded, newline=False).decode() == candidate:
            expected = decoded
    except (binascii.Error, ValueError):
        pass
    try:
        got: bytes | None = decode_base64(candidate)
    except ValueError:
        got = None
    event("accepted" if got is not None else "refused")
    assert got == expected


def test_base64_decoding_property_reaches_both_branches() -> None:
    """The property's strategy reaches decode_base64's accepting branch and its refusing one
    (hypothesis.find fails when no example of either is found)."""
    from hypothesis import find, settings

    def accepted(case: tuple[bytes, list[tuple[int, str]]]) -> bool:
        try:
            decode_base64(_edited(case))
        except ValueError:
            return False
        return True

    find(_EDITED_BASE64, accepted, settings=settings(database=None))
    find(_EDITED_BASE64, lambda case: not accepted(case), settings=settings(database=None))


@given(st.binary(min_size=1, max_size=200))
def test_base64_round_trip_is_canonical(data: bytes) -> None:
    import base64

    text = base64.b64encode(data).decode()
    assert decode_base64(text) == data
    with pytest.raises(ValueError):
        decode_base64(text + "\n")
    with pytest.raises(ValueError):
        decode_base64(" " + text)
