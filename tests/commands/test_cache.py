"""``sshpin cache list|show|refresh|clear|history`` and ``fingerprints``: populated, empty and
damaged caches, key rotation seen through real ssh, and a writer killed mid-append."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sshpin.store.cachedir import ProviderCache
from sshpin.store.history import append_history, history_record, read_history
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer, fill_cache


def blob(pub: str) -> list[str]:
    return pub.split()[:2]


@pytest.fixture
def populated(pin: Pin, provider: ReferenceServer, keys: Keys) -> Pin:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1", name="test1")
    provider.api.add("capsul-test2", [keys.pub(keys.rebuilt)], ipv4="192.0.2.2", name="web")
    done = pin.hook("HOSTNAME", "127.0.0.1", *blob(keys.pub(keys.host)))
    assert done.returncode == 0 and done.stdout
    assert pin.run("cache", "refresh", "--all").returncode == 0  # and the listing
    return pin


def test_list_json_fields_and_table(populated: Pin, keys: Keys) -> None:
    done = populated.run("cache", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["capsul"] for r in rows] == ["capsul-test1", "capsul-test2"]
    first = rows[0]
    assert set(first) == {
        "provider", "source", "capsul", "names", "addresses", "keys", "fetched_at",
        "fresh_until", "stale_until", "signed", "state",
    }  # fmt: skip
    assert first["provider"] == "capsul" and first["source"].endswith("/api/capsuls")
    assert first["names"] == ["test1"] and first["addresses"] == ["127.0.0.1"]
    from sshpin.core.keys import parse_line

    fp = parse_line(keys.pub(keys.host)).sha256()
    assert first["keys"] == [{"type": "ssh-ed25519", "bits": 256, "sha256": fp}]
    assert first["state"] == "fresh" and first["signed"] is False
    fetched = time.mktime(time.strptime(first["fetched_at"], "%Y-%m-%dT%H:%M:%SZ"))
    fresh = time.mktime(time.strptime(first["fresh_until"], "%Y-%m-%dT%H:%M:%SZ"))
    stale = time.mktime(time.strptime(first["stale_until"], "%Y-%m-%dT%H:%M:%SZ"))
    assert (fresh - fetched, stale - fresh) == (3600, 7 * 86400)

    table = populated.run("cache", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["PROVIDER", "CAPSUL", "NAMES"]
    assert any("capsul-test1" in line and fp in line for line in table)
    assert len({line.index("ED25519") for line in table[1:]}) == 1  # aligned columns

    populated.expire(2 * 3600)
    assert json.loads(populated.run("cache", "list", "--json").stdout)[0]["state"] == "stale"


def test_show_prints_exactly_what_the_hook_prints_and_why(populated: Pin) -> None:
    for token in ("127.0.0.1", "[127.0.0.1]:2222", "capsul-test2"):
        hook = populated.hook("ORDER", token, "NONE", "NONE")
        shown = populated.run("cache", "show", token, "--json")
        assert shown.returncode == 0, shown.stderr
        info = json.loads(shown.stdout)
        assert "\n".join(info["known_hosts"]) + "\n" == hook.stdout
    info = json.loads(populated.run("cache", "show", "127.0.0.1", "--json").stdout)
    assert (info["capsul"], info["rule"], info["provider"]) == ("capsul-test1", "address", "capsul")
    text = populated.run("cache", "show", "127.0.0.1").stdout
    assert "why: resolved by address to capsul-test1" in text
    unknown = populated.run("cache", "show", "example.org")
    assert unknown.returncode == 2 and "not pinned" in unknown.stderr


def test_fingerprints_are_ssh_keygen_l_byte_for_byte(populated: Pin, tmp_path: Path) -> None:
    for token in ("127.0.0.1", "[127.0.0.1]:2222"):
        lines = populated.hook("ORDER", token).stdout
        known = tmp_path / "kh"
        known.write_text(lines)
        for extra in ([], ["--md5"]):
            ours = populated.run("fingerprints", token, *extra)
            assert ours.returncode == 0, ours.stderr
            args = ["-E", "md5"] if extra else []
            theirs = subprocess.run(
                ["ssh-keygen", "-l", *args, "-f", str(known)], capture_output=True, text=True
            )
            assert ours.stdout == theirs.stdout
    missing = populated.run("fingerprints", "example.org")
    assert missing.returncode == 2 and "no provider or pin vouches" in missing.stderr


def test_commands_on_an_empty_cache(pin: Pin, provider: ReferenceServer, keys: Keys) -> None:
    assert pin.run("cache", "list").stdout == "nothing cached or pinned\n"
    assert json.loads(pin.run("cache", "list", "--json").stdout) == []
    assert pin.run("cache", "history").stdout == "no key changes recorded\n"
    assert json.loads(pin.run("cache", "history", "--json").stdout) == []
    assert pin.run("cache", "clear", "--all").returncode == 0
    show = pin.run("cache", "show", "capsul-test1")
    assert show.returncode == 2 and "nothing is cached yet" in show.stdout
    provider.api.add("capsul-test1", [keys.pub(keys.host)])
    fps = pin.run("fingerprints", "capsul-test1")  # fetches, as the hook would
    assert fps.returncode == 0 and fps.stdout.startswith("256 SHA256:")


def test_damaged_files_are_named_and_skipped(populated: Pin) -> None:
    hosts = populated.cache / "capsul" / "hosts"
    (hosts / "127.0.0.1").write_text("sshpin-host 1\nhost 127.0.0.1\ngarbage")
    done = populated.run("cache", "list", "--json")
    assert done.returncode == 0
    assert len(json.loads(done.stdout)) == 2  # the document still lists both capsuls
    assert done.stderr == f"sshpin: cache: {hosts / '127.0.0.1'}: damaged, ignored\n"
    show = populated.run("cache", "show", "127.0.0.1", "--json")
    assert show.returncode == 0 and json.loads(show.stdout)["known_hosts"]  # from the document
    (populated.cache / "capsul" / "document.json").write_bytes(b"{not json")
    done = populated.run("cache", "list", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert "document.json: damaged, ignored" in done.stderr
    assert populated.run("cache", "history").returncode == 0


def test_refresh_reports_changes_and_keeps_the_cache_when_it_fails(
    populated: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    from sshpin.core.keys import parse_line

    old = parse_line(keys.pub(keys.host)).sha256()
    new = parse_line(keys.pub(keys.forged)).sha256()
    same = populated.run("cache", "refresh", "--all")
    assert same.returncode == 0 and "no key changes" in same.stdout
    provider.api.set_keys("capsul-test1", [keys.pub(keys.forged)])
    done = populated.run("cache", "refresh", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert f"changed  capsul-test1 (test1)  +{new} -{old}" in done.stdout
    assert populated.hook("ORDER", "127.0.0.1").stdout.split()[2] == blob(keys.pub(keys.forged))[1]

    document = populated.cache / "capsul" / "document.json"
    before = document.read_bytes()
    provider.api.status_override = 503
    down = populated.run("cache", "refresh", "--all")
    assert down.returncode == 3
    assert down.stderr.splitlines()[-1] == (
        "sshpin: cache refresh: not every provider could be fetched"
    )
    assert document.read_bytes() == before
    unmanaged = populated.run("cache", "refresh", "example.org")
    assert unmanaged.returncode == 2


def test_clear_host_and_all_never_pins_or_history(populated: Pin, keys: Keys) -> None:
    store = ProviderCache(str(populated.cache), "capsul")
    assert store.hosts() == ["127.0.0.1"]
    history = read_history(str(populated.cache))
    assert history
    done = populated.run("cache", "clear", "127.0.0.1")
    assert done.stdout.startswith("cleared 1 cached entry for 127.0.0.1")
    assert store.hosts() == [] and store.read_document() is not None
    done = populated.run("cache", "clear", "--all")
    assert done.returncode == 0 and store.read_document() is None
    assert read_history(str(populated.cache)) == history
    usage = populated.run("cache", "clear")
    assert usage.returncode == 1


def test_ten_thousand_cached_hosts_are_all_listed(pin: Pin) -> None:
    pin.write_config(hosts='["capsul-*"]')
    from sshpin.providers import load_config

    cfg = load_config(str(pin.config))
    assert cfg is not None
    trust = cfg.provider("capsul").get("trust")
    ids = fill_cache(str(pin.cache), "capsul", 10_000, time.time(), trust)
    done = pin.run("cache", "list", "--json")
    assert done.returncode == 0 and done.stderr == ""
    rows = json.loads(done.stdout)
    assert [r["capsul"] for r in rows] == ids
    assert all(r["names"] == [f"vm{i}"] and r["state"] == "fresh" for i, r in enumerate(rows))
    table = pin.run("cache", "list").stdout
    assert table.count("\n") == 10_001
    # the speed of this listing is measured in benchmarks/, not here


WRITER = """
import sys
from sshpin.store.history import append_history
root, tag = sys.argv[1], sys.argv[2]
i = 0
while True:
    append_history(root, [{"time": "t", "event": "changed", "capsul": tag, "n": i,
                           "added": ["SHA256:" + "x" * 43] * 20, "removed": []}])
    i += 1
