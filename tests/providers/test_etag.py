"""ETag and 304 on every path that fetches a document: the hook's refetch after ttl, the
refetch for an unknown key, and ``cache refresh``; a changed document is fetched whole."""

from __future__ import annotations

import json

from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer


def keys_of(pin: Pin, keys: Keys, which: str) -> list[str]:
    done = pin.hook("HOSTNAME", "capsul-e", *keys.pub(which).split()[:2])
    assert done.returncode == 0
    return [line.split(" ", 1)[1] for line in done.stdout.splitlines()]


def test_the_hooks_refetch_after_ttl_revalidates_with_a_304(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-e", [keys.pub(keys.host)])
    host = " ".join(keys.pub(keys.host).split()[:2])
    assert keys_of(pin, keys, keys.host) == [host]
    assert (provider.api.count(), provider.api.not_modified) == (1, 0)
    pin.expire(2 * 3600)  # past ttl: the next connection refetches, conditionally
    done = pin.hook("HOSTNAME", "capsul-e", *keys.pub(keys.host).split()[:2])
    assert done.stdout.split(" ", 1)[1].strip() == host and done.stderr == ""
    assert (provider.api.count(), provider.api.not_modified) == (2, 1)
    rows = json.loads(pin.run("cache", "list", "--json").stdout)
    assert rows[0]["state"] == "fresh"  # the 304 renewed the fetch time
    pin.hook("HOSTNAME", "capsul-e", *keys.pub(keys.host).split()[:2])
    assert provider.api.count() == 2  # fresh again: no request at all


def test_an_unknown_key_refetch_and_cache_refresh_send_if_none_match(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-e", [keys.pub(keys.host)])
    assert keys_of(pin, keys, keys.host)
    pin.hook("HOSTNAME", "capsul-e", *keys.pub(keys.forged).split()[:2])  # unknown: refetch
    assert (provider.api.count(), provider.api.not_modified) == (2, 1)
    done = pin.run("cache", "refresh", "--all")
    assert done.returncode == 0 and "no key changes" in done.stdout, done.stderr
    assert (provider.api.count(), provider.api.not_modified) == (3, 2)


def test_a_changed_document_is_fetched_whole(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-e", [keys.pub(keys.host)])
    assert keys_of(pin, keys, keys.host)
    provider.api.set_keys("capsul-e", [keys.pub(keys.rebuilt)])  # a new body, a new ETag
    pin.age_mismatch_marks(31)
    rebuilt = " ".join(keys.pub(keys.rebuilt).split()[:2])
    assert keys_of(pin, keys, keys.rebuilt) == [rebuilt]
    assert provider.api.not_modified == 0
