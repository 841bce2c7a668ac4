"""Ports: a provider vouches for the sshd its keys belong to (its ``ports``), and nothing else
on that address. Real ssh against two sshds on 127.0.0.1: the capsul's, and a container's with
another key on a second port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sshpin.commands.demo import Sshd, keygen
from sshpin.core.names import Query, port_name, split_host
from sshpin.errors import UsageError
from sshpin.hook import parse_args
from tests.conftest import SSH, SSHPIN, Keys, Pin
from tests.refserver import ReferenceServer

# -- parsing: %H and pin names, port-aware ---------------------------------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
HOSTS = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    LABEL.map(lambda s: "capsul-" + s),
)
PORTS = st.integers(1, 65535)


@given(HOSTS, PORTS)
def test_a_bracketed_token_keeps_its_port_and_names_its_pin(host: str, port: int) -> None:
    token = f"[{host.upper()}]:{port}"
    query = parse_args(["HOSTNAME", token, "NONE", "NONE"])  # the accepting branch, always
    event("port 22" if port == 22 else "another port")
    assert (query.token, query.host, query.port) == (token, host.lower(), port)
    assert query.name == (host.lower() if port == 22 else f"[{host.lower()}]:{port}")
    assert split_host(query.name) == (host.lower(), None if port == 22 else port)
    assert Query(query.name).name == query.name  # a pin name reads back as itself


@given(HOSTS.filter(lambda h: ":" not in h))
def test_a_bare_token_is_port_22(host: str) -> None:
    query = parse_args(["ORDER", host])
    assert (query.port, query.name) == (22, host.lower())
    assert port_name(host.lower(), 22) == port_name(host.lower(), None) == host.lower()


@given(HOSTS, st.sampled_from(["0", "65536", "99999", "", "22a", "-1", "२२", " 22", "22\n"]))
def test_a_bad_port_is_refused(host: str, port: str) -> None:
    with pytest.raises(UsageError):
        parse_args(["HOSTNAME", f"[{host}]:{port}", "NONE", "NONE"])


@pytest.mark.parametrize("port", ["0000065536", "0000070000", "022", "\u00b2", "\u0662\u0662", "0"])
def test_a_bad_percent_p_is_refused(port: str) -> None:
    """ssh's ``%p`` (the sixth word) is a port as ssh writes it: ``0000065536`` passed a
    check of its first six digits and became port 65536."""
    with pytest.raises(UsageError):
        parse_args(["ORDER", "h", "NONE", "NONE", "h", port])


# -- configuration -----------------------------------------------------------------------------


def test_ports_are_checked(pin: Pin) -> None:
    cases = [("[]", "a list of port numbers"), ("[0]", "not a port number"),
             ('["22"]', "not a port number"), ("22", "a list of port numbers"),
             ("[true]", "not a port number"), ("[65536]", "not a port number")]  # fmt: skip
    for bad, words in cases:
        pin.ports = bad
        pin.write_config()
        done = pin.run("doctor", "--json")
        assert words in done.stdout, (bad, done.stdout)
        hook = pin.hook("ORDER", "capsul-x")
        assert hook.stdout == "" and "ports: " in hook.stderr and words in hook.stderr


def test_the_default_is_port_22_only(pin: Pin, provider: ReferenceServer) -> None:
    pin.config.write_text(pin.config.read_text().replace("ports = [22, 2222]\n", ""))
    other = pin.hook("ORDER", "[capsul-test1]:2222")
    assert (other.returncode, other.stdout, other.stderr) == (0, "", "")
    assert provider.api.count() == 0
    assert not (pin.cache / "capsul").exists()  # no lock, no mismatch mark, no cache dir
    why = pin.run("-v", "known-hosts", "ORDER", "[capsul-test1]:2222")
    assert "sshpin: [capsul-test1]:2222: port 2222 is not among the ports provider 'capsul'" in (
        why.stderr
    )
    shown = pin.run("cache", "show", "--json", "[capsul-test1]:2222")
    assert shown.returncode == 2 and '"port": 2222' in shown.stdout
    assert "port 2222 is not among the ports" in shown.stdout
    assert pin.run("cache", "show", "--json", "capsul-test1").stdout.count('"ports": "22"') == 1


# -- two sshds on one address --------------------------------------------------------------------


@pytest.fixture
def container(tmp_path: Path, keys: Keys, ssh: SSH) -> Iterator[Sshd]:
    """A second sshd on 127.0.0.1 (a container's), with a key the provider knows nothing of."""
    key = str(tmp_path / "container_key")
    keygen(key)
    server = Sshd(str(tmp_path / "container"), [key], str(tmp_path / "authorized_keys")).start()
    yield server
    server.stop()


def container_ssh(ssh: SSH, container: Sshd) -> subprocess.CompletedProcess[str]:
    return ssh.tool(
        "ssh", *ssh.base(), "-o", "StrictHostKeyChecking=yes", "-p", str(container.port),
        "127.0.0.1", "echo", "in-the-container",
    )  # fmt: skip


def container_pub(container: Sshd) -> str:
    return " ".join(Path(container.host_keys[0] + ".pub").read_text().split()[:2])


def test_another_port_is_not_the_providers(
    ssh: SSH, container: Sshd, provider: ReferenceServer
) -> None:
    assert ssh.ssh("echo", "capsul").stdout == "capsul\n"  # the capsul's port pins as today
    assert provider.api.count() == 1
    token = f"[127.0.0.1]:{container.port}"
    hook = ssh.pin.hook("HOSTNAME", token, *container_pub(container).split())
    assert (hook.returncode, hook.stdout, hook.stderr) == (0, "", "")  # no line from sshpin

    refused = container_ssh(ssh, container)  # nothing vouches: ssh refuses, with no prompt
    assert refused.returncode == 255 and "in-the-container" not in refused.stdout
    assert "Host key verification failed" in refused.stderr
    assert "sshpin" not in refused.stderr
    assert provider.api.count() == 1  # no provider request for the container's port
    assert not list(ssh.pin.cache.glob("*/mismatch/*"))

    Path(ssh.known_hosts).write_text(f"{token} {container_pub(container)}\n")  # the user's own
    done = container_ssh(ssh, container)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "in-the-container\n" and "sshpin" not in done.stderr
    assert provider.api.count() == 1


def test_a_pin_for_host_and_port_serves_that_port_only(
    ssh: SSH, container: Sshd, provider: ReferenceServer
) -> None:
    token = f"[127.0.0.1]:{container.port}"
    pinned = subprocess.run(
        [SSHPIN, "pin", token], input=container_pub(container) + "\n", env=ssh.pin.env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    assert f"{token}: pinned 1 key(s)" in pinned.stdout
    assert (ssh.pin.dir / "pins" / token).exists()
    done = container_ssh(ssh, container)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "in-the-container\n"
    assert Path(ssh.known_hosts).read_text() == ""
    assert provider.api.count() == 0

    # the pin is for that port: on the capsul's port the provider's keys alone, as before
    capsul = ssh.pin.hook("ORDER", f"[127.0.0.1]:{ssh.sshd.port}")
    assert container_pub(container) not in capsul.stdout and capsul.stdout
    shown = ssh.pin.run("fingerprints", token)
    assert shown.returncode == 0 and token in shown.stdout

    gone = ssh.pin.run("unpin", token)
    assert gone.returncode == 0, gone.stderr
    refused = container_ssh(ssh, container)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
