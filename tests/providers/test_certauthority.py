"""``type = "cert-authority"`` against a real sshd presenting host certificates made by the
real ``ssh-keygen -s -h``: accepted only for listed hosts, valid certificates, right
principals and the configured CA; ``revoked_keys`` refuses a key even with a good cert."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshpin.commands.demo import Sshd, keygen, write_ssh_config
from tests.conftest import HOOK, Keys, Pin

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("ca")
    keygen(str(d / "ca"), comment="container CA")
    keygen(str(d / "other-ca"), comment="another CA")
    return {"ca": str(d / "ca"), "other": str(d / "other-ca")}


def certify(ca: str, host_key: str, principals: str, validity: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-s", ca, "-I", "sshpin-test", "-h", "-n", principals,
         "-V", validity, host_key + ".pub"],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip
    return host_key + "-cert.pub"


class Lab:
    def __init__(self, tmp: Path, keys: Keys, pin: Pin, cas: dict[str, str]) -> None:
        self.tmp, self.keys, self.pin, self.cas = tmp, keys, pin, cas
        self.host_key = str(tmp / "host")
        keygen(self.host_key)
        (tmp / "authorized").write_text(keys.pub(keys.client) + "\n")
        self.sshd: Sshd | None = None
        self.config = tmp / "ssh_config"
        write_ssh_config(str(self.config), HOOK, "127.0.0.1 localhost")
        self.known = tmp / "known_hosts"
        self.known.write_text("")

    def provider(self, hosts: str, extra: str = "") -> None:
        ca_pub = Path(self.cas["ca"] + ".pub").read_text().strip()
        self.pin.config.write_text(
            '[[provider]]\nname = "containers"\ntype = "cert-authority"\n'
            f'hosts = {hosts}\nca_keys = ["{ca_pub}"]\n{extra}'
        )

    def serve(self, ca: str = "ca", principals: str = "127.0.0.1,localhost",
              validity: str = "-5m:+1h") -> None:  # fmt: skip
        cert = certify(self.cas[ca], self.host_key, principals, validity)
        if self.sshd is not None:
            self.sshd.stop()
        self.sshd = Sshd(
            str(self.tmp / "sshd"), [self.host_key], str(self.tmp / "authorized"),
            extra=[f"HostCertificate {cert}"],
        ).start()  # fmt: skip

    def ssh(self, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
        assert self.sshd is not None
        return subprocess.run(
            ["ssh", "-F", str(self.config), "-i", self.keys.client, "-p", str(self.sshd.port),
             "-o", f"UserKnownHostsFile={self.known}", host, "echo", "certified"],
            env=self.pin.env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=60,
        )  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path, keys: Keys, pin: Pin, cas: dict[str, str]) -> Iterator[Lab]:
    lab = Lab(tmp_path, keys, pin, cas)
    lab.provider('["localhost", "127.0.0.1", "::1"]')
    yield lab
    if lab.sshd is not None:
        lab.sshd.stop()


def refused(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode == 255 and "certified" not in done.stdout


def vouches_for_the_ca(lab: Lab, host: str = "127.0.0.1") -> str:
    """What sshpin printed: exactly the configured CA (so ssh, not a silent sshpin, refused)."""
    hook = lab.pin.hook("ORDER", host)
    ca_key = " ".join(Path(lab.cas["ca"] + ".pub").read_text().split()[:2])
    assert hook.stdout.splitlines()[0] == f"@cert-authority {host} {ca_key}", hook.stderr
    assert hook.stderr == ""
    return hook.stdout


def test_a_valid_certificate_for_a_listed_host_is_accepted(lab: Lab) -> None:
    lab.serve()
    done = lab.ssh("127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "certified\n"
    assert lab.known.read_text() == ""
    hook = lab.pin.hook("ORDER", "127.0.0.1")
    ca_key = " ".join(Path(lab.cas["ca"] + ".pub").read_text().split()[:2])
    assert hook.stdout == f"@cert-authority 127.0.0.1 {ca_key}\n"


def test_a_host_outside_the_list_is_refused(lab: Lab) -> None:
    lab.provider('["127.0.0.1"]')  # the certificate names localhost too, but the CA may not
    lab.serve()
    assert lab.ssh("127.0.0.1").returncode == 0
    assert refused(lab.ssh("localhost"))
    assert lab.pin.hook("ORDER", "localhost").stdout == ""


def test_an_expired_certificate_is_refused(lab: Lab) -> None:
    lab.serve(validity="20200101:20200102")
    done = lab.ssh()
    assert refused(done), done.stderr
    assert vouches_for_the_ca(lab).count("\n") == 1


def test_wrong_principals_are_refused(lab: Lab) -> None:
    lab.serve(principals="other.example")
    done = lab.ssh()
    assert refused(done), done.stderr
    assert vouches_for_the_ca(lab).count("\n") == 1


def test_a_certificate_by_another_ca_is_refused(lab: Lab) -> None:
    lab.serve(ca="other")
    done = lab.ssh()
    assert refused(done), done.stderr
    other = " ".join(Path(lab.cas["other"] + ".pub").read_text().split()[:2])
    assert other not in vouches_for_the_ca(lab)  # only the configured CA, never the server's


def test_revoked_keys_refuse_a_key_despite_its_certificate(lab: Lab) -> None:
    host_pub = " ".join(Path(lab.host_key + ".pub").read_text().split()[:2])
    lab.provider('["127.0.0.1"]', f'revoked_keys = ["{host_pub}"]\n')
    lab.serve()
    done = lab.ssh()
    assert refused(done), done.stderr
    assert "revoked" in done.stderr.lower()
    assert vouches_for_the_ca(lab).splitlines()[1:] == [f"@revoked 127.0.0.1 {host_pub}"]


def test_a_ca_for_every_host_is_refused(lab: Lab) -> None:
    for hosts in ('["*"]', "[]", '["!x", "*"]'):
        lab.provider(hosts)
        done = lab.pin.hook("ORDER", "127.0.0.1")
        assert done.returncode == 0 and done.stdout == ""
        assert "hosts" in done.stderr


def test_the_ca_vouches_on_any_port_unless_ports_says_otherwise(lab: Lab) -> None:
    lab.serve()  # a container's sshd, on a port no provider default names
    assert lab.sshd is not None
    token = f"[localhost]:{lab.sshd.port}"
    assert lab.ssh("localhost").stdout == "certified\n"
    assert vouches_for_the_ca(lab, token).count("\n") == 1
    lab.provider('["localhost", "127.0.0.1"]', "ports = [22]\n")
    assert lab.pin.hook("ORDER", token).stdout == ""
    assert refused(lab.ssh("localhost"))
