"""Provider faults: for each, the hook exits 0 with one clear line, serves stale keys only
within stale_if_error, writes nothing partial; ``cache refresh`` exits 3 (provider or network)
or 2 (data refused). Everything runs on loopback."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import TLS, TOKEN, Keys, Pin
from tests.refserver import CapsulAPI, ReferenceServer


@dataclass
class Fault:
    name: str
    start: Callable[[ReferenceServer, TLS, Path], str]  # returns the api_url to use
    words: str  # in the one stderr line
    status: int  # of `sshpin cache refresh --all`


def same(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    return provider.api_url


def status(code: int, headers: dict[str, str] | None = None) -> Callable[..., str]:
    def go(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
        provider.api.status_override = code
        provider.api.extra_headers = headers or {}
        return provider.api_url

    return go


def body(data: bytes, content_type: str = "application/json") -> Callable[..., str]:
    def go(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
        provider.api.body_override = data
        if content_type != "application/json":
            provider.api.extra_headers = {"Content-Type": content_type}
        return provider.api_url

    return go


_servers: list[ReferenceServer] = []


def serve(context: ssl.SSLContext) -> str:
    server = ReferenceServer(CapsulAPI({TOKEN}), context).start()
    _servers.append(server)
    return server.api_url


def cert(ca: trustme.CA, *names: str, **kw: datetime.datetime) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names, **kw).configure_cert(context)  # type: ignore[arg-type]
    return context


def wrong_name(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    return serve(cert(tls.ca, "other.example"))


def expired(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    return serve(
        cert(tls.ca, "127.0.0.1", not_before=past, not_after=past + datetime.timedelta(days=1))
    )


def other_ca(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    return serve(cert(trustme.CA(), "127.0.0.1"))


def self_signed(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    from sshpin.commands.demo import make_tls

    (tmp / "self-signed").mkdir()
    context, _ = make_tls(str(tmp / "self-signed"))  # a CA of its own, not in ca_bundle
    return serve(context)


def refused_port(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}/api"


def raw_tls(tls: TLS, behave: Callable[[ssl.SSLSocket], None]) -> str:
    """A TLS server that reads the request and then does ``behave``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    def one(conn: socket.socket) -> None:
        try:
            with tls.server_context.wrap_socket(conn, server_side=True) as s:
                s.recv(65536)
                behave(s)
        except OSError:
            pass

    threading.Thread(target=loop, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}/api"


