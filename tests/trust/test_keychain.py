"""The signing-key statement parser and the chain reader (sshpin/trust/keychain.py), from text
and bytes: every malformed form refused, generated well-formed ones accepted."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from sshpin.errors import VerificationError
from sshpin.trust import sshsig, verify
from sshpin.trust.keychain import MAGIC, MAX_CHAIN, MAX_KEYS, NAMESPACE, KeyState, follow
from sshpin.trust.keychain import parse_statement as parse
from tests.trust.test_verify import API, K1, K2, K3, body, public, signed

A, B, C = public(K1), public(K2), public(K3)
MANY = [public(ed25519.Ed25519PrivateKey.generate()) for _ in range(MAX_KEYS + 1)]


def text(*lines: str) -> str:
    return "\n".join([MAGIC, *lines]) + "\n"


def test_a_well_formed_statement_is_read_field_by_field() -> None:
    s = parse(text(f"api {API}", "version 2", f"key {A}", f"key {B}", f"revoked {C}"))
    assert (s.version, s.api, s.keys, s.revoked) == (2, API, [A, B], [C])


@pytest.mark.parametrize(
    "statement",
    [
        text(f"api {API}", "version 2", f"key {A}")[:-1],  # not newline-terminated
        "sshpin-signing-keys v2\n" + f"api {API}\nversion 2\nkey {A}\n",  # another magic
        text("version 2", f"key {A}"),  # no api
        text(f"api {API}", f"api {API}", "version 2", f"key {A}"),  # api twice
        text(f"api {API}", f"key {A}"),  # no version
        text(f"api {API}", "version 1", f"key {A}"),  # version below 2
        text(f"api {API}", "version 2", "version 3", f"key {A}"),  # version twice
        text(f"api {API}", "version 0x2", f"key {A}"),
        text(f"api {API}", "version 1234567890", f"key {A}"),  # ten digits
        text(f"api {API}", "version 2"),  # no key
        text(f"api {API}", "version 2", f"key {A}", f"revoked {A}"),  # listed and revoked
        text(f"api {API}", "version 2", *[f"key {k}" for k in MANY]),
        text(f"api {API}", "version 2", f"key {A}", "comment here"),
        text(f"api {API}", "version 2", "key ssh-ed25519 AAAA"),
        "x" * 20000 + "\n",
    ],
    ids=[
        "no-newline",
        "magic",
        "no-api",
        "api-twice",
        "no-version",
        "version-1",
        "version-twice",
        "version-hex",
        "version-long",
        "no-key",
        "listed-and-revoked",
        "too-many",
        "stray-line",
        "bad-key",
        "too-long",
    ],
)
def test_a_malformed_statement_is_refused(statement: str) -> None:
    with pytest.raises(VerificationError):
        parse(statement)


def test_nine_digit_versions_and_sixteen_keys_are_the_limits() -> None:
    many = [public(ed25519.Ed25519PrivateKey.generate()) for _ in range(MAX_KEYS)]
    assert (
        len(parse(text(f"api {API}", "version 123456789", *[f"key {k}" for k in many])).keys) == 16
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 10**9 - 1), st.lists(st.sampled_from([A, B, C]), min_size=1, max_size=3,
                                           unique=True), st.data())  # fmt: skip
def test_generated_statements_parse_back(
    version: int, keys: list[str], data: st.DataObject
) -> None:
    others = [k for k in (A, B, C) if k not in keys]
    revoked = data.draw(st.lists(st.sampled_from(others), unique=True)) if others else []
    s = parse(text(f"api {API}", f"version {version}", *[f"key {k}" for k in keys],
                   *[f"revoked {k}" for k in revoked]))  # fmt: skip
    assert (s.version, s.keys, s.revoked) == (version, keys, revoked)


def entry(statement: str, signer: Any) -> dict[str, str]:
    blob = sshsig.sign(signer, statement.encode(), NAMESPACE)
    return {"statement": statement, "signature": base64.b64encode(blob).decode()}


START = KeyState.start([A])


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"chain": {}}', json.dumps({"chain": [{}] * (MAX_CHAIN + 1)}).encode(),
     b'{"chain": [{"statement": "x"}]}', b'{"chain": [{"statement": "x", "signature": "!!"}]}'],
    ids=["not-json", "not-object", "not-list", "too-long", "no-signature", "not-base64"],
)  # fmt: skip
def test_a_malformed_chain_is_refused(raw: bytes) -> None:
    with pytest.raises(VerificationError):
        follow(START, raw, API)


def test_a_chain_signature_is_strict_base64() -> None:
    good = entry(text(f"api {API}", "version 2", f"key {B}"), K1)
    spoilt = {**good, "signature": good["signature"][:10] + "\n" + good["signature"][10:]}
    with pytest.raises(VerificationError):
        follow(START, json.dumps({"chain": [spoilt]}).encode(), API)
    assert follow(START, json.dumps({"chain": [good]}).encode(), API)[0].version == 2


def test_statements_already_followed_are_skipped_and_the_walk_goes_on() -> None:
    two = entry(text(f"api {API}", "version 2", f"key {B}"), K1)
    three = entry(text(f"api {API}", "version 3", f"key {C}"), K2)
    at_two, _ = follow(START, json.dumps({"chain": [two]}).encode(), API)
    reached, steps = follow(at_two, json.dumps({"chain": [two, three]}).encode(), API)
    assert reached.version == 3 and reached.keys == [C] and len(steps) == 1


def test_the_state_round_trips_and_a_damaged_one_starts_afresh() -> None:
    statement = entry(text(f"api {API}", "version 2", f"key {B}", f"revoked {A}"), K1)
    grown, _ = follow(START, json.dumps({"chain": [statement]}).encode(), API)
    again = KeyState.from_bytes(grown.to_bytes(), [A])
    assert (again.version, again.keys, again.revoked) == (2, [B], [A])
    assert grown.to_bytes() == again.to_bytes()  # stable bytes
    for damaged in (
        b"{",
        b'{"base": "x"}',
        grown.to_bytes().replace(b'"version": 2', b'"version": 0'),
    ):
        assert KeyState.from_bytes(damaged, [A]).version == 1


def test_a_statement_of_up_to_16_kib_is_read_and_a_longer_one_refused() -> None:
    from sshpin.trust.keychain import MAX_STATEMENT

    def of_length(n: int) -> str:
        base = text(f"api {API}", "version 2", f"key {A}")
        pad = n - len(base)
        return text(f"api {API}{'a' * pad}", "version 2", f"key {A}")

    assert len(of_length(MAX_STATEMENT)) == MAX_STATEMENT
    assert parse(of_length(MAX_STATEMENT)).version == 2
    with pytest.raises(VerificationError, match="too long"):
        parse(of_length(MAX_STATEMENT + 1))


def test_a_chain_of_64_statements_is_read_and_a_longer_one_refused() -> None:
    two = entry(text(f"api {API}", "version 2", f"key {B}"), K1)
    assert follow(START, json.dumps({"chain": [two] * MAX_CHAIN}).encode(), API)[0].version == 2
    with pytest.raises(VerificationError):
        follow(START, json.dumps({"chain": [two] * (MAX_CHAIN + 1)}).encode(), API)


def test_a_revocation_stands_for_every_later_version_even_if_a_key_comes_back() -> None:
    two = entry(text(f"api {API}", "version 2", f"key {B}", f"revoked {A}"), K1)
    three = entry(text(f"api {API}", "version 3", f"key {B}", f"key {A}"), K2)  # A listed again
    reached, _ = follow(START, json.dumps({"chain": [two, three]}).encode(), API)
    assert reached.version == 3 and A in reached.revoked and A not in reached.keys
    with pytest.raises(verify.RevokedSigningKey):
        verify.verify_document(signed(body(), K1), verify.Asked("p", API, account=""),
                               verify.Trust(reached), 1_800_000_000.0)  # fmt: skip
