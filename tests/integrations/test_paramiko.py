"""paramiko pins the keys the hook pins: real paramiko against the tests' real sshd, no
known_hosts file anywhere (issue 22)."""

from __future__ import annotations

import getpass

import paramiko
import pytest

from sshpin.integrations.paramiko import HostKeyRefused, SshpinPolicy, fill_host_keys
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer


def run(
    ssh: SSH, policy: paramiko.MissingHostKeyPolicy | None, client: paramiko.SSHClient | None = None
) -> str:
    """``echo ok`` on the sshd through paramiko; what it printed."""
    client = client or paramiko.SSHClient()
    if policy is not None:
        client.set_missing_host_key_policy(policy)
    try:
        client.connect(
            "127.0.0.1",
            port=ssh.sshd.port,
            username=getpass.getuser(),
            key_filename=ssh.keys.client,
            look_for_keys=False,
            allow_agent=False,
            timeout=20,
        )
        _, out, _ = client.exec_command("echo ok")
        return out.read().decode().strip()
    finally:
        client.close()


def test_pinned_key_accepted_with_no_known_hosts_file(
    env: Pin, ssh: SSH, provider: ReferenceServer
) -> None:
    assert not (env.dir / ".ssh" / "known_hosts").exists()
    assert run(ssh, SshpinPolicy()) == "ok"
    assert run(ssh, SshpinPolicy()) == "ok"
    assert provider.api.count() == 1  # the second connection: from the cache


def test_forged_key_refused(env: Pin, ssh: SSH, keys: Keys) -> None:
    ssh.sshd.restart([keys.forged])
    with pytest.raises(HostKeyRefused) as e:
        run(ssh, SshpinPolicy())
    assert "is not one provider 'capsul' vouches for" in str(e.value)
    assert isinstance(e.value, paramiko.SSHException)


def test_rotated_key_accepted_once_the_provider_lists_it(
    env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    assert run(ssh, SshpinPolicy()) == "ok"
    ssh.sshd.restart([keys.rebuilt])  # the capsul is rebuilt; its provider lists the new key
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    assert run(ssh, SshpinPolicy()) == "ok"  # the offered key is refetched, not refused
    assert provider.api.count() == 2


def test_revoked_key_refused(env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer) -> None:
    provider.api.revoke([keys.pub(keys.forged)])
    ssh.sshd.restart([keys.forged])
    with pytest.raises(HostKeyRefused, match="is revoked by provider 'capsul'"):
        run(ssh, SshpinPolicy())


def test_unmanaged_host_is_left_to_the_fallback_policy(
    env: Pin, ssh: SSH, provider: ReferenceServer
) -> None:
    env.write_config(hosts='["capsul-*"]')  # 127.0.0.1 is no longer sshpin's
    with pytest.raises(paramiko.SSHException) as e:
        run(ssh, SshpinPolicy())  # paramiko's RejectPolicy
    assert not isinstance(e.value, HostKeyRefused)
    assert run(ssh, SshpinPolicy(fallback=paramiko.AutoAddPolicy())) == "ok"
    assert provider.api.count() == 0


def test_managed_host_without_authentic_keys_is_refused(
    env: Pin, ssh: SSH, provider: ReferenceServer
) -> None:
    provider.api.status_override = 503  # the provider is down and nothing is cached
    with pytest.raises(HostKeyRefused, match=r"\[127\.0\.0\.1\]:\d+: .*refused"):
        run(ssh, SshpinPolicy(fallback=paramiko.AutoAddPolicy()))


def test_fill_host_keys(env: Pin, ssh: SSH, keys: Keys) -> None:
    client = paramiko.SSHClient()
    answer = fill_host_keys(client.get_host_keys(), "127.0.0.1", ssh.sshd.port)
    assert answer.managed and answer.provider == "capsul"
    assert run(ssh, None, client) == "ok"  # RejectPolicy: the filled keys alone
    ssh.sshd.restart([keys.forged])
    client = paramiko.SSHClient()
    fill_host_keys(client.get_host_keys(), "127.0.0.1", ssh.sshd.port)
    with pytest.raises(paramiko.BadHostKeyException):
        run(ssh, None, client)


def test_a_certificate_authority_alone_is_refused_saying_why(
    env: Pin, ssh: SSH, keys: Keys
) -> None:
    env.config.write_text(
        '[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["127.0.0.1"]\n'
        f'ca_keys = ["{keys.pub(keys.forged)}"]\n'
    )
    with pytest.raises(HostKeyRefused, match="paramiko does not verify host certificates"):
        run(ssh, SshpinPolicy())
