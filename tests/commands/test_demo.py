"""The README's main command: ``sshpin demo``, run as a user would run it."""

from __future__ import annotations

import shlex

import pytest

from tests.conftest import Pin

pytestmark = pytest.mark.slow


def test_demo_shows_first_connection_forged_key_and_cache(pin: Pin) -> None:
    done = pin.run("demo", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "hello from the capsul" in out
    assert "exit status 0: connected" in out
    assert "Host key verification failed" in out and "REFUSED" in out
    assert "capsul-demo1 (matched by address)" in out and "SHA256:" in out
    assert "Known_hosts is still 0 bytes" in out
    assert out.rstrip().endswith("demo: OK")

    # each ssh command is shown exactly as run: the demo's own config, key, port and known_hosts
    work = out.split("working in ", 1)[1].split(" ", 1)[0]
    shown = [shlex.split(line.strip()[2:]) for line in out.splitlines() if "   $ " in line]
    assert [argv[-1] for argv in shown] == ["echo hello from the capsul", "echo this must not run"]
    for argv in shown:
        assert argv[:5] == ["ssh", "-F", f"{work}/ssh_config", "-i", f"{work}/client_ed25519"]
        assert argv[5] == "-p" and f"127.0.0.1:{argv[6]}" in out
        assert argv[7:10] == ["-o", f"UserKnownHostsFile={work}/known_hosts", "127.0.0.1"]
