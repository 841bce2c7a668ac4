"""The trust core (sshpin/trust/verify.py), from bytes, with no server, no file and no clock.

Every rule has its accepting and its refusing side here, and each refusal is asserted by its
type: a rule that breaks makes one of these fail without any end-to-end test running. The
end-to-end tests (tests/providers/, tests/test_security_rules.py) prove the same rules reach
ssh.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from sshpin.core.keys import parse_line
from sshpin.core.times import rfc3339
from sshpin.errors import VerificationError
from sshpin.provider_side.publish import key_entry, v1_document
from sshpin.trust import sshsig, verify
from sshpin.trust.document import Document, parse_capsul_api
from sshpin.trust.keychain import MAGIC, NAMESPACE, KeyState, follow
from sshpin.trust.verify import (
    Asked,
    BadSignature,
    EndlessData,
    FastForward,
    Freeze,
    MixAndMatch,
    Received,
    RevokedSigningKey,
    Rollback,
    Trust,
    Unbound,
)
from tests.strategies import valid_keys

NOW = 1_800_000_000.0
DAY = 86400.0
API = "https://capsul.example/api"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZsXAdjk6KeLjHq+lAt7Sw1QBZqMNoPvzlz/TY0H0qE"
K1, K2, K3 = (ed25519.Ed25519PrivateKey.generate() for _ in range(3))


def public(key: Any) -> str:
    return str(key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode())


def fingerprint(key: Any) -> str:
    return parse_line(public(key)).sha256()


def body(
    generated: float = NOW - 3600,
    expires: float | None = NOW + 7 * DAY,
    api: str | None = API,
    account: str = "alice",
    **fields: Any,
) -> bytes:
    capsul = {"id": "capsul-web1", "name": "web1", "state": "running", "ipv4": "203.0.113.7",
              "ipv6": None, "ssh_host_keys": [key_entry(parse_line(HOST_KEY))]}  # fmt: skip
    doc = v1_document(account, api, rfc3339(generated), rfc3339(expires) if expires else None,
                      [capsul], **fields)  # fmt: skip
    return json.dumps(doc).encode()


def signed(data: bytes, key: Any = K1, namespace: str = sshsig.NAMESPACE) -> Received:
    blob = sshsig.sign(key, data, namespace)
    return Received(data, signature=base64.b64encode(blob).decode())


def trust(*keys: Any, allow_unbound: bool = False) -> Trust:
    return Trust(KeyState.start([public(k) for k in keys or (K1,)]), allow_unbound, "ctx")


def asked(**over: Any) -> Asked:
    base: dict[str, Any] = {"provider": "p", "api": API, "source": API + "/capsuls",
                            "account": "alice",
                            "account_why": "the config pins account"}  # fmt: skip
    return Asked(**{**base, **over})


def accept(received: Received, t: Trust | None = None, **kw: Any) -> verify.Verified:
    return verify.verify_document(received, kw.pop("asked", asked()), t or trust(), NOW, **kw)


def refuse(kind: type[Exception], received: Received, t: Trust | None = None, **kw: Any) -> str:
    with pytest.raises(kind) as e:
        accept(received, t, **kw)
    assert type(e.value) is kind, f"{type(e.value).__name__}: {e.value}"
    assert "\n" not in str(e.value)
    return str(e.value)


def statement(
    version: int, signer: Any, keys: list[Any], revoked: tuple[Any, ...] = (), api: str = API
) -> dict[str, str]:
    lines = [MAGIC, f"api {api}", f"version {version}"]
    lines += [f"key {public(k)}" for k in keys] + [f"revoked {public(k)}" for k in revoked]
    text = "\n".join(lines) + "\n"
    blob = sshsig.sign(signer, text.encode(), NAMESPACE)
    return {"statement": text, "signature": base64.b64encode(blob).decode()}


def chain(*statements: dict[str, str]) -> bytes:
    return json.dumps({"chain": list(statements)}).encode()


# -- the accepting side ----------------------------------------------------------------


def test_a_bound_signed_document_in_its_time_is_accepted_with_its_facts() -> None:
    verified = accept(signed(body()))
    doc = verified.doc
    assert doc.signed and doc.signer == fingerprint(K1) and doc.account == "alice"
    assert doc.api == API and doc.trust == "ctx" and doc.fetched_at == NOW
    assert doc.provider == "p" and doc.source == API + "/capsuls"
    assert [k.openssh() for k in doc.capsuls[0].keys] == [HOST_KEY]
    assert verified.warnings == [] and verified.steps == []


def test_without_signing_keys_nothing_signed_is_required_and_nothing_is_claimed() -> None:
    doc = accept(Received(body(expires=None, api=None)), Trust()).doc
    assert not doc.signed and doc.signer == ""


# -- signature and namespace -----------------------------------------------------------


@pytest.mark.parametrize(
    "received",
    [
        Received(body()),  # not signed
        Received(body(), signature="!!not base64!!"),
        Received(body() + b" ", signature=signed(body()).signature),  # body changed
        signed(body(), K2),  # a key nobody trusts
        signed(body(), K1, "sshpin-signing-keys"),  # another namespace
        Received(body(), detached=b"-----BEGIN SSH SIGNATURE-----\nAAAA\n"),  # garbage .sig
    ],
    ids=["unsigned", "not-base64", "body-changed", "unknown-key", "namespace", "bad-detached"],
)
def test_a_signature_that_does_not_verify_is_refused(received: Received) -> None:
    refuse(BadSignature, received)


def test_the_detached_capsuls_sig_is_verified_over_the_same_bytes() -> None:
    data = body()
    armored = sshsig.armor(sshsig.sign(K1, data)).encode()
    assert accept(Received(data, detached=armored)).doc.signed
    refuse(BadSignature, Received(data + b"\n", detached=armored))


def test_a_header_signature_wins_over_the_detached_file() -> None:
    data = body()
    armored = sshsig.armor(sshsig.sign(K2, data)).encode()  # by an untrusted key
    good = signed(data)
    assert accept(Received(data, signature=good.signature, detached=armored)).doc.signed


def test_an_answer_that_is_not_json_typed_is_refused() -> None:
    data = body()
    with pytest.raises(VerificationError, match="text/html, not application/json"):
        accept(Received(data, "text/html", signed(data).signature))


# -- the signing-key chain -------------------------------------------------------------


def test_a_rotation_is_followed_from_the_chain_bytes_and_only_with_them() -> None:
    rotated = chain(statement(2, K1, [K2]))
    received = signed(body(), K2)
    assert verify.wants_chain(received, trust())
    verified = accept(received, chain=rotated)
    assert verified.state is not None and verified.state.version == 2
    assert verified.doc.signer == fingerprint(K2) and len(verified.steps) == 1
    refuse(BadSignature, received)  # no chain given: not followed


def test_a_chain_that_skips_a_version_is_not_followed() -> None:
    skipping = chain(statement(3, K1, [K2]))  # version 2 is missing
    refuse(BadSignature, signed(body(), K2), chain=skipping)


def test_a_chain_statement_signed_by_a_key_outside_the_previous_set_is_refused() -> None:
    forged = chain(statement(2, K3, [K2]))
    with pytest.raises(VerificationError, match="statement 2 refused"):
        accept(signed(body(), K2), chain=forged)


def test_a_chain_statement_for_another_api_is_refused_as_mix_and_match() -> None:
    other = chain(statement(2, K1, [K2], api="https://other.example/api"))
    with pytest.raises(VerificationError, match="mix-and-match"):
        accept(signed(body(), K2), chain=other)


def test_a_document_signed_by_a_revoked_signing_key_is_refused_as_such() -> None:
    revoking = chain(statement(2, K1, [K2], revoked=(K1,)))
    state, _ = follow(KeyState.start([public(K1)]), revoking, API)
    refuse(RevokedSigningKey, signed(body(), K1), Trust(state))
    assert not verify.wants_chain(signed(body(), K1), Trust(state))  # never refetched for it


def test_a_chain_grown_from_other_configured_keys_is_not_kept() -> None:
    grown, _ = follow(KeyState.start([public(K1)]), chain(statement(2, K1, [K2])), API)
    again = KeyState.from_bytes(grown.to_bytes(), [public(K3)])  # the user configured K3
    assert again.version == 1 and again.keys == [public(K3)]
    same = KeyState.from_bytes(grown.to_bytes(), [public(K1)])
    assert same.version == 2 and same.keys == [public(K2)]


# -- account, api, what it answers -----------------------------------------------------


def test_a_document_for_another_account_is_mix_and_match() -> None:
    line = refuse(MixAndMatch, signed(body(account="mallory")))
    assert "'mallory', the config pins account 'alice'" in line
    assert accept(signed(body(account="mallory")), asked=asked(account="")).doc.signed


@pytest.mark.parametrize(
    "api", ["https://capsul.example", API + "x", API + "/v2", "https://evil.example/api"]
)
def test_the_api_is_compared_exactly(api: str) -> None:
    refuse(MixAndMatch, signed(body(api=api)))


@pytest.mark.parametrize(
    ("page_token", "said", "ok"),
    [("", None, True), ("t2", "t2", True), ("t2", None, False), ("t2", "t3", False),
     ("", "t2", False)],
)  # fmt: skip
def test_a_page_names_the_token_it_answers(page_token: str, said: str | None, ok: bool) -> None:
    received = signed(body(page_token=said))
    if ok:
        assert accept(received, asked=asked(page_token=page_token)).doc.page_token == (said or "")
    else:
        refuse(MixAndMatch, received, asked=asked(page_token=page_token))


def test_an_unsigned_page_without_page_token_is_taken_as_before() -> None:
    doc = accept(Received(body()), Trust(), asked=asked(page_token="t2")).doc
    assert doc.page_token == ""


@pytest.mark.parametrize(("host", "said", "ok"),
                         [("web1", "web1", True), ("", "web1", False), ("web2", "web1", False),
                          ("web1", None, True)])  # fmt: skip
def test_a_lookup_names_the_host_it_answers(host: str, said: str | None, ok: bool) -> None:
    received = signed(body(host=said))
    if ok:
        assert accept(received, asked=asked(host=host, listing=False)).doc.host == (said or "")
    else:
        refuse(MixAndMatch, received, asked=asked(host=host, listing=False))


# -- binding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "over",
    [{"api": None}, {"expires": None}, {"api": None, "expires": None}],
    ids=["no-api", "no-expires", "neither"],
)
def test_a_signed_document_bound_to_less_than_api_and_expires_is_unbound(
    over: dict[str, Any],
) -> None:
    refuse(Unbound, signed(body(**over)))
    verified = accept(signed(body(**over)), trust(allow_unbound=True))
    assert verified.doc.signed and "unbound" in verified.warnings[0]


# -- time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generated", "expires", "kind"),
    [
        (NOW - 31 * DAY, None, Freeze),  # older than 30 days (unbound: no expires)
        (NOW - 8 * DAY, NOW - 1 * DAY, Freeze),  # past its expires
        (NOW - 8 * DAY, NOW, Freeze),  # at its expires: over
        (NOW - 3600, NOW - 3600 + 31 * DAY, EndlessData),
        (NOW - 10 * DAY, NOW + 25 * DAY, EndlessData),  # 35 days from generated, 25 from now
        (NOW + 301, NOW + 7 * DAY, FastForward),
    ],
    ids=["old", "expired", "at-expiry", "endless", "endless-from-generated", "future"],
)
def test_a_document_out_of_its_time_is_refused(
    generated: float, expires: float | None, kind: type[Exception]
) -> None:
    refuse(kind, signed(body(generated, expires)), trust(allow_unbound=True))


@pytest.mark.parametrize(
    ("generated", "expires"),
    [(NOW - 29 * DAY, None), (NOW + 299, NOW + 7 * DAY), (NOW - 3600, NOW - 3600 + 30 * DAY),
     (NOW - 20 * DAY, NOW + 1)],
    ids=["29-days", "skew", "30-days-valid", "expires-soon"],
)  # fmt: skip
def test_a_document_in_its_time_is_accepted(generated: float, expires: float | None) -> None:
    assert accept(signed(body(generated, expires)), trust(allow_unbound=True)).doc.signed


def test_an_unsigned_document_has_no_time_window_to_keep() -> None:
    assert accept(Received(body(NOW - 90 * DAY, None)), Trust()).doc.generated_at


# -- rollback --------------------------------------------------------------------------


def test_a_listing_older_than_the_accounts_floor_is_a_rollback() -> None:
    key = verify.floor_key("account", "alice", fingerprint(K1))
    generated = NOW - 3600
    refuse(Rollback, signed(body(generated)), floors={key: generated + 1})
    assert accept(signed(body(generated)), floors={key: generated}).doc.signed
    other = verify.floor_key("account", "alice", fingerprint(K2))  # another signer's floor
    assert accept(signed(body(generated)), floors={other: generated + 1}).doc.signed


def test_a_listing_older_than_the_cached_document_is_a_rollback() -> None:
    cached = accept(signed(body(NOW - 60))).doc
    refuse(Rollback, signed(body(NOW - 3600)), previous=cached)
    assert accept(signed(body(NOW - 60)), previous=cached).doc.signed
    cached.account = "bob"  # another account's document sets no floor for this one
    assert accept(signed(body(NOW - 3600)), previous=cached).doc.signed


def test_a_lookup_is_held_to_the_capsuls_floor_not_the_listings_cached_document() -> None:
    doc = accept(signed(body(NOW - 3600)), asked=asked(listing=False)).doc
    signer = fingerprint(K1)
    assert verify.lookup_floor(doc, "capsul-web1", None, {}) == 0.0
    floors = {verify.floor_key("capsul", "capsul-web1", signer): NOW - 60}
    assert verify.lookup_floor(doc, "capsul-web1", None, floors) == NOW - 60
    assert verify.lookup_floor(doc, "capsul-web1", ("capsul-web1", NOW - 30), {}) == NOW - 30
    assert verify.lookup_floor(doc, "capsul-web1", ("capsul-other", NOW - 30), {}) == 0.0
    with pytest.raises(Rollback):
        verify.check_rollback(doc.generated_at, NOW - 60, "p")
    verify.check_rollback(doc.generated_at, doc.generated_at, "p")


# -- not modified ----------------------------------------------------------------------


def test_not_modified_revalidates_only_a_document_that_still_passes() -> None:
    cached = accept(signed(body(NOW - 8 * DAY, NOW + 60))).doc
    with pytest.raises(VerificationError, match="unconditional"):
        verify.verify_not_modified(None, asked(), NOW)
    kept = verify.verify_not_modified(cached, asked(), NOW + 30)
    assert kept.fetched_at == NOW + 30 and cached.fetched_at == NOW  # a copy
    with pytest.raises(Freeze):
        verify.verify_not_modified(cached, asked(), NOW + 120)
    with pytest.raises(MixAndMatch):
        verify.verify_not_modified(cached, asked(account="bob"), NOW + 30)


# -- paging ----------------------------------------------------------------------------


def _page(token: str | None, generated: float, revoked: list[str], key: Any = K1,
          account: str = "alice") -> Document:  # fmt: skip
    entries = [key_entry(parse_line(line)) for line in revoked]
    received = signed(body(generated, page_token=token, revoked=entries, account=account), key)
    return accept(received, trust(K1, K2), asked=asked(page_token=token or "", account="")).doc


def test_the_listing_keeps_every_pages_revocations_and_its_earliest_times() -> None:
    a, b = public(K2), public(K3)
    first = _page(None, NOW - 60, [a])
    second = _page("t2", NOW - 7200, [b])
    verify.merge_page(first, second)
    assert [k.openssh() for k in first.revoked] == [a, b]
    assert first.generated_at == NOW - 7200
    assert first.expires == min(first.expires, second.expires)


def test_every_page_is_of_the_same_account_and_signing_key() -> None:
    first = _page(None, NOW - 60, [])
    verify.check_same_listing(first, _page("t2", NOW - 60, []), 2, "p")
    with pytest.raises(MixAndMatch):
        verify.check_same_listing(first, _page("t2", NOW - 60, [], account="bob"), 2, "p")
    with pytest.raises(MixAndMatch):
        verify.check_same_listing(first, _page("t2", NOW - 60, [], K2), 2, "p")


def test_a_listing_that_loops_or_never_ends_is_endless_data() -> None:
    page = parse_capsul_api(body(next_page_token="t2"), "p", API)
    assert verify.next_page(page, set(), 1, "p") == "t2"
    with pytest.raises(EndlessData):
        verify.next_page(page, {"t2"}, 2, "p")
    with pytest.raises(EndlessData):
        verify.next_page(page, set(), verify.MAX_PAGES, "p")
    assert verify.next_page(parse_capsul_api(body(), "p", API), set(), 1, "p") == ""


# -- generated documents ---------------------------------------------------------------


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, float]:
    """A bound document in its time, of one to three capsuls, and its generated_at."""
    age = draw(st.floats(0, 29 * DAY))
    generated = NOW - age
    valid = draw(st.floats(age + 1, 30 * DAY))
    capsuls = []
    for n in range(draw(st.integers(1, 3))):
        keys = draw(st.lists(valid_keys, min_size=1, max_size=2, unique_by=lambda k: k.blob))
        capsuls.append({"id": f"capsul-{n}x", "name": f"n{n}", "state": "running",
                        "ipv4": f"198.51.100.{n + 1}", "ipv6": None,
                        "ssh_host_keys": [key_entry(k) for k in keys]})  # fmt: skip
    doc = v1_document("alice", API, rfc3339(generated), rfc3339(generated + valid), capsuls)
    return json.dumps(doc).encode(), float(int(generated))


@settings(max_examples=40, deadline=None)
@given(documents(), st.data())
def test_generated_documents_are_accepted_and_any_changed_byte_is_refused(
    document: tuple[bytes, float], data: st.DataObject
) -> None:
    raw, generated = document
    received = signed(raw)
    doc = accept(received).doc
    assert doc.signed and abs(doc.generated_at - generated) < 1
    at = data.draw(st.integers(0, len(raw) - 1))
    changed = raw[:at] + bytes([raw[at] ^ 0x20]) + raw[at + 1 :]
    with pytest.raises(BadSignature):
        accept(Received(changed, signature=received.signature))


# -- what mutation showed unpinned ----------------------------------------------------


def test_every_refusal_names_the_provider_first() -> None:
    for received in (Received(body()), signed(body(account="bob")), signed(body(api=None))):
        with pytest.raises(VerificationError) as e:
            accept(received)
        assert str(e.value).startswith("provider 'p': "), e.value


@pytest.mark.parametrize("spoil", [lambda s: s[:8] + "!" + s[8:], lambda s: s[:8] + "\n" + s[8:],
                                   lambda s: s + "="])  # fmt: skip
def test_a_signature_header_is_strict_base64(spoil: Any) -> None:
    good = signed(body())
    assert good.signature is not None
    refuse(BadSignature, Received(good.body, signature=spoil(good.signature)))


def test_a_chain_is_wanted_only_for_a_parsable_signature_by_an_unknown_key() -> None:
    assert not verify.wants_chain(signed(body()), trust())  # trusted: no chain
    assert not verify.wants_chain(signed(body(), K2), Trust())  # no signing keys
    assert not verify.wants_chain(Received(body(), signature="AAAA"), trust())  # not SSHSIG
    assert not verify.wants_chain(Received(body()), trust())  # unsigned
    assert verify.wants_chain(signed(body(), K2), trust())


@pytest.mark.parametrize(
    ("generated", "ok"),
    [(NOW - 30 * DAY, True), (NOW - 30 * DAY - 1, False), (NOW + 300, True), (NOW + 301, False)],
)
def test_the_window_edges_are_exact(generated: float, ok: bool) -> None:
    what = "p"
    if ok:
        verify.check_window(generated, 0.0, NOW, what)
    else:
        with pytest.raises((Freeze, FastForward)):
            verify.check_window(generated, 0.0, NOW, what)


def test_a_lookup_is_held_to_the_accounts_floor_too() -> None:
    doc = accept(signed(body(NOW - 3600)), asked=asked(listing=False)).doc
    floors = {verify.floor_key("account", "alice", fingerprint(K1)): NOW - 60}
    assert verify.lookup_floor(doc, "capsul-web1", None, floors) == NOW - 60


def test_a_clean_etag_is_kept_and_any_other_dropped() -> None:
    data = body()
    sig = signed(data).signature
    assert accept(Received(data, signature=sig, etag='"abc"')).doc.etag == '"abc"'
    assert accept(Received(data, signature=sig, etag='"a\nb"')).doc.etag is None
    assert accept(Received(data, signature=sig)).doc.etag is None


def test_a_page_of_another_api_is_not_of_the_listing() -> None:
    first = _page(None, NOW - 60, [])
    other = _page("t2", NOW - 60, [])
    other.api = "https://other.example/api"
    with pytest.raises(MixAndMatch):
        verify.check_same_listing(first, other, 2, "p")


def test_a_listing_whose_first_page_states_no_expiry_holds_until_a_later_pages() -> None:
    first = _page(None, NOW - 60, [])
    first.expires = 0.0
    second = _page("t2", NOW - 60, [])
    verify.merge_page(first, second)
    assert first.expires == second.expires > NOW
