"""``sshpin publish``: static, signed host keys that plain ``ssh-keygen -Y verify`` accepts and
real ssh, through sshpin, pins from a plain static HTTPS server, document and url modes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from tests.conftest import SSH, SSHPIN, Keys, Pin, Static


@pytest.fixture
def collected(tmp_path: Path, keys: Keys) -> Path:
    """Host keys as an operator collects them: <host>/ssh_host_*_key.pub."""
    root = tmp_path / "collected"
    for host, pub in (("capsul-web1", keys.host), ("db1.example.org", keys.rebuilt)):
        (root / host).mkdir(parents=True)
        shutil.copy(pub + ".pub", root / host / "ssh_host_ed25519_key.pub")
    return root


@pytest.fixture
def ops(tmp_path: Path) -> tuple[str, str]:
    path = str(tmp_path / "ops")
    return keygen(path, comment="ops signing key"), path


def publish(pin: Pin, *args: str) -> subprocess.CompletedProcess[str]:
    return pin.run("publish", *args)


def verify(signer_pub: str, data: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    allowed = tmp / "allowed_signers"
    allowed.write_text(f"ops {signer_pub}\n")
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "ops", "-n", "sshpin-hostkeys",
         "-s", f"{data}.sig"],
        stdin=data.open("rb"), capture_output=True, text=True,
    )  # fmt: skip


def test_publish_writes_what_ssh_keygen_verifies(
    pin: Pin, collected: Path, ops: tuple[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = publish(pin, "--keys-dir", str(collected), "--account", "ops@example.org",
                   "--api-url", "https://keys.example.org/api", "--out", str(out),
                   "--sign-key", ops[1])  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = ("capsuls", "hostkeys/capsul-web1.pub", "hostkeys/db1.example.org.pub")
    for data in (out / name for name in files):
        result = verify(ops[0], data, tmp_path)
        assert result.returncode == 0, (data, result.stderr)
    assert (
        (out / "hostkeys/db1.example.org.pub")
        .read_text()
        .startswith("# sshpin-hostkeys v1 host=db1.example.org generated_at=")
    )
    assert '"capsul-web1"' in (out / "capsuls").read_text()  # only capsul ids in the document
    assert "db1" not in (out / "capsuls").read_text()


def test_a_key_sshpin_would_refuse_is_named_and_nothing_is_written(
    pin: Pin, collected: Path, ops: tuple[str, str], tmp_path: Path
) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f",
                    str(tmp_path / "weak")], check=True)  # fmt: skip
    shutil.copy(tmp_path / "weak.pub", collected / "capsul-web1" / "ssh_host_rsa_key.pub")
    out = tmp_path / "out"
    done = publish(pin, "--keys-dir", str(collected), "--account", "a", "--api-url",
                   "https://k.example/api", "--out", str(out), "--sign-key", ops[1])  # fmt: skip
    assert done.returncode == 1
    assert "ssh_host_rsa_key.pub" in done.stderr and "1024" in done.stderr, done.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.fixture
def agent(tmp_path: Path, ops: tuple[str, str]) -> Iterator[dict[str, str]]:
    """An ssh-agent holding the signing key; the private key file is then removed."""
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    env = {**os.environ, "SSH_AUTH_SOCK": sock}
    for _ in range(100):
        if os.path.exists(sock):
            break
        subprocess.run(["sleep", "0.05"])
    subprocess.run(["ssh-add", "-q", ops[1]], env=env, check=True, capture_output=True)
    os.unlink(ops[1])
    yield env
    proc.terminate()
    proc.wait()


@pytest.mark.slow
def test_real_ssh_pins_from_published_static_files_signed_in_the_agent(
    ssh: SSH, static: Static, keys: Keys, ops: tuple[str, str], agent: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # the sshd of the ssh fixture is capsul-web1 at 127.0.0.1: collect its key
    collected = tmp_path / "c"
    (collected / "capsul-web1").mkdir(parents=True)
    shutil.copy(keys.host + ".pub", collected / "capsul-web1" / "ssh_host_ed25519_key.pub")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        '{"account": "alice@example.org", "machines": [{"host": "127.0.0.1", "capsul": '
        f'"capsul-web1", "ipv4": "127.0.0.1", "keys": ["{keys.pub(keys.host)}"]}}]}}'
    )
    api = static.url + "/api"
    assert not Path(ops[1]).exists()  # the private key is in the agent only
    done = subprocess.run(
        [SSHPIN, "publish", "--inventory", str(inventory), "--api-url", api,
         "--out", str(static.root / "api"), "--sign-key", ops[1] + ".pub"],
        env={**ssh.pin.env, "SSH_AUTH_SOCK": agent["SSH_AUTH_SOCK"]}, capture_output=True,
        text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # document mode: a capsul provider whose api_url is the static tree
    ssh.pin.write_config(extra=f'signing_keys = ["{ops[0]}"]\n')
    ssh.pin.config.write_text(ssh.pin.config.read_text().replace(ssh.pin.api_url, api))
    connected = ssh.ssh("echo", "static")
    assert connected.returncode == 0 and connected.stdout == "static\n", connected.stderr
    assert Path(ssh.known_hosts).read_text() == ""
    # url mode: the per-host files of the same tree
    ssh.pin.config.write_text(
        '[[provider]]\nname = "bucket"\ntype = "url"\nhosts = ["127.0.0.1"]\n'
        f'url = "{api}/hostkeys/{{host}}.pub"\nsigning_keys = ["{ops[0]}"]\n'
        f'ca_bundle = "{ssh.pin.ca_path}"\nports = [{ssh.sshd.port}]\n'
    )
    connected = ssh.ssh("echo", "static-url")
    assert connected.returncode == 0 and connected.stdout == "static-url\n", connected.stderr