"""


def test_history_survives_kill_9_mid_append(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    log = root / "history.log"
    for round_ in range(12):
        size = log.stat().st_size if log.exists() else 0
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), f"w{round_}"])
        deadline = time.monotonic() + 30  # wait for the event (it is appending), not a guess
        while (log.stat().st_size if log.exists() else 0) <= size and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.02 * round_)  # then kill it somewhere in its stream of appends
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    lines = (root / "history.log").read_bytes().split(b"\n")
    records = read_history(str(root))
    parsed = [r for r in records if str(r.get("capsul", "")).startswith("w")]
    assert len(parsed) >= len(lines) - 13  # at most one torn line per killed writer
    for tag in {r["capsul"] for r in parsed}:
        numbers = [r["n"] for r in parsed if r["capsul"] == tag]
        assert numbers == list(range(len(numbers)))  # no record lost before the kill
    # a torn last line (as a crash mid-write leaves) is sealed off by the next append
    with open(root / "history.log", "ab") as f:
        f.write(b'{"time": "t", "capsul": "torn", "ev')
    after_record = history_record(0.0, "p", "after", "", [], "changed", set(), {"x"}, "s")
    append_history(str(root), [after_record])
    after = read_history(str(root))
    assert after[-1]["capsul"] == "after" and len(after) == len(records) + 1


@pytest.mark.slow
def test_rotation_through_real_ssh_is_recorded_and_announced_once(
    ssh: SSH, provider: ReferenceServer, keys: Keys
) -> None:
    from sshpin.core.keys import parse_line

    assert ssh.ssh("true").returncode == 0
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    ssh.sshd.restart([keys.rebuilt])
    done = ssh.ssh("echo", "rebuilt")
    assert done.returncode == 0, done.stderr
    old = parse_line(keys.pub(keys.host)).sha256()
    new = parse_line(keys.pub(keys.rebuilt)).sha256()
    announcements = [line for line in done.stderr.splitlines() if "host keys changed" in line]
    assert announcements == [f"sshpin: capsul-test1: host keys changed at provider: +{new} -{old}"]
    history = ssh.pin.run("cache", "history", "127.0.0.1", "--json")
    events = [(r["event"], r["added"], r["removed"]) for r in json.loads(history.stdout)]
    assert events == [("first-seen", [old], []), ("changed", [new], [old])]
    text = ssh.pin.run("cache", "history", "capsul-test1").stdout.splitlines()
    assert len(text) == 2 and f"+{new} -{old}" in text[1]


def test_refresh_of_an_unknown_capsul_fails_and_says_why_once(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-a", [keys.pub(keys.host)])
    done = pin.run("cache", "refresh", "capsul-nosuch")
    assert done.returncode == 2
    assert done.stderr == (
        "sshpin: cache refresh: capsul-nosuch: provider 'capsul' lists no such host\n"
    )


def test_logout_of_an_unknown_provider_says_so_and_fails(pin: Pin) -> None:
    pin.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    done = pin.run("logout", "capsl")
    assert done.returncode == 1
    assert "no provider named 'capsl'" in done.stderr and "(known: capsul)" in done.stderr
    assert "keyring" not in done.stderr


def test_proxy_help_shows_the_tokens_as_written() -> None:
    from tests.conftest import SSHPIN

    done = subprocess.run([SSHPIN, "proxy", "--help"], capture_output=True, text=True)
    assert "ProxyCommand sshpin proxy %h %p %k." in " ".join(done.stdout.split())
    assert "(%k)" in done.stdout
    assert "%%" not in done.stdout
