"""``sshpin cache refresh`` never blocks ssh (issue 30, item 5): the listing is built aside,
with no lock the hook waits on, and swapped in under the provider's lock with the checks of
today (account, rollback floor) made again; a ``?host=`` answer fetched meanwhile is the later
statement and prevails after the swap; a refresh that fails leaves the cache as it was."""

from __future__ import annotations

import binascii
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sshpin.core.names import Query
from sshpin.providers.capsul import CapsulProvider
from sshpin.store.cachedir import ProviderCache
from tests.conftest import SSH, SSHPIN, Pin
from tests.providers.test_capsul_fleet import fleet, host, served, signed
from tests.refserver import ReferenceServer, generated_key

OLD, NEW = generated_key(900_001)[0], generated_key(900_002)[0]


def blob(line: str) -> bytes:
    return binascii.a2b_base64(line.split()[1])


def capsul(pin: Pin, monkeypatch: pytest.MonkeyPatch) -> CapsulProvider:
    """The provider as ``sshpin`` builds it, in this process (the user's environment)."""
    from sshpin.providers import for_config, load_config

    for k, v in pin.env.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(str(pin.config))
    assert cfg is not None
    made = for_config(cfg.provider("capsul"), str(pin.cache))
    assert isinstance(made, CapsulProvider)
    return made


def refresher(pin: Pin, monkeypatch: pytest.MonkeyPatch, during: Any) -> CapsulProvider:
    """A ``cache refresh --all`` whose ``during(pages)`` runs after each page it verified:
    what other sshpins do while the listing comes in."""
    p = capsul(pin, monkeypatch)
    p.all_pages = True
    p.progress = lambda pages, _count: during(pages)
    return p


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but a refresh's temporary files (``leftovers``)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp.")}  # fmt: skip


def leftovers(pin: Pin) -> list[str]:
    return [p.name for p in (pin.cache / "capsul").glob(".tmp.*")]


# -- with real ssh -------------------------------------------------------------------------