def hang(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    return raw_tls(tls, lambda s: time.sleep(15))


def trickle(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    def drip(s: ssl.SSLSocket) -> None:  # a byte every 0.4 s: no single read times out
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 4:
            s.sendall(bytes([byte]))
            time.sleep(0.4)

    return raw_tls(tls, drip)


def connect_timeout(provider: ReferenceServer, tls: TLS, tmp: Path) -> str:
    """A listener whose accept queue is full: the kernel drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    _keep.extend([listener, *fillers])
    return f"https://127.0.0.1:{port}/api"


_keep: list[socket.socket] = []

FAULTS = [
    Fault("connection refused", refused_port, "connection refused", 3),
    Fault("HTTP 500", status(500), "HTTP 500", 3),
    Fault("HTTP 502", status(502), "HTTP 502", 3),
    Fault("HTTP 503", status(503), "HTTP 503", 3),
    Fault("429, Retry-After 1", status(429, {"Retry-After": "1"}), "HTTP 429", 3),
    Fault("HTTP 401", status(401), "token rejected (HTTP 401)", 3),
    Fault("HTTP 403", status(403), "token rejected (HTTP 403)", 3),
    Fault("redirect to http://", status(302, {"Location": "http://127.0.0.1/x"}), "redirect", 3),
    Fault("redirect elsewhere", status(301, {"Location": "https://example.org/"}), "redirect", 3),
    Fault("truncated JSON", body(b'{"account": "a", "capsuls": [{"id": '), "not JSON", 2),
    Fault("not JSON", body(b"<html>maintenance</html>"), "not JSON", 2),
    Fault("wrong Content-Type", body(b"{}", "text/html"), "text/html, not application/json", 2),
    Fault("50 MiB body", body(b" " * (50 << 20)), "exceeds the limit", 2),
    Fault("TLS: wrong host name", wrong_name, "certificate verify failed", 3),
    Fault("TLS: expired certificate", expired, "certificate verify failed", 3),
    Fault("TLS: self-signed", self_signed, "certificate verify failed", 3),
    Fault("TLS: a different CA", other_ca, "certificate verify failed", 3),
]
SLOW_FAULTS = [
    Fault("read timeout (no answer)", hang, "timed out", 3),
    Fault("server trickles bytes", trickle, "timed out", 3),
    Fault("connect timeout", connect_timeout, "timed out", 3),
]


@pytest.fixture(autouse=True)
def _stop_servers() -> Iterator[None]:
    yield
    while _servers:
        _servers.pop().stop()
    while _keep:
        _keep.pop().close()


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "config.marshal" and ".lock" not in p.name
    }


def retrust(pin: Pin) -> None:
    """Mark what is cached as verified under the config as it is now (its trust context)."""
    from sshpin.providers import load_config
    from sshpin.store.cachedir import ProviderCache
    from sshpin.trust.document import Document

    cfg = load_config(str(pin.config))
    assert cfg is not None
    trust = cfg.provider("capsul").get("trust")
    store = ProviderCache(str(pin.cache), "capsul")
    raw = store.read_document()  # none after a lookup (a cold miss asks ?host=)
    if raw is not None:
        doc = Document.from_bytes(raw)
        doc.trust = trust
        store.write_document(doc.to_bytes(), doc.fetched_at)
    for host in store.hosts():
        entry = store.read_host(host)
        assert entry is not None
        entry.trust = trust
        store.write_host(entry)


def check(fault: Fault, pin: Pin, provider: ReferenceServer, tls: TLS, keys: Keys,
          tmp_path: Path, refresh: bool = True) -> None:  # fmt: skip
    provider.api.add("capsul-f", [keys.pub(keys.host)])
    args = ["HOSTNAME", "capsul-f", *keys.pub(keys.host).split()[:2]]
    assert pin.hook(*args).stdout  # a healthy fetch fills the cache
    url = fault.start(provider, tls, tmp_path)
    pin.write_config(extra="")
    pin.config.write_text(pin.config.read_text().replace(provider.api_url, url))
    retrust(pin)  # as if cached from this URL: a changed api_url would void the cache

    pin.expire(2 * 3600)  # stale, within stale_if_error (7 days)
    before = snapshot(pin.cache)
    done = pin.hook(*args)
    assert done.returncode == 0
    assert done.stdout.split()[1:] == keys.pub(keys.host).split()[:2], done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sshpin: "), done.stderr
    assert fault.words in lines[0] and lines[0].endswith("(stale)"), lines[0]
    assert snapshot(pin.cache) == before  # no partial write

    if refresh:  # (the slow faults skip this: each run waits out the 10 s deadline)
        done = pin.run("cache", "refresh", "--all")
        assert done.returncode == fault.status, done.stderr
        assert snapshot(pin.cache) == before

    pin.expire(10 * 86400)  # past the stale window: nothing vouched for, one line
    done = pin.hook(*args)
    assert done.returncode == 0 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and fault.words in lines[0], done.stderr


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_provider_fault(fault: Fault, pin: Pin, provider: ReferenceServer, tls: TLS,
                        keys: Keys, tmp_path: Path) -> None:  # fmt: skip
    check(fault, pin, provider, tls, keys, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fault", SLOW_FAULTS, ids=lambda f: f.name)
def test_slow_provider_fault(fault: Fault, pin: Pin, provider: ReferenceServer, tls: TLS,
                             keys: Keys, tmp_path: Path) -> None:  # fmt: skip
    started = time.monotonic()
    check(fault, pin, provider, tls, keys, tmp_path, refresh=False)
    assert time.monotonic() - started < 60  # two bounded waits, not a hang


def test_429_with_retry_after_is_retried_then_succeeds(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-f", [keys.pub(keys.host)])
    provider.api.status_override = 429
    provider.api.override_count = 2  # two 429s, then served: no timer racing the hook's start
    provider.api.extra_headers = {"Retry-After": "1"}
    started = time.monotonic()
    done = pin.hook("ORDER", "capsul-f")
    assert done.stdout and done.stderr == ""  # honoured Retry-After twice, then succeeded
    assert provider.api.count() == 3
    assert time.monotonic() - started >= 2  # Retry-After: 1 honoured before each retry
