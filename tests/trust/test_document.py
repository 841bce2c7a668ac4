"""The provider document parser: hostile and random input (property-based)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.errors import VerificationError
from sshpin.trust.document import Document, parse_capsul_api
from tests.refserver import host_key_entry

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZsXAdjk6KeLjHq+lAt7Sw1QBZqMNoPvzlz/TY0H0qE"


def _doc(*capsuls: dict[str, object]) -> bytes:
    return json.dumps({"account": "a@b", "generated_at": "2026-11-22T10:00:00Z",
                       "capsuls": list(capsuls)}).encode()  # fmt: skip


def _capsul(cid: str = "capsul-a", **over: object) -> dict[str, object]:
    return {"id": cid, "name": "web", "state": "running", "ipv4": "203.0.113.7", "ipv6": None,
            "ssh_host_keys": [host_key_entry(ED)], **over}  # fmt: skip


def test_good_document_round_trips_through_cache_form() -> None:
    doc = parse_capsul_api(_doc(_capsul()), "p", "https://x")
    assert doc.capsuls[0].keys[0].openssh() == ED
    again = Document.from_bytes(doc.to_bytes())
    assert [k.openssh() for k in again.capsuls[0].keys] == [ED]


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b"not json", b'{"account": "a"}', _doc(_capsul(), _capsul()),
     json.dumps({"account": "a\nb", "generated_at": "2026-11-22T10:00:00Z",
                 "capsuls": []}).encode(),
     json.dumps({"account": "a", "generated_at": "yesterday", "capsuls": []}).encode()],
)  # fmt: skip
def test_bad_documents_refused_whole(body: bytes) -> None:
    with pytest.raises(VerificationError):
        parse_capsul_api(body, "p", "https://x")


@pytest.mark.parametrize(
    "over",
    [{"ipv4": "203.0.113.7\n"}, {"ipv4": "::1"}, {"ipv6": "1.2.3.4"}, {"name": "a\x00b"},
     {"ssh_host_keys": [{**host_key_entry(ED), "sha256": "SHA256:nope"}]},
     {"ssh_host_keys": [{**host_key_entry(ED), "key_type": "ssh-rsa"}]},
     {"ssh_host_keys": "x"}],
)  # fmt: skip
def test_bad_capsul_refused_alone(over: dict[str, object]) -> None:
    doc = parse_capsul_api(_doc({**_capsul(), **over}, _capsul("capsul-b")), "p", "https://x")
    bad, good = doc.capsuls
    assert bad.problem and not bad.keys
    assert good.problem is None and good.keys


def test_capsul_without_clean_id_is_dropped() -> None:
    doc = parse_capsul_api(_doc(_capsul("capsul-../../x"), _capsul("CAPSUL-A")), "p", "x")
    assert doc.capsuls == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(json_values)
def test_any_json_parses_or_is_refused_cleanly(value: object) -> None:
    try:
        parse_capsul_api(json.dumps(value).encode(), "p", "x")
    except VerificationError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(["id", "name", "state", "ipv4", "ipv6", "ssh_host_keys"]),
        json_values,
        max_size=6,
    )
)
def test_any_capsul_entry_never_yields_unvalidated_keys(entry: dict[str, object]) -> None:
    entry.setdefault("id", "capsul-a")
    try:
        doc = parse_capsul_api(_doc(entry), "p", "x")
    except VerificationError:
        return
    for capsul in doc.capsuls:
        for key in capsul.keys:
            assert key.openssh().isprintable()


CLEAN_TOKEN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                      max_size=1024)  # fmt: skip
ANY_TOKEN = st.one_of(
    CLEAN_TOKEN,
    st.text(max_size=1100),  # spaces, control and non-ASCII characters, "" and overlong ones
    CLEAN_TOKEN.map(lambda t: t + "x" * 1024),
    st.integers(),
    st.lists(CLEAN_TOKEN, max_size=2),
)


@given(field=st.sampled_from(["page_token", "next_page_token", "host"]), token=ANY_TOKEN)
def test_a_token_field_is_kept_exactly_when_clean(field: str, token: object) -> None:
    from hypothesis import event

    body = json.loads(_doc(_capsul()))
    body[field] = token
    clean = (isinstance(token, str) and 0 < len(token) <= 1024 and token.isascii()
             and token.isprintable() and " " not in token)  # fmt: skip
    event("accepted" if clean else "refused")
    try:
        doc = parse_capsul_api(json.dumps(body).encode(), "p", "https://x")
    except VerificationError as e:
        assert not clean and field in str(e)
        return
    assert clean
    fields = {"page_token": doc.page_token, "next_page_token": doc.next_page, "host": doc.host}
    assert fields.pop(field) == token
    assert set(fields.values()) == {""}
