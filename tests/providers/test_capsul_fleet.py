"""Large accounts (shared/DESIGN.md 4a, issue 12): ``?host=`` lookups, paged listings, gzip,
the listing's O(1) index, ``cache refresh --all``; and the faults of each, which leave the
cache byte for byte as it was."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from sshpin.trust import sshsig
from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer, generated_key

PAGE = 1000


def host(i: int) -> str:
    return f"capsul-g{i:06d}"


def ask(pin: Pin, i: int, name: str | None = None) -> tuple[str, str]:
    line = generated_key(i)[0]
    done = pin.hook("HOSTNAME", name or host(i), *line.split())
    assert done.returncode == 0
    return done.stdout, done.stderr


def served(pin: Pin, i: int, name: str | None = None) -> None:
    out, err = ask(pin, i, name)
    assert out.split()[1:] == generated_key(i)[0].split(), err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def fleet(pin: Pin, provider: ReferenceServer, count: int, page: int | None = PAGE) -> None:
    provider.api.generate(count)
    provider.api.page_size = page
    provider.api.gzip = True


def requests_for(provider: ReferenceServer, action: object) -> list[str]:
    before = len(provider.api.queries)
    action() if callable(action) else None
    return provider.api.queries[before:]


@pytest.mark.parametrize(
    "count", [10, 5_000, pytest.param(100_000, marks=pytest.mark.slow)], ids=str
)
def test_an_account_of_any_size(pin: Pin, provider: ReferenceServer, count: int) -> None:
    pin.write_config(hosts='["capsul-*", "10.*"]')
    fleet(pin, provider, count)
    # cold hook, then a new host: one small ?host= lookup each, whatever the account's size
    for i in (count - 1, count // 2):
        provider.api.bytes_sent = 0
        assert requests_for(provider, lambda: served(pin, i)) == [f"host={host(i)}"]  # noqa: B023
        assert provider.api.bytes_sent <= 256 * 1024
    # a cached hit: nothing asked
    assert requests_for(provider, lambda: served(pin, count - 1)) == []
    # cache refresh --all: every page, each verified
    before = len(provider.api.queries)
    done = pin.run("cache", "refresh", "--all", timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress
    assert len(provider.api.queries) - before == math.ceil(count / PAGE)
    # a host first seen after the listing: from its index
    assert requests_for(provider, lambda: served(pin, count // 3 + 1)) == []
    # the provider down: every capsul is served from the cache
    provider.api.status_override = 503
    before = provider.api.count()
    for i in (0, count // 3, count - 2):
        served(pin, i)
    served(pin, 1, name="10.0.0.2")  # by address, through the index
    assert provider.api.count() == before


def test_the_first_cold_call_of_a_large_paged_account_asks_host_and_no_page(
    pin: Pin, provider: ReferenceServer
) -> None:
    fleet(pin, provider, 100_000)
    provider.api.bytes_sent = 0
    assert requests_for(provider, lambda: served(pin, 99_999)) == [f"host={host(99_999)}"]
    assert provider.api.bytes_sent <= 256 * 1024, provider.api.bytes_sent


def test_the_first_cold_call_by_dns_name_asks_host_with_its_address_and_no_page(
    pin: Pin, provider: ReferenceServer
) -> None:
    """A host only DNS matches (``resolve_dns``): the term is the address it resolves to
    (here from /etc/hosts, no resolver asked); no page of the listing is fetched."""
    pin.write_config(hosts='["capsul-*", "localhost"]', extra="resolve_dns = true\n")
    fleet(pin, provider, 100_000)
    line = generated_key(7)[0]
    provider.api.add("capsul-local", [line], ipv4="127.0.0.1", ipv6="::1")
    provider.api.bytes_sent = 0
    asked = requests_for(provider, lambda: served(pin, 7, name="localhost"))
    assert asked == ["host=127.0.0.1"], asked
    assert provider.api.bytes_sent <= 256 * 1024, provider.api.bytes_sent
    assert not (pin.cache / "capsul" / "document.json").exists()


def test_a_lookup_answer_is_never_kept_as_the_listing(pin: Pin, provider: ReferenceServer) -> None:
    # a ?host= answer (it names its host) holds one capsul: kept as the listing, every other
    # capsul of the account would be "not a capsul of the account" from its index
    fleet(pin, provider, 10, page=None)
    served(pin, 3)
    assert not (pin.cache / "capsul" / "document.json").exists()
    assert requests_for(provider, lambda: served(pin, 4)) == [f"host={host(4)}"]


def test_an_old_server_ignoring_host_and_pages_keeps_working(
    pin: Pin, provider: ReferenceServer
) -> None:
    fleet(pin, provider, 5_000, page=None)
    provider.api.honour_host = False
    # the cold miss asks ?host=; the whole listing comes back, filtered, and kept
    assert requests_for(provider, lambda: served(pin, 7)) == [f"host={host(7)}"]
    assert requests_for(provider, lambda: served(pin, 4_321)) == []  # the index
    assert pin.run("cache", "refresh", "--all").returncode == 0
    served(pin, 99)


def test_a_listing_past_the_cap_names_the_cap_and_the_way_out(
    pin: Pin, provider: ReferenceServer
) -> None:
    fleet(pin, provider, 30_000, page=None)
    provider.api.gzip = False
    provider.api.honour_host = False  # an old server: neither filters nor pages
    out, err = ask(pin, 3)
    assert out == ""
    assert err.count("\n") == 1 and "4 MiB cap" in err and "?host=" in err, err


def test_a_paging_server_ignoring_host_says_what_to_do(pin: Pin, provider: ReferenceServer) -> None:
    fleet(pin, provider, 3_000)
    provider.api.honour_host = False
    served(pin, 5)  # on the first page (the answer to ?host=)
    assert not (pin.cache / "capsul" / "document.json").exists()  # a page is not the listing
    out, err = ask(pin, 2_500)
    assert out == "" and err.count("\n") == 1 and "cache refresh --all" in err, err
    assert pin.run("cache", "refresh", "--all").returncode == 0
    served(pin, 2_500)


# -- faults: one clear line, nothing for ssh, the cache as it was ---------------------------


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    path = tmp_path_factory.mktemp("ops") / "ops"
    return keygen(str(path), comment="ops"), sshsig.load_private_key(str(path))


def signed(pin: Pin, provider: ReferenceServer, ops: tuple[str, object]) -> None:
    """The provider signs with the ops key, which ``pin``'s config trusts."""
    pin.write_config(extra=f'signing_keys = ["{ops[0]}"]\n')
    provider.api.signing_key = ops[1]


