"""No credential over cleartext: every command that sends a token refuses a URL that is not
``https://`` before it connects (trust/http.py ``require_https``), with one line saying why.

The listener is a plain TCP socket on loopback that records every connection and byte: a
refusal is shown by it receiving nothing at all, not by a message alone. The other side:
the same calls over https reach the provider."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from sshpin.errors import ConfigError
from sshpin.trust import http
from tests.conftest import SSHPIN, TLS, TOKEN, Pin
from tests.refserver import ReferenceServer


class Listener:
    """A plain-HTTP server that never answers: it records what reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("scheme", ["http", "HTTP", "ftp", ""])
def test_the_one_rule_refuses_a_url_that_is_not_https_before_connecting(
    listener: Listener, scheme: str
) -> None:
    url = listener.url.replace("http://", f"{scheme}://" if scheme else "//")
    with pytest.raises(ConfigError, match="not an https:// URL"):
        http.get(http.session(), url, {"Authorization": f"Bearer {TOKEN}"}, 4096, "provider 'p'")
    assert (listener.connections, listener.received) == (0, b"")


def test_the_session_itself_never_sends_cleartext(listener: Listener) -> None:
    """The second lock: a request made past ``get`` still goes nowhere over http://."""
    import requests

    with pytest.raises(requests.exceptions.InvalidURL):
        http.session().get(listener.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (listener.connections, listener.received) == (0, b"")


def test_an_https_url_is_fetched(provider: ReferenceServer, tls: TLS) -> None:
    """The other side of the rule: https passes it, with the token."""
    r = http.get(http.session(tls.ca_path), provider.api_url + "/capsuls",
                 {"Authorization": f"Bearer {TOKEN}"}, 1 << 20, "provider 'p'")  # fmt: skip
    assert r.status == 200 and b'"capsuls"' in r.body


def test_provider_check_of_an_http_url_sends_nothing(pin: Pin, listener: Listener) -> None:
    env = {**pin.env, "SSHPIN_TOKEN": TOKEN}
    for args in (["provider", "check", listener.url],
                 ["provider", "check", "--url", listener.url + "/{host}", "capsul-a"]):  # fmt: skip
        done = subprocess.run([SSHPIN, *args], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        assert done.returncode == 1, done.stderr
        line = one_line(done.stderr)
        assert line.startswith("sshpin: provider check: refusing 'http://127.0.0.1:"), line
        assert "not an https:// URL" in line and TOKEN not in line
        assert done.stdout == ""
    assert (listener.connections, listener.received) == (0, b"")


def test_provider_check_over_https_reaches_the_provider(
    pin: Pin, provider: ReferenceServer
) -> None:
    done = pin.run("provider", "check", "--ca-bundle", pin.ca_path, provider.api_url,
                   stdin=TOKEN + "\n")  # fmt: skip
    assert "GET " + provider.api_url + "/capsuls: HTTP 200" in done.stdout, done.stdout


def test_no_command_sends_the_token_to_an_http_api_url(pin: Pin, listener: Listener) -> None:
    """A config naming an http:// api_url is refused as a whole (core/schema.py), for the
    hook, login, doctor and refresh alike: nothing reaches the listener."""
    pin.api_url = listener.url
    pin.write_config()
    runs = [
        pin.hook("HOSTNAME", "capsul-a"),
        pin.run("login", "capsul", stdin=TOKEN + "\n"),
        pin.run("doctor"),
        pin.run("cache", "refresh", "--all"),
    ]
    for done in runs:
        assert done.stdout.count("https://") == 0 or "FAIL" in done.stdout, done.stdout
        assert "must be an https:// URL" in done.stderr + done.stdout, (done.args, done.stderr)
    assert (listener.connections, listener.received) == (0, b"")
