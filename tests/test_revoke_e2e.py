"""End to end, real ssh and sshd: the provider's word outranks a stale line in the user's own
known_hosts. ssh accepts a server key that any source holds; for a host sshpin vouches for,
the hook names the server's key ``@revoked`` when it is not among the vouched keys, so a line
left over for it (the previous machine at a reused address, a trust-on-first-use from before
sshpin) no longer lets its holder in. Where sshpin has nothing for the host, that line is
still the user's fallback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import SSH, Keys
from tests.refserver import ReferenceServer

pytestmark = pytest.mark.slow


def stale_line(ssh: SSH, keys: Keys) -> None:
    """The attacker's (an old) key for the capsul's address, in the user's own known_hosts."""
    key_type, b64 = keys.pub(keys.forged).split()[:2]
    Path(ssh.known_hosts).write_text(f"[127.0.0.1]:{ssh.sshd.port} {key_type} {b64}\n")


def test_a_stale_line_does_not_let_another_key_in(ssh: SSH, keys: Keys) -> None:
    stale_line(ssh, keys)
    real = ssh.ssh("echo", "real-ok")  # the authentic sshd: the provider vouches for its key
    assert real.returncode == 0, real.stderr
    assert real.stdout.strip() == "real-ok"
    ssh.sshd.restart([keys.forged])  # the holder of the stale line's key answers now
    refused = ssh.ssh("echo", "must-not-run")
    assert refused.returncode == 255, refused.stderr
    assert "must-not-run" not in refused.stdout
    assert "REVOKED" in refused.stderr
    assert "Host key verification failed" in refused.stderr
    assert "vouches for capsul-test1 (told to ssh as revoked, whatever your" in refused.stderr
    ssh.sshd.restart([keys.host])
    again = ssh.ssh("echo", "real-again")
    assert again.returncode == 0, again.stderr


def test_a_stale_line_is_refused_while_the_refetch_is_rate_limited(
    ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    """The cached entry still vouches when the mismatch refetch is not made (30 s limit)."""
    stale_line(ssh, keys)
    assert ssh.ssh("true").returncode == 0
    ssh.sshd.restart([keys.forged])
    assert ssh.ssh("true").returncode == 255
    assert provider.api.count() == 2  # the one mismatch refetch
    refused = ssh.ssh("echo", "must-not-run")
    assert provider.api.count() == 2  # within 30 s: no request, the cached entry answers
    assert refused.returncode == 255
    assert "REVOKED" in refused.stderr


def test_a_stale_line_is_refused_while_the_provider_is_down_within_stale_if_error(
    ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    stale_line(ssh, keys)
    assert ssh.ssh("true").returncode == 0
    ssh.pin.expire(2 * 3600)  # past ttl (1 h), within stale_if_error (7 d)
    provider.stop()
    ssh.sshd.restart([keys.forged])
    refused = ssh.ssh("echo", "must-not-run")
    assert refused.returncode == 255
    assert "REVOKED" in refused.stderr


def test_the_users_line_still_works_when_the_provider_knows_nothing_of_the_host(
    ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    with provider.api.lock:  # the capsul is not (or no longer) in the account
        provider.api.capsuls.clear()
        provider.api.changed_at = time.time()
    stale_line(ssh, keys)
    ssh.sshd.restart([keys.forged])
    done = ssh.ssh("echo", "by-hand")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "by-hand"
    assert "REVOKED" not in done.stderr


def test_the_users_line_still_works_when_the_provider_is_down_with_nothing_cached(
    ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    provider.stop()
    stale_line(ssh, keys)
    ssh.sshd.restart([keys.forged])
    done = ssh.ssh("echo", "by-hand")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "by-hand"
