"""A hostile provider: smuggled lines, lying fingerprints, weak keys. None of it reaches ssh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer, host_key_entry


@pytest.fixture
def smuggled_ca(tmp_path: Path) -> tuple[str, str]:
    """A CA key pair the attacker controls: (private key path, public line)."""
    path = str(tmp_path / "evil_ca")
    return path, keygen(path, comment="evil CA")


def _hostile_entries(keys: Keys, ca_pub: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    good = host_key_entry(keys.pub(keys.host))
    ca_type, ca_b64 = ca_pub.split()[:2]
    smuggle = f"\n@cert-authority * {ca_type} {ca_b64}"
    dsa = tmp_path / "dsa"
    rsa = tmp_path / "rsa1024"
    subprocess.run(["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", str(dsa)], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa)], check=True
    )
    dsa_type, dsa_b64 = (dsa.with_suffix(".pub")).read_text().split()[:2]
    rsa_type, rsa_b64 = (rsa.with_suffix(".pub")).read_text().split()[:2]
    return {
        "capsul-typenl": {**good, "key_type": good["key_type"] + smuggle},
        "capsul-contentnl": {**good, "content": good["content"] + smuggle},
        "capsul-badfp": {**good, "sha256": "SHA256:" + "A" * 43},
        "capsul-fpnl": {**good, "sha256": good["sha256"] + smuggle},
        "capsul-typelie": {**good, "key_type": "ssh-rsa"},
        "capsul-dss": {"key_type": dsa_type, "content": dsa_b64, "sha256": "SHA256:x"},
        "capsul-rsa1024": {"key_type": rsa_type, "content": rsa_b64, "sha256": "SHA256:x"},
    }


def test_hostile_key_strings_never_printed(
    pin: Pin, provider: ReferenceServer, keys: Keys, smuggled_ca: tuple[str, str], tmp_path: Path
) -> None:
    ca_b64 = smuggled_ca[1].split()[1]
    entries = _hostile_entries(keys, smuggled_ca[1], tmp_path)
    for capsul_id, key in entries.items():
        provider.api.add_raw(
            {"id": capsul_id, "name": "x\n@cert-authority * evil", "state": "running",
             "ipv4": None, "ipv6": None, "ssh_host_keys": [key]}
        )  # fmt: skip
    for capsul_id in entries:
        done = pin.hook("HOSTNAME", capsul_id, "NONE", "NONE")
        assert done.returncode == 0
        assert done.stdout == "", capsul_id
        assert ca_b64 not in done.stderr and "\n@" not in done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"sshpin: {capsul_id}: "), lines
    assert provider.api.count() <= 1 + len(entries)


def test_host_certificate_from_smuggled_ca_refused(
    ssh: SSH, keys: Keys, provider: ReferenceServer, smuggled_ca: tuple[str, str], tmp_path: Path
) -> None:
    ca_path, ca_pub = smuggled_ca
    # The attacker's server: a host key certified by the smuggled CA for every name involved.
    evil = str(tmp_path / "evil_host")
    evil_pub = keygen(evil)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", ca_path, "-h", "-I", "evil", "-n",
         "127.0.0.1,capsul-evil,capsul-test1", evil + ".pub"],
        check=True,
    )  # fmt: skip
    good = host_key_entry(evil_pub)
    ca_type, ca_b64 = ca_pub.split()[:2]
    provider.api.add_raw(
        {"id": "capsul-evil", "name": "evil", "state": "running", "ipv4": None, "ipv6": None,
         "ssh_host_keys": [{**good, "content": good["content"] +
                            f"\n@cert-authority * {ca_type} {ca_b64}"}]}
    )  # fmt: skip
    ssh.sshd.restart([evil], extra=[f"HostCertificate {evil}-cert.pub"])
    for alias in ("capsul-evil", "capsul-test1"):
        done = ssh.tool(
            "ssh", *ssh.base(), "-p", str(ssh.sshd.port), "-o", f"HostKeyAlias={alias}",
            "127.0.0.1", "echo", "must-not-run",
        )  # fmt: skip
        assert done.returncode == 255, alias
        assert "must-not-run" not in done.stdout
        assert "Host key verification failed" in done.stderr
