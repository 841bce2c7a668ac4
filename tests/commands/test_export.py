"""``sshpin export``: a known_hosts file stock ssh accepts with no hook, which drops what the
cache no longer vouches for (issue 22)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sshpin.commands.export import HEADER, write
from tests.conftest import SSH, SSHPIN, Keys
from tests.refserver import ReferenceServer


def plain_ssh(ssh: SSH, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    """OpenSSH with no sshpin at all: no config file, no KnownHostsCommand, only ``known_hosts``."""
    return ssh.tool(
        "ssh", "-F", "/dev/null", "-i", ssh.keys.client, "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
        "-p", str(ssh.sshd.port), "127.0.0.1", "echo", "ok",
    )  # fmt: skip


def test_exported_file_pins_the_host_for_plain_ssh(
    ssh: SSH, keys: Keys, provider: ReferenceServer, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    token = f"[127.0.0.1]:{ssh.sshd.port}"
    done = ssh.pin.run("export", token, "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1].startswith(f"{token} ssh-ed25519 ") and " sshpin-until=" in lines[1]
    assert (out.stat().st_mode & 0o777) == 0o644
    accepted = plain_ssh(ssh, out)
    assert (accepted.returncode, accepted.stdout) == (0, "ok\n"), accepted.stderr

    ssh.sshd.restart([keys.forged])
    refused = plain_ssh(ssh, out)
    assert refused.returncode == 255 and refused.stdout == ""
    assert "Host key verification failed" in refused.stderr


def test_a_dropped_key_is_removed_and_revocations_are_written(
    ssh: SSH, keys: Keys, provider: ReferenceServer, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    assert ssh.pin.run("export", "--all", "-o", str(out)).returncode == 0
    old = " ".join(keys.pub(keys.host).split()[:2])
    new = " ".join(keys.pub(keys.rebuilt).split()[:2])
    assert f"capsul-test1 {old} " in out.read_text()
    assert f"127.0.0.1 {old} " in out.read_text()  # the capsul's address, as ssh may name it
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    provider.api.revoke([keys.pub(keys.host)])
    ssh.pin.expire(2 * 3600)  # past the ttl: the next lookup refetches
    done = ssh.pin.run("export", "--all", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert f"capsul-test1 {new} " in text
    assert f"@revoked capsul-test1 {old} " in text
    assert [line for line in text.splitlines() if line.startswith(f"capsul-test1 {old}")] == []

    provider.api.capsuls.clear()  # the capsul is gone from the account
    ssh.pin.expire(2 * 3600)
    done = ssh.pin.run("export", "--all", "-o", str(out))
    assert done.returncode == 0 and "capsul-test1: not a capsul of account" in done.stderr
    kept = [ln for ln in out.read_text().splitlines()[1:] if not ln.startswith("@revoked ")]
    assert kept == []  # only the account's revocations remain
    done = ssh.pin.run("export", "capsul-test1", "-o", str(out))
    assert done.returncode == 2, done.stderr  # named, and no authentic keys for it
    assert "capsul-test1: no authentic keys: no lines exported" in done.stderr


def test_lines_past_their_limit_are_not_written(tmp_path: Path) -> None:
    out = tmp_path / "f"
    write(str(out), ["a ssh-ed25519 AAAA sshpin-until=100", "b ssh-ed25519 BBBB"], now=200.0)
    assert out.read_text() == f"{HEADER}\nb ssh-ed25519 BBBB\n"


def test_watch_keeps_the_file_fresh(
    ssh: SSH, keys: Keys, provider: ReferenceServer, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    new = " ".join(keys.pub(keys.rebuilt).split()[:2])
    watcher = subprocess.Popen(
        [SSHPIN, "export", "capsul-test1", "-o", str(out), "--watch", "1"],
        env=ssh.pin.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists()
        provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
        ssh.pin.expire(2 * 3600)
        while new not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"capsul-test1 {new} " in out.read_text()
        assert watcher.poll() is None  # still watching
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_usage(ssh: SSH, tmp_path: Path) -> None:
    out = str(tmp_path / "f")
    for args in (["-o", out], ["capsul-test1", "--all", "-o", out], ["capsul-test1"],
                 ["capsul-test1", "-o", out, "--watch", "0"], ["bad host", "-o", out]):  # fmt: skip
        done = ssh.pin.run("export", *args)
        assert done.returncode == 1, args
        assert done.stderr.splitlines()[-1].startswith("sshpin: "), done.stderr
    assert not Path(out).exists()


def _ports(ssh: SSH, ports: str) -> None:
    ssh.pin.ports = ports
    ssh.pin.write_config()


def _export(ssh: SSH, token: str, out: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    if out.exists():
        out.unlink()
    done = ssh.pin.run("export", token, "-o", str(out))
    return done, out.read_text().splitlines()[1:] if out.exists() else []


def test_export_looks_the_provider_up_by_host_and_port(ssh: SSH, tmp_path: Path) -> None:
    """As the hook: a provider vouches for a host on its ``ports`` only. Export looked the
    provider up on port 22 whatever the token said, so a provider of port 2222 alone had
    ``[host]:2222`` exported with no lines (its entry dropped for want of a provider)."""
    out = tmp_path / "exported"
    port = ssh.sshd.port
    token = f"[127.0.0.1]:{port}"
    _ports(ssh, f"[{port}]")  # the provider vouches for that sshd only, not for port 22
    done, lines = _export(ssh, token, out)
    assert done.returncode == 0, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{token} ssh-ed25519 "), lines
    accepted = plain_ssh(ssh, out)
    assert (accepted.returncode, accepted.stdout) == (0, "ok\n"), accepted.stderr
    done, lines = _export(ssh, "127.0.0.1", out)  # port 22: not the provider's
    assert (done.returncode, lines) == (2, []), done.stderr
    assert "127.0.0.1: not managed by sshpin: no lines exported" in done.stderr

    _ports(ssh, "[22]")  # now the other way round
    done, lines = _export(ssh, token, out)
    assert (done.returncode, lines) == (2, []), done.stderr
    assert f"{token}: not managed by sshpin" in done.stderr
    done, lines = _export(ssh, "127.0.0.1", out)
    assert done.returncode == 0 and [ln.split()[0] for ln in lines] == ["127.0.0.1"], done.stderr

    _ports(ssh, f"[22, {port}]")  # both
    for name in (token, "127.0.0.1"):
        done, lines = _export(ssh, name, out)
        assert done.returncode == 0 and [ln.split()[0] for ln in lines] == [name], done.stderr
