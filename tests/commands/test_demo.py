"""The README's main command: ``sshpin demo``, run as a user would run it."""

from __future__ import annotations

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
