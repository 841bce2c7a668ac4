"""Every parser, driven from valid inputs: the accepting branch is reached on every example
(asserted, and counted with ``hypothesis.event``), then one mutation probes the refusals. A
mutant is either refused cleanly or, when it happens to be valid too, parsed to exactly what
it says: nothing is normalised, guessed or passed through unchecked."""

from __future__ import annotations

import json

from hypothesis import event, given
from hypothesis import strategies as st

from sshpin.core.keys import HostKey, parse_blob, parse_line
from sshpin.errors import VerificationError
from sshpin.store.entries import HostEntry
from sshpin.trust.document import parse_capsul_api
from tests.strategies import documents, fingerprint, listed, pub_lines, valid_blobs, valid_keys


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
    at = draw(st.integers(0, max(0, len(data) - 1)))
    if how == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if how == "truncate":
        return data[:at]
    extra = draw(st.binary(min_size=1, max_size=8))
    return data + extra if how == "append" else data[:at] + extra + data[at:]


@given(valid_blobs, st.data())
def test_key_blobs(blob: bytes, data: st.DataObject) -> None:
    key = parse_blob(blob)  # accepted, always
    event("valid blob accepted")
    assert key.blob == blob and key.sha256() == fingerprint(blob)
    bad = data.draw(mutated(blob))
    try:
        other = parse_blob(bad)
    except VerificationError:
        event("mutant refused")
        return
    event("mutant valid too")
    assert other.blob == bad  # exactly what it says, never a repaired key


@given(pub_lines(), st.sampled_from(["", "host.example ", "[h]:2222 ", "a,b "]))
def test_key_lines(line_and_key: tuple[str, HostKey], hosts: str) -> None:
    line, key = line_and_key
    assert parse_line(hosts + line) == key  # .pub form, or known_hosts form with a host field
    event("valid line accepted")
    for smuggled in ("\n", "\r", "\x00"):
        broken = line.replace(" ", smuggled, 1)
        try:
            got = parse_line(hosts + broken)
        except VerificationError:
            continue
        assert "\n" not in got.openssh() and got.openssh() == key.openssh()


@given(st.lists(valid_keys, min_size=1, max_size=3), st.lists(valid_keys, max_size=2), st.data())
def test_host_entries(keys: list[HostKey], revoked: list[HostKey], data: st.DataObject) -> None:
    entry = HostEntry("capsul-x", "capsul-x", "capsul id", 1.5e9, keys, signed=True,
                      source="https://p/api", revoked=revoked, address="198.51.100.7",
                      cas=revoked[:1])  # fmt: skip
    text = entry.to_text()
    back = HostEntry.from_text(text)  # accepted, always
    event("valid entry accepted")
    assert back is not None and back.to_text() == text
    assert back.lines("h") == entry.lines("h")
    bad = data.draw(mutated(text.encode()))
    try:
        damaged = HostEntry.from_text(bad.decode("ascii"))
    except UnicodeDecodeError:
        return
    if damaged is None:
        event("damaged entry is a miss")
        return
    event("mutant entry valid too")
    for line in damaged.lines("h"):  # whatever it says, every line is a parsed key's
        assert parse_line(line.split(" ", 1)[1].removeprefix("h ")).openssh() in line


@given(documents(), st.data())
def test_documents(doc_and_keys: tuple[dict[str, object], dict[str, list[HostKey]]],
                   data: st.DataObject) -> None:  # fmt: skip
    doc, expected = doc_and_keys
    parsed = parse_capsul_api(json.dumps(doc).encode(), "p", "https://p/api/capsuls")
    event("valid document accepted")
    assert {c.id: c.keys for c in parsed.capsuls} == expected
    # One field of one listed key, changed: that capsul's keys are refused or still exact.
    capsuls: list[dict[str, object]] = doc["capsuls"]  # type: ignore[assignment]
    target = data.draw(st.sampled_from(capsuls))
    entries: list[dict[str, str]] = target["ssh_host_keys"]  # type: ignore[assignment]
    entry = data.draw(st.sampled_from(entries))
    field = data.draw(st.sampled_from(["key_type", "content", "sha256"]))
    other = data.draw(valid_keys)
    entry[field] = listed(other)[field] if data.draw(st.booleans()) else entry[field] + "A"
    try:
        parsed = parse_capsul_api(json.dumps(doc).encode(), "p", "https://p/api/capsuls")
    except VerificationError:
        event("document refused whole")
        return
    got = {c.id: c for c in parsed.capsuls}[str(target["id"])]
    if got.problem:
        event("capsul refused alone")
        assert got.keys == []
        return
    event("mutant still consistent")
    for key in got.keys:  # served keys are exactly ones whose three fields agree
        assert {"key_type": key.key_type, "content": key.base64, "sha256": key.sha256()} in [
            listed(k) for k in [*expected[got.id], other]
        ]


DURATIONS = st.lists(st.tuples(st.integers(1, 999), st.sampled_from("smhdw")), min_size=1,
                     max_size=3)  # fmt: skip
PATTERNS = st.sampled_from(["capsul-*", "*.capsul.example", "203.0.113.0/24", "!bad.example",
                            "web?.example.org", "2001:db8::/32", "10.0.0.5"])  # fmt: skip


@given(DURATIONS, st.lists(PATTERNS, min_size=1, max_size=4), st.data())
def test_config_tables(parts: list[tuple[int, str]], hosts: list[str], data: st.DataObject) -> None:
    from sshpin.core.config import parse_document
    from sshpin.core.schema import parse_duration
    from sshpin.errors import ConfigError
    from sshpin.providers import validate_table

    if all(h.startswith("!") for h in hosts):
        hosts = ["capsul-*", *hosts]
    ttl = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = sum(n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[u] for n, u in parts)
    assert parse_duration(ttl, "ttl") == seconds
    table: dict[str, object] = {"name": "capsul", "type": "capsul", "hosts": hosts,
                                "api_url": "https://capsul.example/api", "ttl": ttl}  # fmt: skip
    (provider,) = parse_document({"provider": [table]}, validate_table)  # accepted, always
    event("valid table accepted")
    assert provider.ttl == seconds and provider.hosts == [h.lower() for h in hosts]
    key = data.draw(st.sampled_from(sorted(table)))
    table[key] = data.draw(st.sampled_from([None, 7, "", "x y", "\n", ["a"], "http://insecure"]))
    try:
        parse_document({"provider": [table]}, validate_table)
    except ConfigError as e:
        event("mutant refused")
        assert key in str(e) or key == "name"  # the message names the key (or the table)
