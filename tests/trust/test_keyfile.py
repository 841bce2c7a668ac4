"""``type = "url"`` key files through the trust core (sshpin/trust/keyfile.py), from bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshpin.core.times import rfc3339
from sshpin.errors import NoKeysError, VerificationError
from sshpin.trust import sshsig
from sshpin.trust.keyfile import KEY_FILE_HEADER, verify_key_file
from sshpin.trust.verify import (
    BadSignature,
    EndlessData,
    FastForward,
    Freeze,
    MixAndMatch,
    Rollback,
    Unbound,
    floor_key,
)
from tests.strategies import valid_keys
from tests.trust.test_verify import DAY, HOST_KEY, K1, K2, NOW, fingerprint, public

HOST = "web1.example.org"
URL = f"https://bucket.example/keys/{HOST}.pub"


def key_file(host: str = HOST, generated: float = NOW - 3600, expires: float = NOW + 7 * DAY,
             lines: str = HOST_KEY + "\n") -> bytes:  # fmt: skip
    header = f"{KEY_FILE_HEADER}host={host} generated_at={rfc3339(generated)} "
    return (header + f"expires={rfc3339(expires)}\n" + lines).encode()


def sig(data: bytes, key: Any = K1) -> bytes:
    return sshsig.armor(sshsig.sign(key, data)).encode()


def check(data: bytes, signature: bytes | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"host": HOST, "url": URL, "provider": "bucket",
                            "signing_keys": [public(K1)], "allow_unbound": False,
                            "now": NOW, **kw}  # fmt: skip
    return verify_key_file(data, sig(data) if signature is None else signature, **args)


def test_a_bound_file_in_its_time_is_accepted() -> None:
    verified = check(key_file())
    assert [k.openssh() for k in verified.keys] == [HOST_KEY]
    assert verified.signer == fingerprint(K1) and verified.generated == int(NOW - 3600)
    assert verified.warnings == []


@pytest.mark.parametrize(
    ("data", "signature", "kind"),
    [
        (key_file(), sig(key_file(), K2), BadSignature),
        (key_file(), sig(key_file() + b"#"), BadSignature),
        (key_file(), b"\xff", BadSignature),
        (key_file("web2.example.org"), None, MixAndMatch),
        (HOST_KEY.encode() + b"\n", None, Unbound),
        (key_file(expires=NOW - 1), None, Freeze),
        (key_file(generated=NOW - 3600, expires=NOW - 3600 + 31 * DAY), None, EndlessData),
        (key_file(generated=NOW + 600), None, FastForward),
    ],
    ids=["untrusted", "changed", "not-armored", "other-host", "unbound", "expired", "endless",
         "future"],
)  # fmt: skip
def test_a_file_that_breaks_a_rule_is_refused_by_type(
    data: bytes, signature: bytes | None, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as e:
        check(data, signature)
    assert type(e.value) is kind and "\n" not in str(e.value)


def test_an_unbound_file_is_taken_only_when_the_user_opted_in_and_then_said() -> None:
    verified = check(HOST_KEY.encode() + b"\n", allow_unbound=True)
    assert verified.generated == 0.0 and "names no host and time" in verified.warnings[0]


def test_a_file_older_than_the_hosts_floor_or_the_cached_one_is_a_rollback() -> None:
    data = key_file(generated=NOW - 3600)
    key = floor_key("host", HOST, fingerprint(K1))
    with pytest.raises(Rollback):
        check(data, floors={key: NOW - 60})
    with pytest.raises(Rollback):
        check(data, previous=NOW - 60)
    assert check(data, floors={key: int(NOW - 3600)}, previous=int(NOW - 3600)).keys
    assert check(data, floors={floor_key("host", "other", fingerprint(K1)): NOW}).keys


def test_a_malformed_header_refuses_the_file_rather_than_reading_it_unbound() -> None:
    for first in (b"# sshpin-hostkeys v2 host=x\n", b"# sshpin-hostkeys v1 host=web1\n"):
        with pytest.raises(VerificationError, match="header line"):
            check(first + HOST_KEY.encode() + b"\n", allow_unbound=True)


def test_a_file_with_no_usable_key_has_no_keys_to_vouch_for() -> None:
    with pytest.raises(NoKeysError):
        check(key_file(lines="# nothing here\n"))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(valid_keys, min_size=1, max_size=4, unique_by=lambda k: k.blob),
    st.floats(0, 29 * DAY),
    st.sampled_from(["\n", "\r\n"]),
    st.data(),
)
def test_generated_files_are_accepted_and_any_changed_byte_is_refused(
    keys: list[Any], age: float, newline: str, data: st.DataObject
) -> None:
    generated = NOW - age
    expires = generated + data.draw(st.floats(age + 1, 30 * DAY))
    lines = "".join(f"{k.openssh()} comment{newline}" for k in keys)
    raw = key_file(generated=generated, expires=expires, lines=lines)
    verified = check(raw)
    assert [k.openssh() for k in verified.keys] == [k.openssh() for k in keys]
    at = data.draw(st.integers(0, len(raw) - 1))
    changed = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]
    with pytest.raises(BadSignature):
        check(changed, sig(raw))


def test_a_crlf_file_is_read_as_its_lf_form() -> None:
    raw = key_file().replace(b"\n", b"\r\n")
    verified = check(raw)
    assert [k.openssh() for k in verified.keys] == [HOST_KEY]
    assert verified.expires == int(NOW + 7 * DAY)


def test_a_line_of_a_type_sshpin_does_not_serve_is_skipped_and_noted() -> None:
    dsa = (
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2N"
        "WPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1"
        "VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7L"
        "vKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o"
        "4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAPGz"
        "7DDzV1pBBRYMNsdjaOuRAf8y9bhAffrFN6qs1n11ZmqS7WGvHkqZfaH1ycoyAUzG1ptwAeIeiVTeSybENTHC"
        "b+dlCedYZLxMqaRLRlJNKVDLTXIEgvXWPCrjNaDOdIfyZONNmGW97cwutcIiGN/u8v1M0TjGBUB+wyOeL3c="
        " dsa"
    )
    lines = f"{HOST_KEY}\n{dsa}\n"
    verified = check(key_file(lines=lines))
    assert [k.openssh() for k in verified.keys] == [HOST_KEY]
    assert len(verified.notes) == 1 and URL in verified.notes[0] and "ssh-dss" in verified.notes[0]


def test_an_unbound_file_taken_states_no_times_and_its_signer() -> None:
    verified = check(HOST_KEY.encode() + b"\n", allow_unbound=True)
    assert (verified.generated, verified.expires) == (0.0, 0.0) and verified.notes == []
    assert verified.signer == fingerprint(K1) and [k.openssh() for k in verified.keys] == [HOST_KEY]
