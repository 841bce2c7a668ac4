"""``sshpin proxy HOST PORT``: capsul ids without DNS, the relay, and legacy pinning through a
managed known_hosts file, driven by real ssh, scp and rsync with ProxyCommand."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sshpin.commands.demo import Sshd
from sshpin.errors import EXIT_USAGE
from tests.conftest import HOOK, SSHPIN, Keys, Pin
from tests.refserver import ReferenceServer

PROXY = " ".join(HOOK) + " proxy %h %p"


class OneShot:
    """A TCP server on loopback for one connection, running ``handler`` on it."""

    def __init__(self, family: int, handler: object) -> None:
        self.sock = socket.socket(family)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, args=(handler,), daemon=True)
        self.thread.start()

    def _serve(self, handler: object) -> None:
        conn, _ = self.sock.accept()
        with conn:
            handler(conn)  # type: ignore[operator]
        self.sock.close()


def proxy(pin: Pin, host: str, port: int, stdin: bytes = b"", keep_open: bool = False
          ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    argv = [*HOOK, "proxy", host, str(port)]
    if not keep_open:
        return subprocess.run(argv, input=stdin, env=pin.env, capture_output=True, timeout=30)
    # stdin stays open: only the server closing may end the relay
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=pin.env)  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_server_closing_first_ends_the_relay_with_everything_delivered(pin: Pin) -> None:
    payload = os.urandom(3 << 20)
    server = OneShot(socket.AF_INET, lambda c: c.sendall(payload))
    done = proxy(pin, "127.0.0.1", server.port, keep_open=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == payload


def test_half_close_reaches_the_server_and_its_answer_comes_back(pin: Pin) -> None:
    def reverse(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(data[::-1])

    server = OneShot(socket.AF_INET, reverse)
    done = proxy(pin, "127.0.0.1", server.port, stdin=b"0123456789" * 1000)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (b"0123456789" * 1000)[::-1]


def test_a_capsul_id_resolves_to_its_ipv6_address(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    server = OneShot(socket.AF_INET6, lambda c: c.sendall(b"SSH-2.0-fake\r\n"))
    provider.api.add("capsul-six", [keys.pub(keys.host)], ipv6="::1")
    pin.cover(server.port)
    done = proxy(pin, "capsul-six", server.port, keep_open=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"SSH-2.0-fake\r\n"
    managed = (pin.cache / "known_hosts").read_text()
    line = f"[capsul-six]:{server.port} {' '.join(keys.pub(keys.host).split()[:2])}"
    assert managed.startswith(line + " sshpin-until=") and managed.count("\n") == 1
    assert ((pin.cache / "known_hosts").stat().st_mode & 0o777) == 0o600


def test_another_port_of_a_capsul_reaches_its_address_with_no_key_vouched(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """A container's sshd on a capsul: the capsul id still names the address, but the
    provider's keys are its port 22 sshd's, so none is written for this port."""
    server = OneShot(socket.AF_INET6, lambda c: c.sendall(b"SSH-2.0-container\r\n"))
    provider.api.add("capsul-six", [keys.pub(keys.host)], ipv6="::1")
    done = proxy(pin, "capsul-six", server.port, keep_open=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"SSH-2.0-container\r\n" and done.stderr == b""
    managed = pin.cache / "known_hosts"
    assert not managed.exists() or f"[capsul-six]:{server.port}" not in managed.read_text()


def test_clear_errors(pin: Pin, provider: ReferenceServer) -> None:
    unknown = proxy(pin, "capsul-nope", 22)
    assert unknown.returncode == 2
    assert unknown.stderr.decode().startswith("sshpin: proxy capsul-nope: not a capsul of")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pin.cover(port)
    refused = proxy(pin, "127.0.0.1", port)
    assert refused.returncode == 3
    # 127.0.0.1 is managed here but no capsul has it: said, then the connection is tried
    assert refused.stderr.decode().splitlines() == [
        f"sshpin: [127.0.0.1]:{port}: not a capsul of account alice@example.org at provider "
        "'capsul'",
        f"sshpin: proxy: cannot connect to 127.0.0.1 port {port}: Connection refused",
    ]
    for host, port_text in (("a b", "22"), ("h", "0"), ("h", "x")):
        bad = subprocess.run([SSHPIN, "proxy", host, port_text], env=pin.env, capture_output=True)
        assert bad.returncode == 1 and bad.stderr.startswith(b"sshpin: proxy: ")


@pytest.fixture
def proxied(pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path) -> Path:
    """A real sshd for the capsul capsul-test1; ssh reaches it only through sshpin proxy."""
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    return tmp_path


def user_config(path: Path, keys: Keys, extra: str = "") -> Path:
    path.write_text(
        f"{extra}"
        "Host *\n"
        "    BatchMode yes\n    IdentitiesOnly yes\n    User root\n"
        f"    IdentityFile {keys.client}\n    GlobalKnownHostsFile /dev/null\n"
        "    LogLevel ERROR\n"
    )
    return path


def run(pin: Pin, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=pin.env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip


@pytest.mark.slow
def test_ssh_scp_rsync_through_proxycommand_with_the_hook(
    pin: Pin, proxied: Path, sshd: Sshd, keys: Keys, provider: ReferenceServer
) -> None:
    config = user_config(
        proxied / "ssh_config",
        keys,
        f"Host capsul-*\n    ProxyCommand {PROXY}\n"
        f"    KnownHostsCommand {' '.join(HOOK)} known-hosts %I %H %t %K %k %p\n"
        "    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {proxied / 'empty'}\n",
    )
    (proxied / "empty").write_text("")
    pin.cover(sshd.port)
    port = str(sshd.port)
    done = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "echo", "via-proxy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "via-proxy\n"
    src = proxied / "blob"
    src.write_bytes(os.urandom(1 << 20))
    scp = run(pin, "scp", "-F", str(config), "-P", port, str(src), f"capsul-test1:{proxied}/up")
    assert scp.returncode == 0, scp.stderr
    assert (proxied / "up").read_bytes() == src.read_bytes()
    rsync = run(pin, "rsync", "-a", "-e", f"ssh -F {config} -p {port}", str(src),
                f"capsul-test1:{proxied}/rsynced")  # fmt: skip
    assert rsync.returncode == 0, rsync.stderr
    assert (proxied / "rsynced").read_bytes() == src.read_bytes()

    with ThreadPoolExecutor(8) as pool:  # 8 parallel sessions through 8 proxies
        results = list(pool.map(
            lambda i: run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "echo",
                          str(i)), range(8)))  # fmt: skip
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]

    provider.api.status_override = 503  # provider down, cache fresh: still works
    down = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "true")
    assert down.returncode == 0, down.stderr

    unknown = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-nope", "true")
    assert unknown.returncode == 255
    assert "sshpin: proxy capsul-nope:" in unknown.stderr


@pytest.mark.slow
def test_legacy_mode_pins_without_knownhostscommand(
    pin: Pin, proxied: Path, sshd: Sshd, keys: Keys
) -> None:
    config = user_config(proxied / "ssh_config", keys)
    pin.cover(sshd.port)
    setup = run(pin, SSHPIN, "setup", "--legacy", "--ssh-config", str(config))
    assert setup.returncode == 0, setup.stderr
    snippet = (pin.dir / "ssh_config").read_text()
    assert "ProxyCommand" in snippet and "KnownHostsCommand" not in snippet
    port = str(sshd.port)
    done = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "echo", "legacy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "legacy\n"
    managed = (pin.cache / "known_hosts").read_text()
    assert managed.startswith(f"[capsul-test1]:{port} ssh-ed25519 ")

    sshd.restart([keys.forged])  # a man in the middle with another key: refused
    forged = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "true")
    assert forged.returncode == 255
    assert "Host key verification failed" in forged.stderr
    doctor = run(pin, SSHPIN, "doctor", "--offline", "--ssh-config", str(config))
    assert doctor.returncode == 0, doctor.stdout
    assert "legacy mode is set up" in doctor.stdout


@pytest.mark.slow
def test_legacy_mode_pins_a_host_block_with_a_hostname_address(
    pin: Pin, proxied: Path, sshd: Sshd, keys: Keys
) -> None:
    """``Host capsul-test1`` / ``HostName 127.0.0.1`` with a provider whose hosts name only
    ``capsul-*``: ProxyCommand gets the address as ``%h`` and the name typed as ``%k``, resolves
    the name, and writes its keys where ssh looks: under the address (and port), and under
    the name for a HostKeyAlias. A forged key is refused either way."""
    pin.write_config(hosts='["capsul-*"]')
    pin.cover(sshd.port)
    block = "Host capsul-test1\n    HostName 127.0.0.1\n"
    config = user_config(proxied / "ssh_config", keys, block)
    setup = run(pin, SSHPIN, "setup", "--legacy", "--ssh-config", str(config))
    assert setup.returncode == 0, setup.stderr
    assert " proxy %h %p %k\n" in (pin.dir / "ssh_config").read_text()
    port = str(sshd.port)
    done = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "echo", "named")
    assert (done.returncode, done.stdout) == (0, "named\n"), done.stderr
    managed = (pin.cache / "known_hosts").read_text().splitlines()
    assert {line.split()[0] for line in managed} == {f"[127.0.0.1]:{port}", "capsul-test1"}

    sshd.restart([keys.forged])
    forged = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "true")
    assert forged.returncode == 255 and "Host key verification failed" in forged.stderr

    sshd.restart([keys.host])  # the same block with a HostKeyAlias: ssh checks the alias
    text = config.read_text().replace(block, block + "    HostKeyAlias capsul-test1\n")
    config.write_text(text)
    (pin.cache / "known_hosts").write_text("")
    done = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "echo", "alias")
    assert (done.returncode, done.stdout) == (0, "alias\n"), done.stderr
    sshd.restart([keys.forged])
    forged = run(pin, "ssh", "-F", str(config), "-p", port, "capsul-test1", "true")
    assert forged.returncode == 255 and "Host key verification failed" in forged.stderr


def test_legacy_mode_gives_percent_k_only_to_an_ssh_that_knows_it(pin: Pin, tmp_path: Path) -> None:
    """ProxyCommand knows %k from OpenSSH 8.4; an older ssh exits on a token it does not
    know ("unknown key %k"), so setup --legacy writes ``%h %p`` for it (and doctor expects
    what setup writes)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for version, want in (("8.2p1", " proxy %h %p\n"), ("8.4p1", " proxy %h %p %k\n")):
        (fake / "ssh").write_text(
            f"#!/bin/sh\necho 'OpenSSH_{version} Ubuntu, OpenSSL 1.1.1f' >&2\nexit 0\n"
        )
        (fake / "ssh").chmod(0o755)
        env = dict(pin.env, PATH=f"{fake}:{pin.env['PATH']}")
        done = subprocess.run(
            [SSHPIN, "setup", "--legacy", "--ssh-config", str(tmp_path / f"config-{version}")],
            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        snippet = (pin.dir / "ssh_config").read_text()
        assert want in snippet, (version, snippet)


@pytest.mark.parametrize(
    "port_text", ["\u00b2", "\u0661\u0662", "\uff12\uff12", "0", "65536", "22x", "", "022", "+22",
                  " 22", "1" * 40],
)  # fmt: skip
def test_a_port_that_is_not_ascii_1_to_65535_is_one_usage_line(pin: Pin, port_text: str) -> None:
    """``sshpin proxy h ²`` died with a traceback (``str.isdigit`` takes superscripts, which
    ``int`` refuses) and ``h ١٢`` connected to port 12: ssh writes ``%p`` in ASCII digits."""
    bad = subprocess.run([SSHPIN, "proxy", "h", port_text], env=pin.env, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=30)  # fmt: skip
    assert bad.returncode == EXIT_USAGE, bad.stderr
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sshpin: proxy: "), bad.stderr
    assert "is not a TCP port" in lines[0] and lines[0].isascii()
    assert bad.stdout == ""
