"""One message per problem per ssh connection: ssh runs the hook two or three times per
connection (ORDER, HOSTNAME), and each call meets the same problem. Counted with real ssh."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import SSH, TOKEN, Keys
from tests.refserver import ReferenceServer

pytestmark = pytest.mark.slow


def sshpin_lines(ssh: SSH) -> list[str]:
    done = ssh.ssh("true")
    return [line for line in done.stderr.splitlines() if line.startswith("sshpin:")]


def provider_down(ssh: SSH, provider: ReferenceServer, keys: Keys) -> str:
    provider.stop()
    return "cannot connect"


def stale(ssh: SSH, provider: ReferenceServer, keys: Keys) -> str:
    assert ssh.ssh("true").returncode == 0
    ssh.pin.expire(2 * 3600)
    provider.stop()
    return "(stale)"


def forged(ssh: SSH, provider: ReferenceServer, keys: Keys) -> str:
    assert ssh.ssh("true").returncode == 0
    ssh.sshd.restart([keys.forged])
    return "is not one provider 'capsul' vouches for"


def bad_config(ssh: SSH, provider: ReferenceServer, keys: Keys) -> str:
    ssh.pin.write_config(extra="colour = 1\n")
    return "unknown key 'colour'"


def token_rejected(ssh: SSH, provider: ReferenceServer, keys: Keys) -> str:
    ssh.pin.env["SSHPIN_TOKEN_CAPSUL"] = TOKEN + "-wrong"
    return "token"


Mode = Callable[[SSH, ReferenceServer, Keys], str]


@pytest.mark.parametrize(
    "mode", [provider_down, stale, forged, bad_config, token_rejected], ids=lambda m: m.__name__
)
def test_each_problem_is_said_once_per_connection(
    ssh: SSH, provider: ReferenceServer, keys: Keys, mode: Mode
) -> None:
    words = mode(ssh, provider, keys)
    for _ in range(2):  # and again on the next connection: once each
        lines = sshpin_lines(ssh)
        assert len(lines) == 1, lines
        assert words in lines[0], lines
        assert lines[0].startswith(("sshpin: 127.0.0.1: ", "sshpin: [127.0.0.1]:")), lines


def test_a_manual_hook_call_is_never_silenced(ssh: SSH, provider: ReferenceServer) -> None:
    provider.stop()
    for _ in range(2):
        done = ssh.pin.hook("ORDER", "capsul-test1")
        assert "cannot connect" in done.stderr
