"""Deadlines that hold however DNS or the provider behave (issue 30, item 4), with real ssh
and sshd; and a call after one that ran out of time serves only what the cache's rules allow.

In a mount namespace, /etc/resolv.conf names a UDP socket on a loopback address that reads
every query and answers none (glibc would wait ``timeout x attempts``: 150 s here, and a
signal cannot end ``getaddrinfo``). ssh itself needs no DNS (``HostName 127.0.0.1``); the
hook does: for an ``api_url`` given by name, and for the ``?host=`` term of a host known by a
DNS name (a cold miss asks ``?host=``, as every miss of a paged provider does). One ssh
connection, with its two or three hook calls, must end within about 15 s, refuse the host
(strict checking, nothing vouched for), and say once what hung.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshpin.commands.demo import write_ssh_config
from sshpin.store.cachedir import ProviderCache
from tests.conftest import HOOK, SSH, Pin
from tests.refserver import ReferenceServer

ACCEPT_NEW = "Host *\n    StrictHostKeyChecking accept-new\n"  # the user's own, after the snippet
CONNECTION = 17.0  # one ssh connection: the hook's 14 s budget, plus ssh's own start and kex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare"
    ),
]


@pytest.fixture
def mute_resolver() -> Iterator[tuple[str, list[tuple[bytes, int]]]]:
    """A resolver on 127.53.x.y:53 that reads every query (and its source port) and answers
    none."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = f"127.53.{random.randrange(1, 250)}.{random.randrange(1, 250)}"
    sock.bind((address, 53))
    queries: list[tuple[bytes, int]] = []

    def read() -> None:
        while True:
            try:
                data, source = sock.recvfrom(512)
                queries.append((data, source[1]))
            except OSError:
                return

    threading.Thread(target=read, daemon=True).start()
    yield address, queries
    sock.close()


def ssh_without_dns(
    ssh: SSH, tmp_path: Path, resolver: str, host: str, patterns: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``ssh HOST true`` (HOST's HostName 127.0.0.1) with resolv.conf naming ``resolver``."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {resolver}\noptions timeout:30 attempts:5\n")
    managed = tmp_path / "managed_config"
    write_ssh_config(str(managed), HOOK, patterns)
    config = tmp_path / "dns_config"
    config.write_text(f"Host {host}\n    HostName 127.0.0.1\n\nInclude {managed}\n{ACCEPT_NEW}")
    argv = ["ssh", "-F", str(config), "-i", ssh.keys.client, "-o",
            f"UserKnownHostsFile={ssh.known_hosts}", "-p", str(ssh.sshd.port),
            host, "true"]  # fmt: skip
    script = f'mount --bind {conf} /etc/resolv.conf || exit 9; exec "$@"'
    start = time.monotonic()
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script, "-", *argv],
                          env=ssh.pin.env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    return done, time.monotonic() - start


def sshpin_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("sshpin: ")]


def test_an_api_url_by_name_that_never_resolves(
    ssh: SSH, pin: Pin, tmp_path: Path, mute_resolver: tuple[str, list[tuple[bytes, int]]]
) -> None:
    resolver, queries = mute_resolver
    pin.api_url = "https://api.capsul-hang.example:443/api"
    pin.write_config()
    done, took = ssh_without_dns(ssh, tmp_path, resolver, "capsul-test1", "capsul-*")
    assert done.returncode == 255 and "Host key verification failed" in done.stderr, done.stderr
    assert took < CONNECTION, (took, done.stderr)
    assert queries, "the hook never asked the resolver: the test proves nothing"
    # one line, naming what hung: the HTTP exchange's own bound (11 s) or the hook's (12 s),
    # whichever ends first; the connection's later calls do not wait again
    lines = sshpin_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        r"sshpin: \S+: (provider 'capsul': timed out \(no whole answer within 10 s|no answer "
        r"within 1[12] s), while waiting for provider 'capsul' at api\.capsul-hang\.example "
        r"\(name lookup, connection, TLS, answer\)(\)|: no keys vouched for)",
        lines[0],
    ), lines[0]
    assert Path(ssh.known_hosts).read_text() == ""  # accept-new wrote nothing: ssh refused


