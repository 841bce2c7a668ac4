"""Signed provider documents (``signing_keys``) and revoked keys (``@revoked``)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from sshpin.trust import sshsig
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer


class Signer:
    def __init__(self, path: Path) -> None:
        self.pub = keygen(str(path), comment="ops signing key")
        self.private = sshsig.load_private_key(str(path))


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer(tmp_path_factory.mktemp("ops") / "ops")


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer(tmp_path_factory.mktemp("rogue") / "rogue")


@pytest.fixture
def signed(pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer) -> Pin:
    pin.write_config(extra=f'signing_keys = ["{ops.pub}"]\n')
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.signing_key = ops.private
    return pin


def key_args(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


def refused(pin: Pin, keys: Keys, words: str) -> None:
    done = pin.hook("HOSTNAME", "capsul-test1", *key_args(keys, keys.host))
    assert done.returncode == 0 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def test_a_signed_document_is_accepted_and_listed_as_signed(signed: Pin, keys: Keys) -> None:
    done = signed.hook("HOSTNAME", "capsul-test1", *key_args(keys, keys.host))
    assert done.stdout.split()[1:] == key_args(keys, keys.host), done.stderr
    rows = json.loads(signed.run("cache", "list", "--json").stdout)
    assert rows[0]["signed"] is True


def test_unsigned_documents_are_refused(signed: Pin, provider: ReferenceServer, keys: Keys) -> None:
    provider.api.signing_key = None
    refused(signed, keys, "document is not signed (no Sshpin-Signature)")


def test_a_signature_by_another_key_is_refused(
    signed: Pin, provider: ReferenceServer, keys: Keys, rogue: Signer
) -> None:
    provider.api.signing_key = rogue.private
    refused(signed, keys, "which is not a signing key")


def test_a_signature_over_a_different_body_is_refused(
    signed: Pin, provider: ReferenceServer, keys: Keys, ops: Signer
) -> None:
    other = provider.api.body().replace(b"alice", b"mallory")
    provider.api.signature_override = base64.b64encode(sshsig.sign(ops.private, other)).decode()
    refused(signed, keys, "bad signature by")


@pytest.mark.parametrize(
    ("header", "words"),
    [("not base64!", "not base64"), ("AAAA", "truncated"), ("", "not signed")],
)
def test_malformed_signature_headers(
    signed: Pin, provider: ReferenceServer, keys: Keys, header: str, words: str
) -> None:
    provider.api.signature_override = header
    refused(signed, keys, words)


def test_wrong_namespace_is_refused(
    signed: Pin, provider: ReferenceServer, keys: Keys, ops: Signer
) -> None:
    body = provider.api.body()
    provider.api.generated_at = json.loads(body)["generated_at"]
    blob = sshsig.sign(ops.private, provider.api.body(), namespace="file")
    provider.api.signature_override = base64.b64encode(blob).decode()
    refused(signed, keys, "namespace")


def test_rollback_and_stale_documents_are_refused(
    signed: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.generated_at = iso(time.time() - 3600)
    assert signed.hook("ORDER", "capsul-test1").stdout
    document = signed.cache / "capsul" / "document.json"
    before = document.read_bytes()
    provider.api.generated_at = iso(time.time() - 7200)  # older than what is cached
    done = signed.run("cache", "refresh", "--all")
    assert done.returncode == 2
    assert "refused as a rollback" in done.stderr
    assert document.read_bytes() == before
    provider.api.generated_at = iso(time.time() - 31 * 86400)
    signed.run("cache", "clear", "--all")
    refused(signed, keys, "more than 30 days old")


def test_adding_signing_keys_stops_trusting_unsigned_cache(
    pin: Pin, provider: ReferenceServer, keys: Keys, ops: Signer
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)])
    assert pin.hook("ORDER", "capsul-test1").stdout  # fetched unsigned, cached
    pin.write_config(extra=f'signing_keys = ["{ops.pub}"]\n')
    refused(pin, keys, "not signed")  # the cached unsigned keys are not used
    provider.api.signing_key = ops.private
    assert pin.hook("ORDER", "capsul-test1").stdout


def test_revoked_keys_are_printed_and_dropped_from_host_keys(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host), keys.pub(keys.rebuilt)])
    provider.api.revoke([keys.pub(keys.host)])
    done = pin.hook("HOSTNAME", "[capsul-test1]:22", *key_args(keys, keys.host))
    host = " ".join(key_args(keys, keys.host))
    rebuilt = " ".join(key_args(keys, keys.rebuilt))
    assert done.stdout == f"[capsul-test1]:22 {rebuilt}\n@revoked [capsul-test1]:22 {host}\n"
    assert "is revoked by provider 'capsul'" in done.stderr
    cached = pin.hook("ORDER", "capsul-test1")  # the cached hit prints the revocation too
    assert cached.stdout == f"capsul-test1 {rebuilt}\n@revoked capsul-test1 {host}\n"


def test_a_malformed_revocation_refuses_the_document(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.rebuilt)])
    provider.api.revoked = [{"key_type": "ssh-ed25519", "content": "AAAA", "sha256": "x"}]
    done = pin.hook("ORDER", "capsul-test1")
    assert done.stdout == "" and "revoked_keys" in done.stderr


@pytest.mark.slow
def test_ssh_refuses_a_revoked_key_that_the_users_own_file_lists(
    ssh: SSH, provider: ReferenceServer, keys: Keys
) -> None:
    own = f"[127.0.0.1]:{ssh.sshd.port} {' '.join(key_args(keys, keys.host))}\n"
    Path(ssh.known_hosts).write_text(own)  # the user trusted this key by hand
    assert ssh.ssh("true").returncode == 0
    provider.api.revoke([keys.pub(keys.host)])
    ssh.pin.run("cache", "refresh", "--all")
    done = ssh.ssh("true")
    assert done.returncode == 255
    assert "REVOKED HOST KEY" in done.stderr or "revoked" in done.stderr.lower()