@pytest.fixture
def listed(pin: Pin, provider: ReferenceServer, ops: tuple[str, object]) -> Pin:
    """A signed, paged account of 500 capsuls, wholly cached by ``cache refresh --all``."""
    signed(pin, provider, ops)
    fleet(pin, provider, 500, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    served(pin, 3)
    return pin


@pytest.mark.parametrize(
    ("fault", "value", "words"),
    [
        ("page_fail", 3, "HTTP 500"),
        ("token_cycle", True, "repeats"),
        ("page_account", 2, "mix-and-match"),
        ("page_bad_sig", 4, "signature refused"),
        ("page_old", 3, "rollback"),
        ("bomb", True, "exceeds the limit"),
        # a signed page names the token it answers: the last page replayed for the first (a
        # listing cut short, its other pages' capsuls and revocations gone) is refused
        ("first_is_last", True, "mix-and-match: an answer with page_token 'p400'"),
        ("no_page_token", True, "no page_token to a request for page_token 'p100'"),
        # a ?host= answer names its host: replayed for the first page, a listing of one
        ("first_is_lookup", "capsul-g000420", "answer for host 'capsul-g000420' to a request"),
    ],
)
def test_a_bad_page_leaves_the_cache_byte_identical(
    listed: Pin, provider: ReferenceServer, fault: str, value: object, words: str
) -> None:
    before = snapshot(listed.cache)
    provider.api.faults[fault] = value
    done = listed.run("cache", "refresh", "--all")
    assert done.returncode != 0 and words in done.stderr, done.stderr
    assert done.stdout == ""
    assert snapshot(listed.cache) == before


@pytest.mark.parametrize(
    ("fault", "value", "words"),
    [("lookup_other", 7, "another host's capsul"), ("bomb", True, "exceeds the limit")],
)
def test_a_bad_lookup_prints_one_line_and_nothing_for_ssh(
    listed: Pin, provider: ReferenceServer, fault: str, value: object, words: str
) -> None:
    listed.expire()  # the listing is stale: a new host is looked up
    before = snapshot(listed.cache)
    provider.api.faults[fault] = value
    out, err = ask(listed, 42)
    assert out == "" and err.count("\n") == 1 and words in err, err
    assert snapshot(listed.cache) == before


def test_a_lookup_older_than_the_listing_is_a_rollback(
    listed: Pin, provider: ReferenceServer
) -> None:
    import time

    listed.expire()
    provider.api.generated_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    before = snapshot(listed.cache)
    out, err = ask(listed, 42)
    assert out == "" and err.count("\n") == 1 and "rollback" in err, err
    assert snapshot(listed.cache) == before


def test_a_new_host_after_a_listing_is_read_from_the_index_alone(
    pin: Pin, provider: ReferenceServer
) -> None:
    fleet(pin, provider, 10)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    document = pin.cache / "capsul" / "document.json"
    st = document.stat()
    with open(document, "r+b") as f:  # garbage in place: same inode, size and mtime
        f.write(b"#" * st.st_size)
    os.utime(document, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert requests_for(provider, lambda: served(pin, 8)) == []  # never parsed: the index


def test_concurrent_cold_lookups_of_one_host_make_one_request(
    pin: Pin, provider: ReferenceServer
) -> None:
    import subprocess

    from tests.conftest import SSHPIN

    fleet(pin, provider, 3_000)
    served(pin, 1)  # the provider is now known to page
    provider.api.delay = 0.5
    line = generated_key(2_222)[0]
    procs = [
        subprocess.Popen([SSHPIN, "known-hosts", "HOSTNAME", host(2_222), *line.split()],
                         env=pin.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(out.split()[1:] == line.split() for out, _ in outs), outs
    assert provider.api.queries.count(f"host={host(2_222)}") == 1


def test_a_dns_name_of_a_paged_provider_is_looked_up_by_its_address(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    pin.write_config(hosts='["capsul-*", "localhost"]')
    fleet(pin, provider, 3_000)
    served(pin, 1)  # the provider is now known to page
    provider.api.add("capsul-local", [keys.pub(keys.host)], ipv4="127.0.0.1", ipv6="::1")
    line = keys.pub(keys.host).split()[:2]
    done = pin.hook("HOSTNAME", "localhost", *line)
    assert done.stdout.split()[1:] == line, done.stderr
    assert provider.api.queries[-1] in ("host=127.0.0.1", "host=%3A%3A1")


def test_refresh_all_shows_progress_on_a_terminal_only(pin: Pin, provider: ReferenceServer) -> None:
    import pty
    import subprocess

    from tests.conftest import SSHPIN

    fleet(pin, provider, 2_500)
    leader, follower = pty.openpty()
    argv = [SSHPIN, "cache", "refresh", "--all"]
    done = subprocess.run(argv, env=pin.env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=follower, timeout=120)  # fmt: skip
    os.close(follower)
    shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert done.returncode == 0
    assert "page 3, 2500 capsuls" in shown, shown


def test_an_unknown_key_of_a_listed_host_is_looked_up_once_per_30_s(
    pin: Pin, provider: ReferenceServer
) -> None:
    fleet(pin, provider, 2_000)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    wrong = generated_key(5)[0].split()
    for _ in range(3):
        done = pin.hook("HOSTNAME", host(6), *wrong)
        assert "not one provider" in done.stderr, done.stderr
        assert [line.split()[0] for line in done.stdout.splitlines() if wrong[1] in line] == [
            "@revoked"
        ]  # the wrong key is named only to be refused
    assert provider.api.queries[-1] == f"host={host(6)}"
    assert provider.api.queries.count(f"host={host(6)}") == 1


def test_a_key_a_later_lookup_replaced_is_not_served_again_from_the_listing(
    pin: Pin, provider: ReferenceServer
) -> None:
    # The listing (cache refresh --all) says K1; the capsul is rebuilt, and a ?host= lookup
    # says K2. The lookup is the newer statement: K1 offered again (an attacker holding the
    # old key) is a mismatch, not a hit of the older index, and the entry keeps K2.
    old, new = generated_key(900_001)[0], generated_key(900_002)[0]
    provider.api.add("capsul-rebuilt", [old])
    fleet(pin, provider, 250, page=100)
    assert pin.run("cache", "refresh", "--all").returncode == 0
    provider.api.set_keys("capsul-rebuilt", [new])
    done = pin.hook("HOSTNAME", "capsul-rebuilt", *new.split())
    assert done.stdout.split()[1:] == new.split(), done.stderr
    entry = pin.cache / "capsul" / "hosts" / "capsul-rebuilt"
    after_lookup = entry.read_bytes()
    for _ in range(2):
        done = pin.hook("HOSTNAME", "capsul-rebuilt", *old.split())
        expected = [  # the old key is named only to be refused
            f"capsul-rebuilt {' '.join(new.split()[:2])}",
            f"@revoked capsul-rebuilt {' '.join(old.split()[:2])}",
        ]
        assert done.stdout.splitlines() == expected, done.stderr
        assert entry.read_bytes() == after_lookup
    assert pin.run("cache", "show", "capsul-rebuilt").stdout.count(old.split()[1]) == 0


def test_a_last_page_replayed_for_the_first_is_refused_by_the_hook(
    pin: Pin, provider: ReferenceServer, ops: tuple[str, object]
) -> None:
    # a man in the middle with a rogue TLS certificate replays the signed last page of a
    # listing for its first: taken whole, it would be a listing of one page without the
    # capsuls (and account-wide revocations) of the others
    signed(pin, provider, ops)
    fleet(pin, provider, 250, page=100)
    provider.api.faults["first_is_last"] = True
    out, err = ask(pin, 220)  # a capsul on the last page: it would be served
    assert out == "" and err.count("\n") == 1 and "mix-and-match" in err, err
    assert not (pin.cache / "capsul" / "document.json").exists()


def test_an_unsigned_listing_need_not_echo_its_page_tokens(
    pin: Pin, provider: ReferenceServer
) -> None:
    # page_token binds a page to its place for the signature; without signing_keys TLS alone
    # vouches for the pages, and a server of the first paging spec (no page_token) still works
    fleet(pin, provider, 250, page=100)
    provider.api.faults["no_page_token"] = True
    assert pin.run("cache", "refresh", "--all").returncode == 0
    provider.api.status_override = 503
    served(pin, 220)


def test_a_first_listing_with_a_page_of_another_account_is_refused_whole(
    pin: Pin, provider: ReferenceServer, ops: tuple[str, object]
) -> None:
    # no account configured, logged in or recorded yet: every page must still be for the
    # account of the first page (later, the first account recorded also stops it)
    signed(pin, provider, ops)
    fleet(pin, provider, 300, page=100)
    provider.api.faults["page_account"] = 2
    done = pin.run("cache", "refresh", "--all")
    assert done.returncode != 0 and "page 2 of the listing is for account" in done.stderr, done
    assert not (pin.cache / "capsul" / "document.json").exists()
    assert not (pin.cache / "capsul" / "account").exists()


def test_a_listing_that_comes_to_be_paged_is_not_replaced_by_its_first_page(
    pin: Pin, provider: ReferenceServer
) -> None:
    from sshpin.store.cachedir import ProviderCache
    from sshpin.trust.document import Document

    pin.write_config(hosts='["capsul-*", "10.*"]')
    fleet(pin, provider, 30, page=None)
    provider.api.honour_host = False  # an old server: the first call keeps the whole listing
    served(pin, 1)
    store = ProviderCache(str(pin.cache), "capsul")

    def cached_count() -> int:
        raw = store.read_document()
        assert raw is not None
        return Document.from_bytes(raw).count

    assert cached_count() == 30 and not store.paged()
    pin.expire()
    provider.api.page_size, provider.api.honour_host = 10, True  # it pages its listing now
    served(pin, 25)  # on its third page: a lookup answers it
    assert store.paged()
    assert cached_count() == 30  # the listing as it was, never its first page alone


def test_a_page_signed_by_another_trusted_key_is_refused_whole(
    pin: Pin, provider: ReferenceServer, ops: tuple[str, object], tmp_path: Path
) -> None:
    """Every page of a listing comes from the first page's signing key: a page that another
    key the user trusts signed (a listing stitched from two signed ones) is refused whole."""
    other = keygen(str(tmp_path / "other"), comment="other")
    pin.write_config(extra=f'signing_keys = ["{ops[0]}", "{other}"]\n')
    provider.api.signing_key = ops[1]
    fleet(pin, provider, 300, page=100)
    provider.api.faults["page_signer"] = (2, sshsig.load_private_key(str(tmp_path / "other")))
    done = pin.run("cache", "refresh", "--all")
    assert done.returncode != 0 and "page 2 of the listing differs" in done.stderr, done.stderr
    assert not (pin.cache / "capsul" / "document.json").exists()