def test_a_host_term_that_never_resolves(
    ssh: SSH,
    pin: Pin,
    provider: ReferenceServer,
    tmp_path: Path,
    mute_resolver: tuple[str, list[tuple[bytes, int]]],
) -> None:
    """A cold miss (or any miss of a paged provider) asks ``?host=``; for a host known by a
    DNS name the term is its address, and DNS never answers."""
    resolver, queries = mute_resolver
    pin.write_config(hosts='["capsul-*", "*.capsul-hang.example"]', extra="resolve_dns = true\n")
    provider.api.page_size = 1  # a paged provider, seen to page: every miss is a lookup
    ProviderCache(str(pin.cache), "capsul").mark_paged()
    host = "web1.capsul-hang.example"
    done, took = ssh_without_dns(ssh, tmp_path, resolver, host, "capsul-* *.capsul-hang.example")
    assert done.returncode == 255 and "Host key verification failed" in done.stderr, done.stderr
    assert took < CONNECTION, (took, done.stderr)
    # asked by one hook call only (one resolver socket): the connection's later calls knew
    assert queries and len({port for _, port in queries}) == 1, queries
    assert sshpin_lines(done.stderr) == [
        f"sshpin: 127.0.0.1: cannot resolve {host} (no answer within 5 s): DNS is needed to "
        "match it to a capsul"
    ], done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def test_the_same_connection_with_dns_that_answers_connects(
    ssh: SSH, pin: Pin, tmp_path: Path
) -> None:
    """The other side: the same ssh command and config, with a resolver answering (the
    api_url by address), connect with no prompt and nothing written to known_hosts."""
    managed = tmp_path / "managed_config"
    write_ssh_config(str(managed), HOOK, "capsul-*")
    config = tmp_path / "dns_config"
    config.write_text(
        f"Host capsul-test1\n    HostName 127.0.0.1\n\nInclude {managed}\n{ACCEPT_NEW}"
    )
    done = ssh.tool("ssh", "-F", str(config), "-i", ssh.keys.client, "-o",
                    f"UserKnownHostsFile={ssh.known_hosts}", "-p", str(ssh.sshd.port),
                    "capsul-test1", "echo", "reached")  # fmt: skip
    assert done.returncode == 0 and done.stdout == "reached\n", done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def _through_a_slow_provider(
    ssh: SSH, pin: Pin, provider: ReferenceServer, age: float
) -> subprocess.CompletedProcess[str]:
    """Connect once (the cache filled), age the cache by ``age`` seconds, then connect again
    while the provider answers nothing for 40 s: the first call of that connection runs out
    of time, and its later calls ask nothing."""
    first = ssh.ssh("echo", "in")
    assert first.returncode == 0, first.stderr
    pin.expire(age)
    provider.api.delay = 40.0
    try:
        return ssh.ssh("echo", "in")
    finally:
        provider.api.delay = 0.0


def test_a_call_after_one_that_ran_out_never_serves_an_expired_entry(
    ssh: SSH, pin: Pin, provider: ReferenceServer
) -> None:
    """Past ttl + stale_if_error the cache vouches for nothing: a later call of a connection
    whose first call ran out of time takes the provider's fallback rules, never the cache as
    it is (an attacker slowing the provider would otherwise get a long-dropped key in)."""
    done = _through_a_slow_provider(ssh, pin, provider, 60 * 86400)
    assert done.returncode == 255 and "Host key verification failed" in done.stderr, done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def test_a_call_after_one_that_ran_out_serves_a_stale_entry_its_rules_allow(
    ssh: SSH, pin: Pin, provider: ReferenceServer
) -> None:
    """The other side: two hours old (past ttl, within stale_if_error), the keys are served
    as the fallback serves them with the provider down, and ssh connects."""
    done = _through_a_slow_provider(ssh, pin, provider, 2 * 3600)
    assert done.returncode == 0 and done.stdout == "in\n", done.stderr
    assert "(stale)" in done.stderr, done.stderr
    assert Path(ssh.known_hosts).read_text() == ""
