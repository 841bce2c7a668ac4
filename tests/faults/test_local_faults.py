"""Local faults: unsafe or damaged caches, kill -9 during writes, a full disk, clock jumps."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import time
from pathlib import Path

from sshpin.store.entries import HostEntry
from sshpin.trust.document import Document
from tests.conftest import SSHPIN, Keys, Pin
from tests.refserver import ReferenceServer


def key_args(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


def test_a_cache_dir_of_another_user_or_group_writable_is_refused_with_the_fix(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    pin.cache.mkdir(mode=0o700)
    os.chown(pin.cache, 65534, 65534)
    done = pin.hook("ORDER", "capsul-l")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == (
        f"sshpin: capsul-l: cache dir {pin.cache}: owned by uid 65534, not by you: "
        "refusing to use it\n"
    )
    os.chown(pin.cache, 0, 0)
    pin.cache.chmod(0o770)
    done = pin.hook("ORDER", "capsul-l")
    assert done.stdout == "" and f"(fix: chmod 700 {pin.cache})" in done.stderr
    listing = pin.run("cache", "list")
    assert listing.returncode == 1 and "writable by group or others" in listing.stderr
    pin.cache.chmod(0o700)
    assert pin.hook("ORDER", "capsul-l").stdout
    assert provider.api.count() == 1  # nothing was fetched while the cache was unsafe


def test_a_cache_dir_that_cannot_be_made_is_one_clear_line(pin: Pin) -> None:
    pin.env["SSHPIN_CACHE_DIR"] = str(pin.config) + "/cache"  # under a regular file
    done = pin.hook("ORDER", "capsul-l")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.startswith(f"sshpin: capsul-l: cache dir {pin.config}/cache: ")
    assert "internal error" not in done.stderr and done.stderr.count("\n") == 1


def test_truncated_or_garbage_cache_files_are_misses(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    args = ["HOSTNAME", "capsul-l", *key_args(keys, keys.host)]
    assert pin.hook(*args).stdout
    entry = pin.cache / "capsul" / "hosts" / "capsul-l"
    document = pin.cache / "capsul" / "document.json"
    for damage in (b"", b"\x00" * 100, entry.read_bytes()[:40], b"sshpin-host 1\nend\n"):
        entry.write_bytes(damage)
        document.write_bytes(document.read_bytes()[:25])
        done = pin.hook(*args)
        assert done.returncode == 0 and done.stdout.split()[1:] == key_args(keys, keys.host)
        assert done.stderr == ""
    assert provider.api.count() == 5  # each damage was a miss, refetched


def cache_files_whole(root: Path) -> int:
    """Every cache file parses or is a temp file a killed writer left; returns their count."""
    count = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".tmp."):
            continue
        if path.parent.name == "hosts":
            assert HostEntry.from_text(path.read_text()) is not None, path
        elif path.name == "document.json":
            Document.from_bytes(path.read_bytes())
        count += 1
    return count


SLOW_WRITES = """
import os, time
_write = os.write
def _slow(fd, data):  # short, slow writes: a kill lands inside a write, not between files
    time.sleep(0.005)
    return _write(fd, bytes(data[:2048]))
os.write = _slow
"""


def test_kill_9_at_any_moment_leaves_no_torn_file(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    for i in range(400):  # a document of about 130 KiB: some 70 writes of 5 ms
        provider.api.add(f"capsul-k{i}", [keys.pub(keys.host if i % 2 else keys.rebuilt)])
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_WRITES)  # loaded by the console script's site
    env = {**pin.env, "PYTHONPATH": str(slow)}
    rng = random.Random(7)
    inside = 0
    for round_ in range(25):
        for host in (pin.cache / "capsul" / "hosts").glob("*") if pin.cache.exists() else []:
            host.unlink()
        if round_ % 3 == 0 and (pin.cache / "capsul" / "document.json").exists():
            (pin.cache / "capsul" / "document.json").unlink()
        proc = subprocess.Popen(
            [SSHPIN, "known-hosts", "ORDER", f"capsul-k{round_}"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30  # wait for the event (a write has begun), not a guess
        while proc.poll() is None and time.monotonic() < deadline and round_ % 5:
            if pin.cache.exists() and next(pin.cache.rglob(".tmp.*"), None):
                break
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.2))  # then anywhere inside the write, or after it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if pin.cache.exists():
            cache_files_whole(pin.cache)
            torn = list(pin.cache.rglob(".tmp.*"))  # a temp file left: killed mid-write
            inside += bool(torn)
            for path in torn:
                path.unlink()
    assert inside >= 5, f"only {inside} of 25 kills landed inside a write"
    done = pin.hook("ORDER", "capsul-k1")
    assert done.stdout.split()[1:] == key_args(keys, keys.host)


def test_a_full_disk_still_prints_the_keys_and_keeps_the_cache(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    assert pin.hook("ORDER", "capsul-l").stdout
    pin.expire(2 * 3600)
    expired = {p: p.read_bytes() for p in pin.cache.rglob("*") if p.is_file()}
    provider.api.set_keys("capsul-l", [keys.pub(keys.rebuilt)])

    def small_disk() -> None:  # any file write beyond 200 bytes fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    done = subprocess.run(
        [SSHPIN, "known-hosts", "ORDER", "capsul-l"], env=pin.env, capture_output=True,
        text=True, preexec_fn=small_disk, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.split()[1:] == key_args(keys, keys.rebuilt)  # the new keys, printed
    after = {p: p.read_bytes() for p in pin.cache.rglob("*") if p.is_file()}
    for path, data in expired.items():  # nothing torn: every old file still whole
        if path.name != "config.marshal":
            assert after.get(path) == data, path
    assert not [p for p in pin.cache.rglob(".tmp.*")]  # failed writes cleaned up


def test_clock_jumps_back_and_forward(pin: Pin, provider: ReferenceServer, keys: Keys) -> None:
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    assert pin.hook("ORDER", "capsul-l").stdout
    assert provider.api.count() == 1
    pin.expire(-2 * 86400)  # fetched "in two days": the clock went back; not trusted as fresh
    assert pin.hook("ORDER", "capsul-l").stdout
    assert provider.api.count() == 2
    pin.expire(400 * 86400)  # the clock jumped a year ahead: expired, refetched
    assert pin.hook("ORDER", "capsul-l").stdout
    assert provider.api.count() == 3
