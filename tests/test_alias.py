"""An ssh alias names its capsul: ``Host capsul-x`` / ``HostName <address>``, no HostKeyAlias.

ssh hands the hook ``%H`` = the address and ``%k`` = the name typed; the provider's ``hosts``
name only ``capsul-*``. The hook resolves ``%k`` first, so the capsul is pinned; doctor flags
such a block when nothing covers it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sshpin.commands.doctor import capsul_blocks
from tests.conftest import HOOK, SSH, Keys, Pin
from tests.refserver import ReferenceServer

pytestmark = pytest.mark.slow


def alias_config(ssh: SSH, path: Path, hosts: str = "capsul-*") -> Path:
    path.write_text(
        "Host capsul-test1\n"
        "    HostName 127.0.0.1\n"
        f"    Port {ssh.sshd.port}\n"
        f"Host {hosts}\n"
        f"    KnownHostsCommand {' '.join(HOOK)} known-hosts %I %H %t %K %k %p\n"
        "    StrictHostKeyChecking yes\n"
        "Host *\n"
        "    GlobalKnownHostsFile /dev/null\n    BatchMode yes\n    IdentitiesOnly yes\n"
        "    User root\n    LogLevel ERROR\n    ConnectTimeout 10\n"
    )
    return path


def run_ssh(ssh: SSH, config: Path, *remote: str) -> tuple[int, str, str]:
    done = ssh.tool(
        "ssh", "-F", str(config), "-i", ssh.keys.client,
        "-o", f"UserKnownHostsFile={ssh.known_hosts}", "capsul-test1", *remote,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_a_host_block_with_a_hostname_is_pinned_by_its_name(
    ssh: SSH, keys: Keys, provider: ReferenceServer, tmp_path: Path
) -> None:
    ssh.pin.write_config(hosts='["capsul-*"]')  # the address is named by no provider
    config = alias_config(ssh, tmp_path / "alias_config")
    status, out, err = run_ssh(ssh, config, "echo", "by-name")
    assert (status, out) == (0, "by-name\n"), err
    assert "sshpin" not in err
    assert Path(ssh.known_hosts).read_text() == ""  # nothing trusted on first use
    assert provider.api.count() == 1

    ssh.sshd.restart([keys.forged])
    status, out, err = run_ssh(ssh, config, "echo", "must-not-run")
    assert status == 255 and "must-not-run" not in out
    assert "Host key verification failed" in err
    assert "is not one provider 'capsul' vouches for capsul-test1" in err
    assert Path(ssh.known_hosts).read_text() == ""


def test_the_old_four_word_hook_still_works_for_addresses(ssh: SSH, tmp_path: Path) -> None:
    """Snippets written before %k %p: the hook still parses them and pins by %H."""
    config = Path(ssh.config)
    config.write_text(config.read_text().replace(" %k %p\n", "\n"))
    assert " %k" not in config.read_text()
    done = ssh.ssh("echo", "old-snippet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "old-snippet\n"


def test_doctor_flags_a_capsul_block_nothing_covers(ssh: SSH, pin: Pin, tmp_path: Path) -> None:
    text = "Host capsul-web web\n  HostName 203.0.113.7\nHost *\n  HostName x\nHost box\n"
    text += "  HostName capsul-abc\nMatch host capsul-m\n  HostName 198.51.100.1\n"
    assert capsul_blocks(text) == [("capsul-web", "203.0.113.7"), ("box", "capsul-abc")]

    user = tmp_path / "user_config"
    assert pin.run("setup", "--ssh-config", str(user)).returncode == 0
    with user.open("a") as f:
        f.write("Host capsul-test1\n    HostName 127.0.0.1\n")
    done = pin.run("doctor", "--json", "--offline", "--ssh-config", str(user))
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["host capsul-test1"]["ok"] is True, checks

    pin.write_config(hosts='["*.example.org"]')
    assert pin.run("setup", "--ssh-config", str(user)).returncode == 0
    done = pin.run("doctor", "--json", "--offline", "--ssh-config", str(user))
    assert done.returncode == 1
    check = {c["check"]: c for c in json.loads(done.stdout)["checks"]}["host capsul-test1"]
    assert check["ok"] is False
    assert "Host capsul-test1 (HostName 127.0.0.1) looks like a capsul" in check["detail"]
    assert "'capsul-test1'" in check["fix"] and "hosts" in check["fix"]
