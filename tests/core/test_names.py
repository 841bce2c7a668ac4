"""Host tokens from ssh and the hosts patterns (property-based)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.names import (
    Query,
    bare_host,
    glob_match,
    hosts_match,
    is_capsul_id,
    parse_port,
    split_host,
    valid_host,
)
from sshpin.errors import UsageError

SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789.-_:%")


def test_split_host_forms() -> None:
    assert split_host("Example.COM") == ("example.com", None)
    assert split_host("[10.0.0.5]:2222") == ("10.0.0.5", 2222)
    assert split_host("[::1]:22") == ("::1", 22)
    assert split_host("fe80::1%eth0") == ("fe80::1%eth0", None)
    assert split_host("capsul-as9w8djads") == ("capsul-as9w8djads", None)


@pytest.mark.parametrize(
    "bad",
    ["", "[x]", "[x]:", "[x]:0", "[x]:65536", "[x]:22a", "a b", "a\nb", "-oProxy=x", ".hidden",
     "../../etc", "a/b", "$(reboot)", "a;b", "h\u00e9", "[::1]:22\n@cert-authority", "x" * 254],
)  # fmt: skip
def test_split_host_refuses(bad: str) -> None:
    with pytest.raises(UsageError):
        split_host(bad)


@given(st.text(max_size=300))
def test_accepted_host_is_safe_everywhere(token: str) -> None:
    try:
        host, port = split_host(token)
    except UsageError:
        return
    assert set(host) <= SAFE and host[0] not in ".-" and ".." not in host and "/" not in host
    assert port is None or 0 < port < 65536


@given(st.from_regex(r"[a-z0-9.\-]{1,30}", fullmatch=True), st.integers(1, 65535))
def test_bracket_form_round_trips(host: str, port: int) -> None:
    if not valid_host(host):
        return
    assert split_host(f"[{host}]:{port}") == (host.removesuffix("."), port)


@given(
    st.from_regex(r"[a-c*?]{0,8}", fullmatch=True), st.from_regex(r"[a-c]{0,10}", fullmatch=True)
)
def test_glob_agrees_with_fnmatch(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == fnmatch.fnmatchcase(text, pattern)


def test_hosts_match_negation_and_cidr() -> None:
    patterns = ["*.capsul.example", "!bad.capsul.example", "203.0.113.0/24", "capsul-*"]
    assert hosts_match(patterns, "web.capsul.example")
    assert not hosts_match(patterns, "bad.capsul.example")
    assert hosts_match(patterns, "203.0.113.7")
    assert not hosts_match(patterns, "203.0.114.7")
    assert hosts_match(patterns, "capsul-abc")
    assert not hosts_match(patterns, "example.org")
    assert hosts_match(["2001:db8::/32"], "2001:db8::5")
    assert not hosts_match(["2001:db8::/32"], "10.0.0.1")


def test_capsul_ids() -> None:
    assert is_capsul_id("capsul-as9w8djads")
    for bad in (
        "capsul-",
        "capsul-AB",
        "capsul-a/b",
        "capsul-a.b",
        "xcapsul-a",
        "capsul-" + "a" * 65,
    ):
        assert not is_capsul_id(bad)


@pytest.mark.parametrize(
    ("token", "host", "port"),
    [("[h]:2222", "h", 2222), ("[::1]:22", "::1", 22), ("[a]:1", "a", 1),
     ("[fe80::1%eth0]:65535", "fe80::1%eth0", 65535), ("H.Example", "h.example", None)],
)  # fmt: skip
def test_split_host_exact(token: str, host: str, port: int | None) -> None:
    assert split_host(token) == (host, port)


@pytest.mark.parametrize(
    "token", ["[]:22", "[h]:", "[h]:0", "[h]:65536", "[h]:123456", "[h]22", "[h]:2x", "[h]:-1",
              "h]:22", "[h]:٢٢", ".h", "-h", "h..x", "", "a" * 254],
)  # fmt: skip
def test_split_host_refuses_exactly(token: str) -> None:
    with pytest.raises(UsageError):
        split_host(token)


def test_cidr_patterns_exact() -> None:
    assert hosts_match(["10.0.0.0/8"], "10.1.2.3")
    assert not hosts_match(["10.0.0.0/8"], "11.1.2.3")
    assert hosts_match(["2001:db8::/32"], "2001:db8::5")
    assert not hosts_match(["2001:db8::/32"], "10.0.0.1")
    assert not hosts_match(["10.0.0.0/8"], "host.example")
    assert hosts_match(["fe80::/10"], "fe80::1%eth0")  # the zone is not part of the address
    assert not hosts_match(["10.0.0.0/8", "!10.0.0.5"], "10.0.0.5")


LABELS = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9\-]{0,8}", fullmatch=True)
NAMES_TYPED = st.lists(LABELS, min_size=1, max_size=4).map(".".join)


@given(NAMES_TYPED, st.integers(1, 65535))
def test_every_spelling_of_a_host_is_one_host(name: str, port: int) -> None:
    """ssh and DNS take ``Capsul-X``, ``CAPSUL-X.`` and ``capsul-x`` to one machine (ssh
    lower-cases the name it connects to and keeps the dot): the hook keys them as one host,
    pins and cache alike, while every line it prints carries ``%H`` exactly as ssh gave it."""
    host = name.lower()
    for spelling in (name, name.upper(), name + ".", name.swapcase() + "."):
        assert split_host(spelling) == (host, None)
        assert split_host(f"[{spelling}]:{port}") == (host, port)
        query = Query(spelling)
        assert (query.host, query.name, query.token) == (host, host, spelling)
        bracketed = Query(f"[{spelling}]:{port}")
        assert bracketed.name == (host if port == 22 else f"[{host}]:{port}")
        assert Query("127.0.0.1", alias=spelling).alias == host  # %k as typed
        assert Query(spelling, alias=name.upper()).alias == ""  # the same host: no alias
        assert hosts_match(["*.x", host], spelling.lower().removesuffix("."))


@pytest.mark.parametrize("token", ["capsul-x..", ".", "..", "[capsul-x..]:22", "[.]:22"])
def test_only_one_trailing_dot_is_a_spelling(token: str) -> None:
    with pytest.raises(UsageError):
        split_host(token)


def test_bare_host_exact() -> None:
    assert bare_host("CAPSUL-X.") == "capsul-x"
    assert bare_host("Web.Capsul.Example") == "web.capsul.example"
    assert bare_host("10.0.0.5") == "10.0.0.5"
    assert split_host("WEB.capsul.example.") == ("web.capsul.example", None)
    assert split_host("[Capsul-X.]:2222") == ("capsul-x", 2222)


@given(st.integers(1, 65535))
def test_parse_port_takes_every_port_as_ssh_writes_it(port: int) -> None:
    assert parse_port(str(port)) == port


@given(st.one_of(st.text(max_size=8), st.text("0123456789\u00b2\u0661\uff10+- _x", max_size=7)))
def test_parse_port_takes_nothing_else(text: str) -> None:
    """Exactly ``str(n)`` for n in 1..65535: no other digits (superscript, Arabic-Indic,
    fullwidth), no sign, space, leading zero or out-of-range number; no error but UsageError."""
    try:
        port = parse_port(text)
    except UsageError:
        assert not (text.isascii() and text.isdigit() and str(int(text)) == text
                    and 0 < int(text) < 65536)  # fmt: skip
        return
    assert 1 <= port <= 65535 and str(port) == text


@pytest.mark.parametrize("token", ["[h]:\u00b2", "[h]:022", "[h]:00022"])
def test_split_host_takes_ascii_ports_as_ssh_writes_them(token: str) -> None:
    with pytest.raises(UsageError):
        split_host(token)
