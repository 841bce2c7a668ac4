"""asyncssh pins the keys the hook pins: real asyncssh against the tests' real sshd, no
known_hosts file anywhere (issue 22)."""

from __future__ import annotations

import asyncio
import getpass
from typing import Any

import asyncssh
import pytest

from sshpin.integrations.asyncssh import KnownHosts, SshpinClient, known_hosts
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer


def run(ssh: SSH, **options: Any) -> str:
    """``echo ok`` on the sshd through asyncssh; what it printed."""

    async def main() -> str:
        async with asyncssh.connect(
            "127.0.0.1",
            port=ssh.sshd.port,
            username=getpass.getuser(),
            client_keys=[ssh.keys.client],
            agent_path=None,
            config=[],
            connect_timeout=20,
            **options,
        ) as conn:
            done = await conn.run("echo ok", check=True)
            return str(done.stdout).strip()

    return asyncio.run(main())


def pinned(ssh: SSH) -> str:
    return run(ssh, known_hosts=known_hosts, client_factory=SshpinClient)


def test_pinned_key_accepted_with_no_known_hosts_file(
    env: Pin, ssh: SSH, provider: ReferenceServer
) -> None:
    assert not (env.dir / ".ssh" / "known_hosts").exists()
    assert pinned(ssh) == "ok"
    assert run(ssh, known_hosts=known_hosts) == "ok"  # the callable alone, from the cache
    assert provider.api.count() == 1


def test_forged_key_refused(env: Pin, ssh: SSH, keys: Keys) -> None:
    ssh.sshd.restart([keys.forged])
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        pinned(ssh)


def test_rotated_key_accepted_once_the_provider_lists_it(
    env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    assert pinned(ssh) == "ok"
    ssh.sshd.restart([keys.rebuilt])  # the capsul is rebuilt; its provider lists the new key
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    assert pinned(ssh) == "ok"  # SshpinClient offers the new key: refetched, then trusted
    assert provider.api.count() == 2


def test_revoked_key_refused(env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer) -> None:
    provider.api.revoke([keys.pub(keys.forged)])
    ssh.sshd.restart([keys.forged])
    with pytest.raises(asyncssh.HostKeyNotVerifiable, match="revoked"):
        pinned(ssh)


def test_unmanaged_host_is_left_to_asyncssh_s_own_known_hosts(
    env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    env.write_config(hosts='["capsul-*"]')  # 127.0.0.1 is no longer sshpin's
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        pinned(ssh)  # no ~/.ssh/known_hosts: asyncssh trusts nothing
    user_file = env.dir / ".ssh" / "known_hosts"
    user_file.parent.mkdir()
    user_file.write_text(f"[127.0.0.1]:{ssh.sshd.port} {keys.pub(keys.host)}\n")
    assert pinned(ssh) == "ok"  # what the user's own file says
    other = env.dir / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{ssh.sshd.port} {keys.pub(keys.forged)}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(ssh, known_hosts=KnownHosts(fallback=str(other)), client_factory=SshpinClient)
    assert provider.api.count() == 0


def test_managed_host_without_authentic_keys_is_refused(
    env: Pin, ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    user_file = env.dir / ".ssh" / "known_hosts"
    user_file.parent.mkdir()
    user_file.write_text(f"[127.0.0.1]:{ssh.sshd.port} {keys.pub(keys.host)}\n")
    provider.api.status_override = 503  # the provider is down and nothing is cached
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        pinned(ssh)  # managed: sshpin refuses, the user's file is not asked
