"""Shared fixtures: a real HTTPS provider (trustme certificates), a real sshd, real ssh.

Nothing users run is mocked: the hook runs as the installed ``sshpin`` console script, started
by OpenSSH's own ``ssh`` through KnownHostsCommand, against ``sshd`` on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sysconfig
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, settings

from sshpin.commands.demo import Sshd, keygen, write_ssh_config
from tests.refserver import CapsulAPI, ReferenceServer

TOKEN = "test-token-5f1e0c"  # the provider's valid token for these tests

# Property tests run on a cold cache, in parallel workers, on a shared 2-core machine: no
# per-example deadline and no "too slow" verdict on the first text-drawing test of a worker.
settings.register_profile(
    "sshpin", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("sshpin")


def _sshpin_script() -> str:
    """The installed console script itself (not a pyenv shim or wrapper in front of it)."""
    script = os.path.join(sysconfig.get_path("scripts"), "sshpin")
    if os.access(script, os.X_OK):
        return script
    found = shutil.which("sshpin")
    if not found:
        raise RuntimeError("sshpin is not installed: pip install -e '.[test]'")
    return found


SSHPIN = _sshpin_script()


def _hook() -> list[str]:
    """The hook as ``sshpin setup`` names it: the console script's interpreter on launch.py."""
    import sshpin

    with open(SSHPIN) as f:
        interpreter = f.readline()[2:].strip()
    return [interpreter, "-I", "-S", os.path.join(os.path.dirname(sshpin.__file__), "launch.py")]


HOOK = _hook()
HOOK_LINE = " ".join(HOOK) + " known-hosts %I %H %t %K %k %p"  # what ssh -G shows for it


# A keyring backend (PYTHON_KEYRING_BACKEND=mutekeyring.Mute, this text as mutekeyring.py)
# whose every call hangs: a D-Bus service that never answers, or an unanswered unlock prompt.
MUTE_KEYRING = """
import time
from keyring.backend import KeyringBackend


class Mute(KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        time.sleep(600)

    def set_password(self, service, username, password):
        time.sleep(600)

    def delete_password(self, service, username):
        time.sleep(600)
"""


@dataclass
class Keys:
    """Key pairs made once per session with the real ssh-keygen."""

    dir: Path
    host: str  # private key paths
    forged: str
    rebuilt: str
    client: str

    def pub(self, path: str) -> str:
        return Path(path + ".pub").read_text().strip()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    paths = {name: str(d / name) for name in ("host", "forged", "rebuilt", "client")}
    for path in paths.values():
        keygen(path)
    return Keys(dir=d, **paths)


@dataclass
class TLS:
    server_context: ssl.SSLContext
    ca_path: str
    ca: trustme.CA


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return TLS(context, str(path), ca)


@pytest.fixture
def provider(tls: TLS) -> Iterator[ReferenceServer]:
    server = ReferenceServer(CapsulAPI({TOKEN}), tls.server_context).start()
    yield server
    server.stop()


