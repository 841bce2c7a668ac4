"""trust/obtain.py: the one fetch sequence, with a Fetch that keeps its item in the real cache
directory and counts its fetches (the provider behind it is not what is tested here: the
end-to-end tests drive the real one)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sshpin.core.config import ProviderConfig
from sshpin.providers import validate_table
from sshpin.store.cachedir import ProviderCache
from sshpin.store.history import HistoryRecord
from sshpin.trust.obtain import Fetch, obtain


class Item:
    def __init__(self, fetched_at: float, expires: float = 0.0) -> None:
        self.fetched_at = fetched_at
        self.expires = expires


class Counted(Fetch[Item]):
    """An item stored as a small JSON file in the provider's cache dir."""

    def __init__(self, store: ProviderCache) -> None:
        self.subject = "capsul-x"
        self.path = Path(store.dir) / "item.json"
        self.fetches = 0

    def read(self) -> Item | None:
        try:
            return Item(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def fetch(self, previous: Item | None) -> Item:
        self.fetches += 1
        return Item(time.time())

    def changes(self, item: Item, previous: Item | None) -> list[HistoryRecord]:
        return []

    def write(self, item: Item) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"fetched_at": item.fetched_at}))


def _setup(tmp_path: Path) -> tuple[ProviderCache, ProviderConfig, Counted]:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    store = ProviderCache(str(root), "capsul")
    os.makedirs(store.dir, mode=0o700)
    table = {"name": "capsul", "type": "capsul", "hosts": ["capsul-*"],
             "api_url": "https://c.example/api", "ttl": "1h"}  # fmt: skip
    return store, ProviderConfig(validate_table(table)), Counted(store)


def test_a_fresh_item_written_after_the_caller_looked_is_used_not_fetched_again(
    tmp_path: Path,
) -> None:
    """The race of N cold starts: a caller found nothing fresh and asks (no ``mismatch``);
    meanwhile another process fetched and wrote. No second request."""
    store, cfg, what = _setup(tmp_path)
    what.write(Item(time.time()))  # the other process's fetch, done after this one looked
    assert obtain(what, store, cfg).fetched_at == what.read().fetched_at  # type: ignore[union-attr]
    assert what.fetches == 0


def test_a_stale_item_is_fetched_once_and_a_mismatch_refetches_a_fresh_one(
    tmp_path: Path,
) -> None:
    store, cfg, what = _setup(tmp_path)
    what.write(Item(time.time() - 2 * 3600))  # past ttl
    obtain(what, store, cfg)
    assert what.fetches == 1
    obtain(what, store, cfg, mismatch="capsul-x")  # fresh now, but the server's key is unknown
    assert what.fetches == 2
    obtain(what, store, cfg, mismatch="capsul-x")  # at most once per 30 s per host
    assert what.fetches == 2
    obtain(what, store, cfg, force=True)  # cache refresh: always
    assert what.fetches == 3
