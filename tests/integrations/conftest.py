"""In-process clients (paramiko, asyncssh, the API) see the test user's sshpin: its config,
cache and HOME, through the environment, as a program using the API would."""

from __future__ import annotations

import pytest

from tests.conftest import Pin


@pytest.fixture
def env(pin: Pin, monkeypatch: pytest.MonkeyPatch) -> Pin:
    for name in list(__import__("os").environ):
        if name.startswith(("SSHPIN_", "XDG_")):
            monkeypatch.delenv(name)
    for name, value in pin.env.items():
        if name.startswith("SSHPIN_") or name == "HOME":
            monkeypatch.setenv(name, value)
    return pin
