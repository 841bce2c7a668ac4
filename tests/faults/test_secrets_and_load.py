"""Secrets never leak; 200 parallel cold hook calls make one request; 10,000 cached hits with
the provider down leak no file descriptor or temp file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SSHPIN, TOKEN, Keys, Pin
from tests.refserver import ReferenceServer


def all_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_the_token_appears_nowhere(pin: Pin, provider: ReferenceServer, keys: Keys,
                                   tmp_path: Path) -> None:  # fmt: skip
    provider.api.add("capsul-s", [keys.pub(keys.host)])
    script = tmp_path / "token.sh"
    script.write_text(f"#!/bin/sh\necho {TOKEN}\n")
    script.chmod(0o700)
    del pin.env["SSHPIN_TOKEN_CAPSUL"]
    pin.write_config(extra=f'token_command = "{script}"\n')
    outputs = []
    for override in (None, 401, 500, None):
        provider.api.status_override = override
        pin.run("cache", "clear", "--all")
        for args in (["-v", "known-hosts", "ORDER", "capsul-s"],
                     ["-v", "cache", "refresh", "--all"], ["doctor", "--json"],
                     ["fingerprints", "capsul-s"]):  # fmt: skip
            done = subprocess.run([SSHPIN, *args], env=pin.env, capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            outputs.append(done.stdout + done.stderr)
            assert TOKEN not in " ".join(done.args)
    assert any("token rejected" in o for o in outputs)  # the 401 was reported...
    assert not [o for o in outputs if TOKEN in o]  # ...without the token, at any verbosity
    assert TOKEN.encode() not in all_text(pin.cache)
    assert TOKEN.encode() not in all_text(pin.dir / "cache")


def test_a_config_with_a_token_command_others_may_write_is_refused(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-s", [keys.pub(keys.host)])
    pin.write_config(extra='token_command = "echo stolen"\n')
    pin.config.chmod(0o664)
    done = pin.hook("ORDER", "capsul-s")
    assert done.stdout == "" and "writable by group or others" in done.stderr
    assert provider.api.count() == 0


@pytest.mark.slow
def test_200_parallel_cold_hook_calls_make_one_request(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-p", [keys.pub(keys.host)])
    want = f"capsul-p {' '.join(keys.pub(keys.host).split()[:2])}\n"
    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(lambda _: pin.hook("ORDER", "capsul-p", timeout=120),
                                range(200)))  # fmt: skip
    assert [r.stdout for r in results] == [want] * 200
    assert all(r.returncode == 0 and r.stderr == "" for r in results)
    assert provider.api.count() == 1, provider.api.queries


def test_10000_cached_hits_with_the_provider_down_leak_nothing(
    pin: Pin, provider: ReferenceServer, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.api.add("capsul-p", [keys.pub(keys.host)])
    assert pin.hook("ORDER", "capsul-p").stdout
    provider.stop()  # down for good
    for name, value in pin.env.items():
        if name.startswith("SSHPIN_"):
            monkeypatch.setenv(name, value)
    from sshpin.hook import main

    args = ["HOSTNAME", "[capsul-p]:22", *keys.pub(keys.host).split()[:2]]
    want = f"[capsul-p]:22 {' '.join(keys.pub(keys.host).split()[:2])}\n"
    fds_before = len(os.listdir("/proc/self/fd"))
    wrong = 0
    for _ in range(10_000):
        out = io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        status = main(args)
        wrong += status != 0 or out.getvalue() != want
    monkeypatch.undo()
    assert wrong == 0
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert not list(pin.cache.rglob(".tmp.*"))
