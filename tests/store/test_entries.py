"""The cache: modes, damaged files read as misses, unsafe dirs refused, atomic writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.keys import HostKey, parse_blob
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry
from sshpin.store.history import append_history, read_history
from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer


def _filled(pin: Pin, provider: ReferenceServer, keys: Keys) -> tuple[str, str]:
    provider.api.add("capsul-abc", [keys.pub(keys.host)], ipv4="127.0.0.1")
    key_type, b64 = keys.pub(keys.host).split()[:2]
    assert pin.hook("HOSTNAME", "127.0.0.1", key_type, b64).stdout
    return key_type, b64


def test_modes(pin: Pin, provider: ReferenceServer, keys: Keys) -> None:
    _filled(pin, provider, keys)
    for path in [pin.cache, *pin.cache.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_damaged_entry_and_document_are_misses(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    key_type, b64 = _filled(pin, provider, keys)
    entry = pin.cache / "capsul" / "hosts" / "127.0.0.1"
    for garbage in (b"", b"sshpin-host 1\nhost 127.0.0.1\n", os.urandom(300),
                    entry.read_bytes().replace(b"AAAA", b"\n@cert-authority * AAAA")):  # fmt: skip
        entry.write_bytes(garbage)
        (pin.cache / "capsul" / "document.json").write_bytes(garbage)
        done = pin.hook("HOSTNAME", "127.0.0.1", key_type, b64)
        assert done.returncode == 0
        assert done.stdout == f"127.0.0.1 {key_type} {b64}\n"
        assert "@cert-authority" not in done.stdout
    assert provider.api.count() == 5  # each damaged cache was a miss, refetched


def test_unsafe_cache_dir_refused(pin: Pin, provider: ReferenceServer, keys: Keys) -> None:
    key_type, b64 = _filled(pin, provider, keys)
    pin.cache.chmod(0o777)
    done = pin.hook("HOSTNAME", "127.0.0.1", key_type, b64)
    assert done.returncode == 0 and done.stdout == ""
    assert "writable by group or others" in done.stderr and "chmod 700" in done.stderr


def test_history_survives_a_torn_line(tmp_path: Path) -> None:
    from sshpin.store.history import HistoryRecord, history_record

    def record(n: int) -> HistoryRecord:
        return history_record(0.0, "p", f"capsul-{n}", "", [], "changed", set(), {"x"}, "s")

    append_history(str(tmp_path), [record(1)])
    with open(tmp_path / "history.log", "ab") as f:
        f.write(b'{"capsul": "capsul-2", "torn')  # a writer killed mid-line
    append_history(str(tmp_path), [record(3)])
    assert [r["capsul"] for r in read_history(str(tmp_path))] == ["capsul-1", "capsul-3"]


@given(st.binary(max_size=400))
def test_any_entry_bytes_parse_or_miss(raw: bytes) -> None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return
    entry = HostEntry.from_text(text)
    if entry is not None:
        for key in entry.keys:
            assert key.known_hosts_line("h").count("\n") == 0


def test_entry_round_trip(tmp_path: Path, keys: Keys) -> None:
    from sshpin.core.keys import parse_line

    store = ProviderCache(str(tmp_path / "c"), "p")
    entry = HostEntry("h.example", "capsul-a", "dns", 123.5, [parse_line(keys.pub(keys.host))])
    store.write_host(entry)
    again = store.read_host("h.example")
    assert again is not None and again.to_text() == entry.to_text()


def _key(seed: int) -> HostKey:
    from tests.strategies import ed25519_blob

    return parse_blob(ed25519_blob(bytes([seed]) * 32))


def test_lines_are_exact_known_hosts_lines() -> None:
    key, ca, gone = _key(1), _key(2), _key(3)
    entry = HostEntry(
        "h",
        "capsul-x",
        "capsul id",
        1.0,
        [key],
        signed=True,
        source="src",
        revoked=[gone],
        cas=[ca],
    )
    assert entry.lines("[h]:2222") == [
        f"[h]:2222 {key.openssh()}",
        f"@cert-authority [h]:2222 {ca.openssh()}",
        f"@revoked [h]:2222 {gone.openssh()}",
    ]
    assert entry.has(key.blob) and entry.has(None)
    assert not entry.has(ca.blob) and not entry.has(gone.blob)


def test_every_field_round_trips_with_values_that_are_not_the_defaults() -> None:
    entry = HostEntry("h.example", "capsul-x", "dns", 1700000000.25, [_key(1)], signed=True,
                      source="https://p/api/capsuls", revoked=[_key(3)],
                      address="198.51.100.7", cas=[_key(2)],
                      expires=1700600000.5, trust="t0ken", generated=1699990000.75)  # fmt: skip
    back = HostEntry.from_text(entry.to_text())
    assert back is not None
    for name in HostEntry.__slots__:
        assert getattr(back, name) == getattr(entry, name), name
    plain = HostEntry.from_text(HostEntry("h", "", "pin", 5.0, [_key(1)]).to_text())
    assert plain is not None
    defaults = (plain.address, plain.expires, plain.trust, plain.generated, plain.signed,
                plain.source, plain.cas, plain.revoked)  # fmt: skip
    assert defaults == ("", 0.0, "", 0.0, False, "", [], [])


@pytest.mark.parametrize(
    "damage",
    [lambda t: t.replace("sshpin-host 1", "sshpin-host 2"),  # wrong magic, right end
     lambda t: t.removesuffix("end\n"),  # no end line
     lambda t: "\n".join(t.split("\n")[:3]) + "\nend\n",  # too short
     lambda t: t.replace("\nfetched ", "\nfetched x"),  # a number that is not one
     lambda t: t.replace("\nhost ", "\nhots ")],  # a required field missing
)  # fmt: skip
def test_a_damaged_entry_is_a_miss(damage: Callable[[str], str]) -> None:
    text = HostEntry("h", "capsul-x", "dns", 1.0, [_key(1)], signed=True, source="s").to_text()
    assert HostEntry.from_text(text) is not None
    assert HostEntry.from_text(damage(text)) is None


def test_age_counts_a_future_fetch_as_old() -> None:
    from sshpin.store.entries import FUTURE_SKEW, age

    assert age(100.0, 100.0) == 0.0
    assert age(40.0, 100.0) == 60.0
    assert age(100.0 + FUTURE_SKEW - 1, 100.0) == 0.0  # a little clock skew: just fetched
    assert age(100.0 + FUTURE_SKEW + 1, 100.0) == float("inf")  # the clock went back


@pytest.mark.parametrize(
    ("signed", "trust", "signed_only", "current", "ok"),
    [(True, "t", True, "t", True), (False, "t", False, "t", True),
     (False, "t", True, "t", False), (True, "t", True, "u", False),
     (False, "", False, "u", False), (True, "t", False, "t", True)],
)  # fmt: skip
def test_the_one_usability_rule_of_what_is_cached(
    signed: bool, trust: str, signed_only: bool, current: str, ok: bool
) -> None:
    from sshpin.store.entries import usable

    assert usable(signed, trust, signed_only, current) is ok


def test_one_damaged_rollback_floor_leaves_the_others(tmp_path: Path) -> None:
    import json

    store = ProviderCache(str(tmp_path), "capsul")
    store.record_newest("account a SHA256:x", 100.0)
    data = json.loads(Path(store.newest_path).read_text())
    Path(store.newest_path).write_text(json.dumps({**data, "capsul c SHA256:x": "soon"}))
    assert store.floors() == {"account a SHA256:x": 100.0}
    Path(store.newest_path).write_text("[1, 2]")
    assert store.floors() == {}
