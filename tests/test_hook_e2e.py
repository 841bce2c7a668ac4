"""End to end: real ssh, scp, rsync and git through the hook, against a real sshd."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SSH, Keys
from tests.refserver import ReferenceServer

pytestmark = pytest.mark.slow


def test_ssh_connects_with_empty_known_hosts_and_strict_checking(ssh: SSH) -> None:
    done = ssh.ssh("echo", "pinned-ok")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pinned-ok"
    assert Path(ssh.known_hosts).read_text() == ""  # nothing trusted on first use
    assert "sshpin" not in done.stderr


def test_capsul_id_as_host_key_alias(ssh: SSH) -> None:
    done = ssh.tool(
        "ssh", *ssh.base(), "-p", str(ssh.sshd.port), "-o", "HostKeyAlias=capsul-test1",
        "127.0.0.1", "true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_scp_both_ways(ssh: SSH, tmp_path: Path) -> None:
    src = tmp_path / "up.txt"
    src.write_bytes(b"payload\x00\xff" * 1000)
    remote = f"root@127.0.0.1:{tmp_path}/remote.txt"
    up = ssh.tool("scp", *ssh.base(), "-P", str(ssh.sshd.port), str(src), remote)
    assert up.returncode == 0, up.stderr
    down = ssh.tool("scp", *ssh.base(), "-P", str(ssh.sshd.port), remote, str(tmp_path / "d"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "d").read_bytes() == src.read_bytes()


def test_rsync_copies_a_tree(ssh: SSH, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.txt").write_text("b\n")
    dest = tmp_path / "copy"
    done = ssh.tool("rsync", "-a", "-e", ssh.command(), f"{tree}/", f"root@127.0.0.1:{dest}/")
    assert done.returncode == 0, done.stderr
    assert (dest / "sub" / "b.txt").read_text() == "b\n"


def test_git_clone_and_push(ssh: SSH, tmp_path: Path) -> None:
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    env = dict(ssh.pin.env, GIT_SSH_COMMAND=ssh.command())
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t")
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    url = f"ssh://root@127.0.0.1:{ssh.sshd.port}{bare}"
    work = tmp_path / "work"

    def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
        )

    assert git("clone", "-q", url, str(work)).returncode == 0
    (work / "f.txt").write_text("hello\n")
    assert git("add", "f.txt", cwd=work).returncode == 0
    assert git("commit", "-qm", "first", cwd=work).returncode == 0
    pushed = git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    log = subprocess.run(["git", "-C", str(bare), "log", "--format=%s", "main"], text=True,
                         capture_output=True)  # fmt: skip
    assert log.stdout.strip() == "first"


def test_forged_key_refused_with_one_rate_limited_refetch(
    ssh: SSH, keys: Keys, provider: ReferenceServer
) -> None:
    assert ssh.ssh("true").returncode == 0
    assert provider.api.count() == 1
    ssh.sshd.restart([keys.forged])
    refused = ssh.ssh("echo", "must-not-run")
    assert refused.returncode == 255
    assert "must-not-run" not in refused.stdout
    assert "Host key verification failed" in refused.stderr
    assert "is not one provider 'capsul' vouches for capsul-test1" in refused.stderr
    assert provider.api.count() == 2  # exactly one mismatch refetch
    again = ssh.ssh("true")
    assert again.returncode == 255
    assert provider.api.count() == 2  # within 30 s: no further request

    # The capsul is rebuilt: the provider now lists the new key. Once the 30 s of the rate
    # limit have passed (aged here by moving the mark back), the next connection refetches.
    provider.api.set_keys("capsul-test1", [keys.pub(keys.forged)])
    ssh.pin.age_mismatch_marks()
    rebuilt = ssh.ssh("echo", "rebuilt-ok")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == "rebuilt-ok"
    assert provider.api.count() == 3
    history = (ssh.pin.cache / "history.log").read_text()
    assert '"event": "changed"' in history


def test_sixteen_concurrent_cold_connections_make_one_request(
    ssh: SSH, provider: ReferenceServer
) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: ssh.ssh("echo", str(i)), range(16)))
    for i, done in enumerate(results):
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(i)
    assert provider.api.count() == 1


def test_provider_down_fresh_cache_is_silent(ssh: SSH, provider: ReferenceServer) -> None:
    assert ssh.ssh("true").returncode == 0
    provider.stop()
    done = ssh.ssh("echo", "ok")
    assert done.returncode == 0
    assert done.stderr == ""


def test_provider_down_stale_cache_warns_once(ssh: SSH, provider: ReferenceServer) -> None:
    assert ssh.ssh("true").returncode == 0
    ssh.pin.expire(2 * 3600)  # past ttl (1h), within stale_if_error (7d)
    provider.stop()
    done = ssh.ssh("echo", "ok")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("sshpin:")]
    # ssh calls the hook twice (ORDER, HOSTNAME); the stale serve is said once.
    assert len(warnings) == 1 and "(stale)" in warnings[0] and "cannot connect" in warnings[0]


def test_provider_down_nothing_usable_fails_closed_but_users_own_key_works(
    ssh: SSH, provider: ReferenceServer, keys: Keys
) -> None:
    provider.stop()
    refused = ssh.ssh("echo", "must-not-run")
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    reasons = [line for line in refused.stderr.splitlines() if line.startswith("sshpin:")]
    assert reasons and all("cannot connect" in line for line in reasons)
    # A key the user verified by hand, in their own known_hosts, still lets them in:
    # the hook exited 0, so ssh went on to the user's file.
    host_type, host_b64 = keys.pub(keys.host).split()[:2]
    line = f"[127.0.0.1]:{ssh.sshd.port} {host_type} {host_b64}\n"
    Path(ssh.known_hosts).write_text(line)
    done = ssh.ssh("echo", "by-hand")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "by-hand"


def test_provider_down_then_expired_past_stale_window(ssh: SSH, provider: ReferenceServer) -> None:
    assert ssh.ssh("true").returncode == 0
    ssh.pin.expire(8 * 86400)  # past ttl + stale_if_error
    provider.stop()
    done = ssh.ssh("true")
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr


def test_unmanaged_host_untouched(ssh: SSH, provider: ReferenceServer) -> None:
    done = ssh.pin.hook("HOSTNAME", "[example.org]:22", "NONE", "NONE")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert provider.api.count() == 0
    assert not (ssh.pin.cache / "capsul").exists()
