"""Signed documents against an attacker on the API path who holds no signing key (issue 19).

The reference server plays the attacker: it serves validly signed documents that are for
another account or API, old, frozen or from the future. Each refusal is one stderr line that
names the attack, the attacker's key is never printed, and real ssh refuses the host.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sshpin.store.cachedir import ProviderCache
from sshpin.trust.document import Document
from tests.conftest import SSH, Keys, Pin
from tests.providers.test_capsul_signing import Signer, iso, key_args
from tests.refserver import ReferenceServer

HOST = "capsul-test1"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer(tmp_path_factory.mktemp("ops") / "ops")


def configure(pin: Pin, signer: Signer, extra: str = "") -> None:
    pin.write_config(extra=f'signing_keys = ["{signer.pub}"]\n' + extra)


def signed_capsul(
    pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer, extra: str = ""
) -> Pin:
    """HOST listed by a provider that signs with the ops key, which ``pin``'s config trusts."""
    configure(pin, ops, extra)
    provider.api.add(HOST, [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.signing_key = ops.private
    return pin


@pytest.fixture
def victim(pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer) -> Pin:
    """Alice's view: her config pins her account; the provider signs with the ops key."""
    return signed_capsul(pin, provider, keys, ops, 'account = "alice@example.org"\n')


def attacker_serves_forged(provider: ReferenceServer, keys: Keys) -> None:
    provider.api.set_keys(HOST, [keys.pub(keys.forged)])


def refused(pin: Pin, keys: Keys, words: str) -> None:
    """The hook prints nothing (in particular not the attacker's key), one line naming it."""
    done = pin.hook("HOSTNAME", HOST, *key_args(keys, keys.host))
    forged = key_args(keys, keys.forged)[1]
    assert done.returncode == 0 and done.stdout == "", done.stdout
    assert forged not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def served(pin: Pin, keys: Keys) -> str:
    done = pin.hook("HOSTNAME", HOST, *key_args(keys, keys.host))
    assert done.stdout.split()[1:] == key_args(keys, keys.host), done.stderr
    return done.stderr


def shift_cached_expiry(pin: Pin, to: float) -> None:
    """Time passes for the cached document's ``expires`` (and its entries'), nothing else."""
    store = ProviderCache(str(pin.cache), "capsul")
    raw = store.read_document()
    assert raw is not None
    doc = Document.from_bytes(raw)
    doc.expires = to
    store.write_document(doc.to_bytes(), doc.fetched_at)
    for host in store.hosts():
        entry = store.read_host(host)
        assert entry is not None
        entry.expires = to
        store.write_host(entry)


# -- mix-and-match -------------------------------------------------------------------------


def test_another_accounts_document_is_refused(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.account = "mallory@example.org"  # validly signed, for the attacker's account
    attacker_serves_forged(provider, keys)
    refused(victim, keys, "refused as mix-and-match: document is for account 'mallory@example.org'")


def test_a_document_for_another_api_is_refused(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.api_url = "https://other-region.capsul.example/api"
    attacker_serves_forged(provider, keys)
    refused(victim, keys, "refused as mix-and-match: document is for API")


def test_the_account_check_applies_to_unsigned_documents(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    pin.write_config(extra='account = "alice@example.org"\n')
    provider.api.add(HOST, [keys.pub(keys.forged)], ipv4="127.0.0.1")
    provider.api.account = "mallory@example.org"
    refused(pin, keys, "refused as mix-and-match")
    provider.api.account = "alice@example.org"
    provider.api.set_keys(HOST, [keys.pub(keys.host)])
    assert served(pin, keys) == ""


# -- old format ----------------------------------------------------------------------------


def test_unbound_signed_documents_are_refused_unless_opted_in(
    victim: Pin,
    provider: ReferenceServer,
    keys: Keys,
    ops: Signer,
) -> None:
    provider.api.bound = False  # the old format: no "api", no "expires"
    refused(victim, keys, "refused as unbound: signed document has no api and expires")
    configure(victim, ops, 'account = "alice@example.org"\nallow_unbound = true\n')
    warning = served(victim, keys)
    assert "warning: accepting an unbound signed document" in warning, warning
    assert "served forever" in warning


# -- time: freeze, fast-forward, endless data, rollback -------------------------------------


def test_a_304_does_not_revive_an_expired_document(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    now = time.time()
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.generated_at = iso(now - 60)  # fixed body: the server answers 304 to its ETag
    assert served(victim, keys) == ""
    shift_cached_expiry(victim, now - 1)  # the document's own expiry has passed since
    before = provider.api.count()
    refused(victim, keys, "refused as a freeze: signed document expired at")
    assert provider.api.count() == before + 1  # asked, and the "not modified" was not enough


def test_a_held_lock_does_not_serve_an_expired_cache(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    assert served(victim, keys) == ""
    shift_cached_expiry(victim, time.time() - 1)
    lock = victim.cache / "capsul" / "lock"
    with open(lock, "a") as held:  # another sshpin that never finishes its fetch
        fcntl.flock(held, fcntl.LOCK_EX)
        refused(victim, keys, "refused as a freeze")


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda api: setattr(api, "generated_at", iso(time.time() + 3600)), "fast-forward"),
        (lambda api: setattr(api, "expires", iso(time.time() + 40 * 86400)), "endless data"),
        (lambda api: setattr(api, "expires", iso(time.time() - 60)), "refused as a freeze"),
    ],
    ids=["future", "endless", "expired"],
)
def test_documents_out_of_their_time_are_refused(
    victim: Pin, provider: ReferenceServer, keys: Keys, setup: Callable[..., None], words: str
) -> None:
    if words == "refused as a freeze":
        provider.api.generated_at = iso(time.time() - 3600)
    setup(provider.api)
    attacker_serves_forged(provider, keys)
    refused(victim, keys, words)


def test_rollback_is_refused_even_after_the_cache_is_cleared(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.generated_at = iso(time.time() - 3600)
    assert served(victim, keys) == ""
    assert victim.run("cache", "refresh", "--all").returncode == 0  # the account's floor
    assert victim.run("cache", "clear", "--all").returncode == 0
    provider.api.generated_at = iso(time.time() - 7200)  # an older, validly signed document
    attacker_serves_forged(provider, keys)
    refused(victim, keys, "refused as a rollback")  # the hook's lookup (the lookup's floor)
    done = victim.run("cache", "refresh", "--all")  # the listing (the listing's floor)
    assert done.returncode != 0 and "refused as a rollback" in done.stderr, done.stderr


# -- trust changes -------------------------------------------------------------------------


def test_a_changed_api_url_makes_the_cache_unusable(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add(HOST, [keys.pub(keys.host)], ipv4="127.0.0.1")
    assert served(pin, keys) == ""
    text = pin.config.read_text().replace(pin.api_url, "https://127.0.0.1:9/api")
    pin.config.write_text(text)
    done = pin.hook("HOSTNAME", HOST, *key_args(keys, keys.host))
    assert done.stdout == "", "keys verified under the old api_url were served"
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_pinned_account_added_later_makes_the_cache_unusable(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.account = "mallory@example.org"
    provider.api.add(HOST, [keys.pub(keys.forged)], ipv4="127.0.0.1")
    assert pin.hook("ORDER", HOST).stdout  # cached before the user said whose account it is
    pin.write_config(extra='account = "alice@example.org"\n')
    refused(pin, keys, "refused as mix-and-match")
    done = pin.run("cache", "show", HOST)
    assert key_args(keys, keys.forged)[1] not in done.stdout


def test_cached_entries_carry_expiry_and_trust(
    victim: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    served(victim, keys)  # a cold miss: one ?host= answer, its floor the capsul's
    entry = (victim.cache / "capsul" / "hosts" / HOST).read_text()
    assert "\nexpires " in entry and "\ntrust " in entry
    newest = json.loads((victim.cache / "capsul" / "newest.json").read_text())
    capsul = entry.split("\ncapsul ", 1)[1].split("\n", 1)[0]
    assert list(newest) == [f"capsul {capsul} {signer_fp(victim)}"]
    assert victim.run("cache", "refresh", "--all").returncode == 0  # the listing: the account's
    newest = json.loads((victim.cache / "capsul" / "newest.json").read_text())
    assert f"account alice@example.org {signer_fp(victim)}" in newest


def signer_fp(pin: Pin) -> str:
    from sshpin.core.keys import parse_line

    line = pin.config.read_text().split('signing_keys = ["')[1].split('"')[0]
    return parse_line(line).sha256()


# -- real ssh ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("attack", "words"),
    [
        ("account", "refused as mix-and-match"),
        ("api", "refused as mix-and-match"),
        ("unbound", "refused as unbound"),
    ],
)
def test_ssh_refuses_the_host(
    ssh: SSH,
    provider: ReferenceServer,
    keys: Keys,
    ops: Signer,
    attack: str,
    words: str,
) -> None:
    configure(ssh.pin, ops, 'account = "alice@example.org"\n')
    provider.api.signing_key = ops.private
    if attack == "account":
        provider.api.account = "mallory@example.org"
    elif attack == "api":
        provider.api.api_url = "https://elsewhere.example/api"
    else:
        provider.api.bound = False
    done = ssh.ssh("true")
    assert done.returncode == 255
    ours = [line for line in done.stderr.splitlines() if line.startswith("sshpin:")]
    assert ours and all(words in line for line in ours), done.stderr  # ssh may ask twice
    assert "Host key verification failed" in done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


# -- the account sshpin login saw ------------------------------------------------------------


def test_without_login_or_account_the_first_documents_account_is_kept(
    pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer
) -> None:
    # a token from SSHPIN_TOKEN_* (no login) and no ``account``: another account's signed
    # document, replayed through a rogue TLS certificate, must not pass either
    signed_capsul(pin, provider, keys, ops)
    assert served(pin, keys) == ""
    record = pin.cache / "capsul" / "account"
    assert record.read_text() == f"{pin.api_url}\nalice@example.org\n"
    pin.run("cache", "clear", "--all")  # not cache: kept, as the rollback floors are
    provider.api.account = "mallory@example.org"
    attacker_serves_forged(provider, keys)
    refused(pin, keys, "document is for account 'mallory@example.org', its first document was")
    assert f"or remove {record}" in pin.hook("ORDER", HOST).stderr
    configure(pin, ops, 'account = "mallory@example.org"\n')  # the user says so: it wins
    done = pin.hook("ORDER", HOST)
    assert key_args(keys, keys.forged)[1] in done.stdout, done.stderr


def test_a_refused_first_document_records_no_account(
    pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer
) -> None:
    # the first document is another API's (validly signed for mallory): refused, and it must
    # not become the account every later document is held to
    signed_capsul(pin, provider, keys, ops)
    own = provider.api.api_url
    provider.api.account = "mallory@example.org"
    provider.api.api_url = "https://other-region.capsul.example/api"
    refused(pin, keys, "document is for API")
    assert not (pin.cache / "capsul" / "account").exists()
    provider.api.account, provider.api.api_url = "alice@example.org", own
    assert served(pin, keys) == ""


def test_logging_in_to_another_account_drops_what_the_first_one_cached(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    import subprocess
    import sys

    provider.api.add(HOST, [keys.pub(keys.host)], ipv4="127.0.0.1")
    assert served(pin, keys) == ""  # alice's keys cached; her account kept as the first
    provider.api.account = "bob@example.org"
    attacker_serves_forged(provider, keys)  # bob's capsul of that name has another key
    login = (  # what ``sshpin login capsul`` does once the token is read (no keyring here)
        "import os\n"
        "from sshpin.providers import for_config, load_config\n"
        "from sshpin.core.config import cache_dir\n"
        "cfg = load_config().provider('capsul')\n"
        "print(for_config(cfg, cache_dir()).try_token(os.environ['T']))\n"
    )
    from tests.conftest import TOKEN

    done = subprocess.run([sys.executable, "-c", login], env={**pin.env, "T": TOKEN},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "account changed from 'alice@example.org' to 'bob@example.org'" in done.stderr
    done = pin.hook("ORDER", HOST)
    assert done.stdout.split()[1:] == key_args(keys, keys.forged), done.stderr  # fetched anew


@pytest.mark.slow
def test_login_records_the_account_and_later_documents_must_be_for_it(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    from tests.conftest import TOKEN
    from tests.trust.test_credentials import in_session

    provider.api.add(HOST, [keys.pub(keys.host)], ipv4="127.0.0.1")
    done = in_session(pin, '"$SSHPIN" login capsul; echo "login=$?"', (TOKEN + "\n").encode())
    assert "login=0" in done.stdout, done.stderr
    assert "of account alice@example.org (recorded" in done.stdout  # shown to the user
    recorded = pin.dir / "accounts" / "capsul"
    assert recorded.read_text() == "alice@example.org\n"
    assert recorded.stat().st_mode & 0o777 == 0o600
    assert served(pin, keys) == ""
    pin.run("cache", "clear", "--all")
    provider.api.account = "mallory@example.org"  # another account's document, replayed
    attacker_serves_forged(provider, keys)
    refused(pin, keys, "document is for account 'mallory@example.org', you logged in as")
    # the user really changed accounts: logging in again says so and drops the old cache
    again = in_session(pin, '"$SSHPIN" login capsul; echo "login=$?"', (TOKEN + "\n").encode())
    assert "login=0" in again.stdout, again.stderr
    assert "account changed from 'alice@example.org' to 'mallory@example.org'" in again.stderr