@dataclass
class Pin:
    """An isolated sshpin user: config file, cache dir, environment, and helpers."""

    dir: Path
    api_url: str
    ca_path: str
    env: dict[str, str] = field(default_factory=dict)
    ports: str = "[22, 2222]"  # the provider's ports; the ssh fixture sets its sshd's port

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    @property
    def cache(self) -> Path:
        return self.dir / "cache"

    def write_config(self, hosts: str = '["127.0.0.1", "capsul-*"]', extra: str = "") -> None:
        self.config.write_text(
            "[[provider]]\n"
            'name = "capsul"\n'
            'type = "capsul"\n'
            f'api_url = "{self.api_url}"\n'
            f"hosts = {hosts}\n"
            f'ca_bundle = "{self.ca_path}"\n'
            f"ports = {self.ports}\n" + extra
        )
        self.config.chmod(0o600)

    def cover(self, port: int) -> None:
        """Make the provider vouch on ``port`` too (tests' sshds cannot listen on 22): its
        ``ports`` become 22 and ``port`` (22: a name without a port, as ssh gives it with
        HostKeyAlias, is port 22 in known_hosts terms)."""
        old = f"ports = {self.ports}\n"
        self.ports = f"[22, {port}]"
        self.config.write_text(self.config.read_text().replace(old, f"ports = {self.ports}\n"))
        self.config.chmod(0o600)

    def hook(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SSHPIN, "known-hosts", *args],
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def run(
        self, *args: str, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``sshpin ARGS``; standard input is ``stdin`` when given, else /dev/null."""
        return subprocess.run(
            [SSHPIN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            timeout=timeout,
        )

    def expire(self, seconds: float = 10 * 86400) -> None:
        """Make every cached fetch look ``seconds`` older (time passing, for the cache)."""
        from sshpin.store.cachedir import ProviderCache
        from sshpin.trust.document import Document

        store = ProviderCache(str(self.cache), "capsul")
        raw = store.read_document()  # none after lookups alone (a cold miss asks ?host=)
        assert raw is not None or store.hosts()
        if raw is not None:
            doc = Document.from_bytes(raw)
            doc.fetched_at -= seconds
            store.write_document(doc.to_bytes(), doc.fetched_at)
        for host in store.hosts():
            entry = store.read_host(host)
            if entry is not None:
                entry.fetched_at -= seconds
                store.write_host(entry)

    def age_mismatch_marks(self, seconds: float = 31) -> None:
        for mark in self.cache.glob("*/mismatch/*"):
            st = mark.stat()
            os.utime(mark, (st.st_atime - seconds, st.st_mtime - seconds))


@pytest.fixture
def pin(tmp_path: Path, provider: ReferenceServer, tls: TLS) -> Pin:
    d = tmp_path / "user"
    d.mkdir(mode=0o700)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SSHPIN_", "XDG_", "REQUESTS_", "SSL_", "CURL_"))
        and k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
    }
    env.update(
        SSHPIN_CONFIG=str(d / "config.toml"),
        SSHPIN_CACHE_DIR=str(d / "cache"),
        SSHPIN_TOKEN_CAPSUL=TOKEN,
        HOME=str(d),
    )
    p = Pin(dir=d, api_url=provider.api_url, ca_path=tls.ca_path, env=env)
    p.write_config()
    return p


@pytest.fixture
def sshd(tmp_path: Path, keys: Keys) -> Iterator[Sshd]:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(keys.pub(keys.client) + "\n")
    server = Sshd(str(tmp_path / "sshd"), [keys.host], str(authorized)).start()
    yield server
    server.stop()


@dataclass
class SSH:
    """Runs the real OpenSSH tools as a user whose ssh_config hands managed hosts to sshpin."""

    pin: Pin
    sshd: Sshd
    keys: Keys
    config: str
    known_hosts: str

    def base(self) -> list[str]:
        return [
            "-F",
            self.config,
            "-i",
            self.keys.client,
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
        ]

    def command(self) -> str:
        """``ssh ...`` as one string, for ``rsync -e`` and ``GIT_SSH_COMMAND``."""
        return " ".join(["ssh", *self.base(), "-p", str(self.sshd.port)])

    def ssh(self, *remote: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
        return self.tool("ssh", *self.base(), "-p", str(self.sshd.port), host, *remote)

    def tool(self, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            env=self.pin.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )


@pytest.fixture
def ssh(pin: Pin, sshd: Sshd, keys: Keys, provider: ReferenceServer, tmp_path: Path) -> SSH:
    """The capsul ``capsul-test1`` at 127.0.0.1 runs ``sshd`` and its provider lists its key."""
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1", name="test1")
    pin.cover(sshd.port)  # the capsul's sshd
    config = tmp_path / "ssh_config"
    write_ssh_config(str(config), HOOK, "127.0.0.1 capsul-*")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    return SSH(pin, sshd, keys, str(config), str(known_hosts))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI (``CI`` set, as ``.ci/run`` does), a skipped test fails: nothing skips silently."""
    report = yield
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"sshpin: a test may not skip in CI (CI is set): {report.longrepr}"
    return report


@dataclass
class Static:
    """A plain static HTTPS server (no service logic) over a directory: what an operator
    without a service has. ``capsuls`` is served as application/json."""

    root: Path
    url: str


@pytest.fixture
def static(tmp_path: Path, tls: TLS) -> Iterator[Static]:
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {"": "application/json", ".sig": "text/plain", ".pub": "text/plain"}  # noqa: RUF012

        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Static(root, f"https://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()
