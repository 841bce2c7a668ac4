"""Signing keys rotate without touching clients: the provider publishes each next set of
signing keys signed by the current one (``GET {api_url}/signing-keys``); a client configured
with the first key follows the chain, and never again trusts a key the chain revoked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sshpin.commands.demo import keygen
from sshpin.trust import sshsig
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer


def signer(tmp: Path, name: str) -> tuple[str, Any]:
    pub = keygen(str(tmp / name), comment=name)
    return pub, sshsig.load_private_key(str(tmp / name))


@pytest.fixture
def first(pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path) -> Any:
    """The provider signs with k1, the key in the user's config; capsul-test1 is listed."""
    pub, private = signer(tmp_path, "k1")
    pin.write_config(extra=f'signing_keys = ["{pub}"]\n')
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.signing_key = private
    return private


def served(pin: Pin, keys: Keys) -> bool:
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.host).split()[:2])
    return done.stdout.split()[1:] == keys.pub(keys.host).split()[:2]


def test_two_rotations_are_followed_without_a_config_edit(
    first: Any, pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    assert served(pin, keys)
    config = pin.config.read_text()
    _, k2 = signer(tmp_path, "k2")
    _, k3 = signer(tmp_path, "k3")
    provider.api.rotate(k2, revoke=[first])  # signed by k1; k1 revoked
    provider.api.rotate(k3)  # signed by k2
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])  # a new document, by k3
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.rebuilt).split()[:2])
    assert done.stdout.split()[1:] == keys.pub(keys.rebuilt).split()[:2], done.stderr
    assert "signing keys version 2" in done.stderr and "signing keys version 3" in done.stderr
    assert pin.config.read_text() == config  # no edit
    doctor = json.loads(pin.run("doctor", "--json").stdout)  # other checks may fail here
    check = next(c for c in doctor["checks"] if c["check"] == "provider capsul")
    assert check["ok"] and "signing keys version 3" in check["detail"], check
    state = (pin.cache / "capsul" / "signing-chain.json").read_text()
    assert '"version": 3' in state


def test_a_document_signed_by_a_revoked_key_is_refused(
    first: Any, pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    assert served(pin, keys)
    _, k2 = signer(tmp_path, "k2")
    provider.api.rotate(k2, revoke=[first])
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    assert pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.rebuilt).split()[:2]).stdout
    # the stolen k1 signs a document with the attacker's key for capsul-test1
    provider.api.signing_key = first
    provider.api.set_keys("capsul-test1", [keys.pub(keys.forged)])
    pin.age_mismatch_marks(31)
    done = pin.run("-v", "known-hosts", "HOSTNAME", "capsul-test1",
                   *keys.pub(keys.forged).split()[:2])  # fmt: skip
    forged = " ".join(keys.pub(keys.forged).split()[:2])
    rebuilt = " ".join(keys.pub(keys.rebuilt).split()[:2])
    expected = [f"capsul-test1 {rebuilt}", f"@revoked capsul-test1 {forged}"]
    assert done.stdout.splitlines() == expected  # the rebuilt key; the forged one refused
    assert "a signing key the provider revoked" in done.stderr, done.stderr
    assert "is not one provider 'capsul' vouches for" in done.stderr  # the fresh cache stands


def test_a_statement_not_signed_by_the_current_key_is_not_followed(
    first: Any, pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    _, rogue = signer(tmp_path, "rogue")
    _, k2 = signer(tmp_path, "k2")
    provider.api.signing_key = rogue  # the attacker's "rotation", signed by the attacker
    provider.api.rotate(k2)
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.host).split()[:2])
    assert done.stdout == ""
    assert "statement 2 refused" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (pin.cache / "capsul" / "signing-chain.json").exists()


def test_a_statement_for_another_api_is_refused(
    first: Any, pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    _, k2 = signer(tmp_path, "k2")
    provider.api.api_url = "https://other.example/api"  # the next statement names another API
    provider.api.rotate(k2)
    provider.api.api_url = provider.api_url
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.host).split()[:2])
    assert done.stdout == "" and "mix-and-match" in done.stderr, done.stderr


@pytest.mark.slow
def test_real_ssh_keeps_connecting_across_a_rotation(
    first: Any, ssh: SSH, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    assert ssh.ssh("true").returncode == 0
    _, k2 = signer(tmp_path, "k2")
    provider.api.rotate(k2, revoke=[first])
    ssh.pin.expire(2 * 3600)  # the next connection refetches: a document signed by k2
    done = ssh.ssh("echo", "rotated")
    assert done.returncode == 0 and done.stdout == "rotated\n", done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def test_a_revocation_is_kept_even_when_the_answer_that_brought_it_is_refused(
    first: Any, pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    """The chain is followed, kept and said before the answer is judged: a rotation that
    revokes k1, fetched with an answer refused for another reason (here: frozen), still
    stands, so that a later answer signed by the revoked k1 is refused."""
    import time

    assert served(pin, keys)
    _, k2 = signer(tmp_path, "k2")
    provider.api.rotate(k2, revoke=[first])
    provider.api.generated_at = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 40 * 86400)
    )
    pin.expire()
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.host).split()[:2])
    assert "refused as a freeze" in done.stderr and "signing keys version 2" in done.stderr
    assert '"version": 2' in (pin.cache / "capsul" / "signing-chain.json").read_text()
    provider.api.generated_at = None  # the attacker holds k1 and serves a fresh document
    provider.api.signing_key = first
    provider.api.set_keys("capsul-test1", [keys.pub(keys.forged)])
    forged = keys.pub(keys.forged).split()[1]
    done = pin.hook("HOSTNAME", "capsul-test1", *keys.pub(keys.forged).split()[:2])
    plain = [line for line in done.stdout.splitlines() if not line.startswith("@")]
    assert not any(forged in line for line in plain), done.stdout
    assert "a signing key the provider revoked" in done.stderr, done.stderr