@pytest.mark.slow
def test_ssh_to_a_capsul_not_yet_indexed_does_not_wait_on_a_long_refresh(
    ssh: SSH, provider: ReferenceServer
) -> None:
    # The capsul is rebuilt (its key is now the sshd's) after the refresh fetched its page,
    # and no listing is indexed yet. (A capsul added mid-listing would shift the reference
    # server's offset page tokens: "listed twice", refused whole, as it must be.)
    pin, keys = ssh.pin, ssh.keys
    provider.api.add("capsul-rebuilt", [keys.pub(keys.rebuilt)])  # on page 1
    fleet(pin, provider, 100_000)
    provider.api.page_delay = 0.2  # 100 pages: a refresh of 20 s and more
    refresh = subprocess.Popen([SSHPIN, "cache", "refresh", "--all"], env=pin.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    alias = ["-o", "HostKeyAlias=capsul-rebuilt", "127.0.0.1", "echo", "rebuilt-ok"]
    try:
        deadline = time.monotonic() + 60
        while not any(q.startswith("page_token=p3000") for q in provider.api.queries):
            assert time.monotonic() < deadline and refresh.poll() is None, refresh.communicate()
            time.sleep(0.1)
        provider.api.set_keys("capsul-rebuilt", [keys.pub(keys.host)])
        started = time.monotonic()
        done = ssh.tool("ssh", *ssh.base(), "-p", str(ssh.sshd.port), *alias)
        took = time.monotonic() - started
        assert done.returncode == 0 and done.stdout.strip() == "rebuilt-ok", done.stderr
        assert took < 8, f"ssh took {took:.1f} s: it waited on the refresh"
        running = refresh.poll() is None
        assert running, f"the refresh was over before ssh ran: {refresh.communicate()}"
        _, err = refresh.communicate(timeout=300)
    finally:
        if refresh.poll() is None:
            refresh.kill()
            refresh.wait()
    assert refresh.returncode == 0, err
    # the refresh is used: any capsul from its index, the provider down; and the rebuilt
    # capsul from its later ?host= answer, not from the listing's page (its old key)
    provider.api.status_override = 503
    served(pin, 76_543)
    done = ssh.tool("ssh", *ssh.base(), "-p", str(ssh.sshd.port), *alias)
    assert done.returncode == 0 and done.stdout.strip() == "rebuilt-ok", done.stderr


# -- the swap ------------------------------------------------------------------------------


def test_a_lookup_made_during_the_refresh_prevails_after_the_swap(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.api.add("capsul-rebuilt", [OLD])  # on page 1, with its old key
    fleet(pin, provider, 250, page=100)
    hook = capsul(pin, monkeypatch)
    waited: list[float] = []

    def during(pages: int) -> None:
        if pages == 1:  # rebuilt after its page came in; ssh asks, the lookup says NEW
            provider.api.set_keys("capsul-rebuilt", [NEW])
            started = time.monotonic()
            entry = hook.answer(Query("capsul-rebuilt", blob(NEW)), fetch=True)
            waited.append(time.monotonic() - started)
            assert entry is not None and entry.has(blob(NEW))

    refresher(pin, monkeypatch, during).refresh(None)
    assert waited and waited[0] < 8, waited  # no wait on the refresh
    # the listing (page 1: OLD) is in place, and the later lookup (NEW) still prevails
    provider.api.status_override = 503
    served(pin, 200)
    after = capsul(pin, monkeypatch)
    entry = after.answer(Query("capsul-rebuilt", blob(OLD)), fetch=False)
    assert entry is not None and entry.has(blob(NEW)) and not entry.has(blob(OLD))
    done = pin.hook("HOSTNAME", "capsul-rebuilt", *OLD.split())
    plain = [line for line in done.stdout.splitlines() if not line.startswith("@revoked ")]
    assert NEW.split()[1] in done.stdout and OLD.split()[1] not in "".join(plain), done.stderr
    assert f"@revoked capsul-rebuilt {OLD.split()[0]} {OLD.split()[1]}" in done.stdout
    assert leftovers(pin) == []


def test_an_older_listing_never_overwrites_a_newer_document(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sshpin.providers.capsul import DocumentFetch

    fleet(pin, provider, 250, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    store = ProviderCache(str(pin.cache), "capsul")
    kept: list[dict[str, bytes]] = []

    def during(pages: int) -> None:
        if pages == 2:  # another sshpin keeps a newer document meanwhile
            other = capsul(pin, monkeypatch)
            doc = DocumentFetch(other).read()
            assert doc is not None
            doc.generated_at = time.time() + 60
            doc.fetched_at = time.time()
            DocumentFetch(other).write(doc)
            kept.append(snapshot(pin.cache / "capsul"))

    p = refresher(pin, monkeypatch, during)
    p.refresh(None)
    assert kept and snapshot(pin.cache / "capsul") == kept[0]  # the newer state stays
    assert store.read_document() is not None and leftovers(pin) == []


def test_an_account_recorded_during_the_refresh_binds_its_listing(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sshpin.errors import VerificationError

    fleet(pin, provider, 250, page=100)
    hook = capsul(pin, monkeypatch)

    def during(pages: int) -> None:
        if pages == 3:  # the last page is in; the hook's first answer (another account's) is
            # recorded before the swap
            provider.api.account = "mallory@example.org"
            line = generated_key(7)[0]
            assert hook.answer(Query(host(7), blob(line)), fetch=True) is not None
            provider.api.account = "alice@example.org"
            before.update(snapshot(pin.cache))

    before: dict[str, bytes] = {}
    p = refresher(pin, monkeypatch, during)
    with pytest.raises(VerificationError, match="mix-and-match"):
        p.refresh(None)
    assert snapshot(pin.cache) == before and leftovers(pin) == []


def test_a_floor_raised_during_the_refresh_refuses_its_listing_as_a_rollback(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch, ops: Any
) -> None:
    from sshpin.errors import VerificationError

    signed(pin, provider, ops)
    fleet(pin, provider, 250, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    store = ProviderCache(str(pin.cache), "capsul")
    floors = (pin.cache / "capsul" / "newest.json").read_text()
    key = next(k for k in json.loads(floors) if k.startswith("account "))
    before: dict[str, bytes] = {}

    def during(pages: int) -> None:
        if pages == 3:  # the last page is in; another sshpin accepted a newer listing since
            store.record_newest(key, time.time() + 60)
            before.update(snapshot(pin.cache))

    with pytest.raises(VerificationError, match="rollback"):
        refresher(pin, monkeypatch, during).refresh(None)
    assert snapshot(pin.cache) == before and leftovers(pin) == []


def test_a_refresh_failing_midway_leaves_the_cache_exactly_as_it_was(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sshpin.errors import ProviderError

    fleet(pin, provider, 250, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    served(pin, 3)
    before = snapshot(pin.cache)

    def during(pages: int) -> None:
        if pages == 2:
            provider.api.faults["page_fail"] = 3

    with pytest.raises(ProviderError, match="HTTP 500"):
        refresher(pin, monkeypatch, during).refresh(None)
    assert snapshot(pin.cache) == before and leftovers(pin) == []


def test_what_a_killed_refresh_left_behind_is_removed_by_the_next(
    pin: Pin, provider: ReferenceServer
) -> None:
    import os

    fleet(pin, provider, 250, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    old, recent = (
        pin.cache / "capsul" / ".tmp.1.dead.cdb",
        pin.cache / "capsul" / ".tmp.2.live.json",
    )
    for path in (old, recent):
        path.write_bytes(b"x" * 4096)
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    assert pin.run("cache", "refresh", "--all").returncode == 0
    assert leftovers(pin) == [recent.name]  # one another refresh may still be writing stays


def test_two_refreshes_do_not_run_at_once_and_the_hook_waits_on_neither(
    pin: Pin, provider: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet(pin, provider, 250, page=100)
    results: list[subprocess.CompletedProcess[str]] = []

    def during(pages: int) -> None:
        if pages == 1:
            results.append(pin.run("cache", "refresh", "--all"))
            results.append(pin.hook("HOSTNAME", host(220), *generated_key(220)[0].split()))

    refresher(pin, monkeypatch, during).refresh(None)
    second, hooked = results
    assert second.returncode != 0 and "another 'sshpin cache refresh'" in second.stderr
    assert hooked.stdout.split()[1:] == generated_key(220)[0].split(), hooked.stderr


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    from sshpin.commands.demo import keygen
    from sshpin.trust import sshsig

    path = tmp_path_factory.mktemp("ops") / "ops"
    return keygen(str(path), comment="ops"), sshsig.load_private_key(str(path))
