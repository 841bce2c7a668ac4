"""Faults root cannot see: a read-only cache dir (the hook runs as ``nobody`` through
``setpriv``, for whom modes bind), and DNS failure for ``resolve_dns`` (a mount namespace whose
resolv.conf names no reachable resolver, and a network namespace with no network at all).

The hook is the one ssh runs: ``python -I -S launch.py known-hosts ...`` (conftest.HOOK). Its
interpreter lives under /root, which ``nobody`` may not enter; for the unprivileged runs a
private mount namespace puts an empty world-readable tmpfs on /root with only the Python
installation bound back into it. Nothing outside the namespaces changes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshpin.core.keys import parse_line
from tests.conftest import HOOK, TLS, TOKEN, Keys, Pin
from tests.refserver import ReferenceServer

NOBODY, NOGROUP = 65534, 65534
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
    reason="needs root, setpriv and unshare (util-linux)",
)


class Unprivileged:
    """A sshpin user ``nobody`` in a directory it can reach (pytest's tmp dirs are 0700)."""

    def __init__(self, base: Path, api_url: str, tls: TLS, ttl: str = "1h") -> None:
        self.base = base
        self.cache = base / "cache"
        self.config = base / "config.toml"
        ca = base / "ca.pem"
        shutil.copy(tls.ca_path, ca)
        ca.chmod(0o644)
        self.config.write_text(
            f'[[provider]]\nname = "capsul"\ntype = "capsul"\napi_url = "{api_url}"\n'
            f'hosts = ["capsul-*", "*.example.org"]\nca_bundle = "{ca}"\nttl = "{ttl}"\n'
        )
        self.config.chmod(0o644)  # root's, read-only for nobody: allowed, as ssh's StrictModes
        self.cache.mkdir(mode=0o700)
        os.chown(self.cache, NOBODY, NOGROUP)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "SSHPIN_CONFIG": str(self.config),
                    "SSHPIN_CACHE_DIR": str(self.cache), "SSHPIN_TOKEN_CAPSUL": TOKEN}  # fmt: skip

    def hook(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The hook as ``nobody``, in a mount namespace where /root holds only Python."""
        python_home = Path(HOOK[0]).resolve().parents[3]  # e.g. /root/.pyenv
        keep = self.base / "python"
        keep.mkdir(exist_ok=True)
        hook = " ".join(shlex.quote(a) for a in [*HOOK, "known-hosts", *args])
        script = "set -e\n"
        if str(python_home).startswith("/root/"):
            script += (
                f"mount --bind {shlex.quote(str(python_home))} {shlex.quote(str(keep))}\n"
                "mount -t tmpfs -o mode=0755 tmpfs /root\n"
                f"mkdir -p {shlex.quote(str(python_home))}\n"
                f"mount --bind {shlex.quote(str(keep))} {shlex.quote(str(python_home))}\n"
            )
        script += f"exec setpriv --reuid={NOBODY} --regid={NOGROUP} --clear-groups {hook}\n"
        return subprocess.run(["unshare", "--mount", "sh", "-c", script], env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def nobody(provider: ReferenceServer, tls: TLS) -> Iterator[Unprivileged]:
    base = Path(tempfile.mkdtemp(prefix="sshpin-nobody-"))
    base.chmod(0o755)
    try:
        yield Unprivileged(base, provider.api_url, tls)
    finally:
        shutil.rmtree(base)


def read_only(d: Path) -> None:
    """``chmod -R a-w``: every directory 0500, every file 0400 (all of them nobody's)."""
    for p in [d, *d.rglob("*")]:
        p.chmod(0o500 if p.is_dir() else 0o400)


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_read_only_cache_dir(
    nobody: Unprivileged, provider: ReferenceServer, keys: Keys, tls: TLS
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-ro", [keys.pub(keys.host)])
    want = f"capsul-ro {' '.join(keys.pub(keys.host).split()[:2])}\n"
    warm = nobody.hook("ORDER", "capsul-ro")
    assert (warm.returncode, warm.stdout, warm.stderr) == (0, want, "")
    assert provider.api.count() == 1
    # the cache, written by nobody, made read-only: cached keys are still served, silently
    read_only(nobody.cache)
    before = snapshot(nobody.cache)
    cached = nobody.hook("ORDER", "capsul-ro")
    assert (cached.returncode, cached.stdout, cached.stderr) == (0, want, "")
    assert provider.api.count() == 1
    # a host the cache cannot answer: fetched, verified and served, with one line saying
    # the cache cannot keep it; nothing in the cache changes
    provider.api.add("capsul-new", [keys.pub(keys.rebuilt)])
    new = nobody.hook("ORDER", "capsul-new")
    rebuilt = parse_line(keys.pub(keys.rebuilt)).sha256()
    assert new.returncode == 0
    assert new.stdout == f"capsul-new {' '.join(keys.pub(keys.rebuilt).split()[:2])}\n"
    lines = new.stderr.splitlines()
    assert lines[0] == (
        f"sshpin: capsul-new: cache dir {nobody.cache}/capsul: Permission denied: "
        "nothing fetched now can be cached"
    )
    assert lines[1:] == [f"sshpin: capsul-new: host keys changed at provider: +{rebuilt}"]
    assert snapshot(nobody.cache) == before
    # the provider down as well: the fresh cached document still answers, and nothing vouches
    provider.stop()
    down = nobody.hook("ORDER", "capsul-other")
    assert (down.returncode, down.stdout) == (0, "")
    assert down.stderr.splitlines()[1:] == [
        "sshpin: capsul-other: not a capsul of account alice@example.org at provider 'capsul'"
    ]
    assert "internal error" not in down.stderr


def test_read_only_empty_cache_dir(
    nobody: Unprivileged, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-ro", [keys.pub(keys.host)])
    nobody.cache.chmod(0o500)
    cold = nobody.hook("ORDER", "capsul-ro")
    assert cold.returncode == 0
    assert cold.stdout == f"capsul-ro {' '.join(keys.pub(keys.host).split()[:2])}\n"
    assert cold.stderr == (
        f"sshpin: capsul-ro: cache dir {nobody.cache}/capsul: No such file or directory: "
        "nothing fetched now can be cached\n"
    )
    assert list(nobody.cache.iterdir()) == []


@pytest.mark.parametrize("fault", ["no resolver", "no network"])
def test_dns_failure_for_resolve_dns(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path, fault: str
) -> None:
    """``resolve_dns`` with no DNS answer: one line naming the DNS failure, quickly; never
    "not a capsul" (which would read as if the name were not the provider's)."""
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-dns", [keys.pub(keys.host)], ipv4="192.0.2.7", name="dns")
    pin.write_config(hosts='["capsul-*", "*.example.org"]')
    assert pin.hook("ORDER", "capsul-dns").stdout  # the document is cached
    if fault == "no resolver":  # resolv.conf names a resolver nothing answers for
        conf = tmp_path / "resolv.conf"
        conf.write_text("nameserver 127.0.0.53\noptions timeout:1 attempts:1\n")
        wrap = ["unshare", "--mount", "sh", "-c",
                f'mount --bind {conf} /etc/resolv.conf && exec "$@"', "-"]  # fmt: skip
    else:  # a network namespace: no interface up, no route, the provider unreachable too
        wrap = ["unshare", "--net"]
    start = time.monotonic()
    done = subprocess.run([*wrap, *HOOK, "known-hosts", "ORDER", "web1.example.org"],
                          env=pin.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    took = time.monotonic() - start
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "sshpin: web1.example.org: cannot resolve web1.example.org (Temporary failure in name "
        "resolution): DNS is needed to match it to a capsul\n"
    )
    assert took < 5, took
