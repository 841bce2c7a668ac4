"""ProxyCommand's managed known_hosts never outlives the cache (issue 19): lines carry the
freshness limit of what vouched for them, and are dropped past it or when the lookup fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sshpin.commands import proxy
from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer


@pytest.fixture
def env(pin: Pin, monkeypatch: pytest.MonkeyPatch) -> Pin:
    for name, value in pin.env.items():
        if name.startswith("SSHPIN_") or name == "HOME":
            monkeypatch.setenv(name, value)
    return pin


def managed(pin: Pin) -> str:
    path = Path(pin.cache) / "known_hosts"
    return path.read_text() if path.exists() else ""


def test_lines_carry_their_limit_and_expired_ones_are_dropped(
    env: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    address, named = proxy.target("capsul-test1", 22)
    assert address == "127.0.0.1" and list(named) == ["capsul-test1"]
    lines = named["capsul-test1"]
    assert lines and all(" sshpin-until=" in line for line in lines)
    until = int(lines[0].rsplit("=", 1)[1])
    assert time.time() < until <= time.time() + 3600 + 7 * 86400 + 5
    proxy.record(named)
    proxy.record({"capsul-other": ["capsul-other ssh-ed25519 AAAA sshpin-until=1"]})  # past
    proxy.record({"capsul-pinned": ["capsul-pinned ssh-ed25519 BBBB"]})  # no limit: kept
    text = managed(env)
    assert "capsul-other" not in text and "capsul-pinned" in text and "capsul-test1" in text
    proxy.record({"capsul-pinned": []}, now=until + 1)  # time passes past test1's limit
    assert managed(env) == ""


def test_a_host_the_cache_no_longer_vouches_for_loses_its_lines(
    env: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    proxy.record(proxy.target("127.0.0.1", 22)[1])
    assert "127.0.0.1 ssh-ed25519" in managed(env)
    env.run("cache", "clear", "--all")
    provider.api.status_override = 503  # and the provider cannot vouch for it now
    address, lines = proxy.target("127.0.0.1", 22)
    assert (address, lines) == ("127.0.0.1", {"127.0.0.1": []})
    proxy.record(lines)
    assert managed(env) == ""


def test_an_alias_loses_its_lines_once_nothing_vouches_for_it(
    env: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """``%k`` (here a pinned name: ``Host web`` / ``HostName 127.0.0.1`` with a HostKeyAlias)
    gets the pin's lines beside the address's; after ``unpin`` the next connection drops both,
    so a key the user unpinned is trusted under no name."""
    done = env.run("pin", "web.example.com", stdin=keys.pub(keys.host) + "\n")
    assert done.returncode == 0, done.stderr
    address, lines = proxy.target("127.0.0.1", 22, "web.example.com")
    assert address == "127.0.0.1" and set(lines) == {"127.0.0.1", "web.example.com"}
    proxy.record(lines)
    written = {line.split()[0] for line in managed(env).splitlines()}
    assert written == {"127.0.0.1", "web.example.com"}
    assert env.run("unpin", "web.example.com").returncode == 0
    provider.api.status_override = 503  # nothing else vouches for the address either
    address, lines = proxy.target("127.0.0.1", 22, "web.example.com")
    assert lines == {"127.0.0.1": [], "web.example.com": []}
    proxy.record(lines)
    assert managed(env) == ""
