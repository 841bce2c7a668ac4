"""Signed url-provider key files bind host and time (issue 19): swapped, old, expired and
unbound files are refused in one line naming the attack; real ssh refuses the host."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import SSH, Keys, Pin
from tests.providers import test_url
from tests.providers.test_url import HOST, Bucket, header, key_file

ops = test_url.ops  # the fixtures of test_url.py: the operator's key and the bucket
bucket = test_url.bucket

DB1 = "db1.vps.example.org"


def hook(pin: Pin, keys: Keys, host: str = HOST, which: str = "host") -> tuple[str, str]:
    done = pin.hook("HOSTNAME", host, *keys.pub(getattr(keys, which)).split()[:2])
    assert done.returncode == 0
    return done.stdout, done.stderr


def refused(pin: Pin, keys: Keys, host: str, words: str, attacker: str = "forged") -> None:
    out, err = hook(pin, keys, host)
    assert out == "", out
    assert keys.pub(getattr(keys, attacker)).split()[1] not in out + err
    assert err.count("\n") == 1 and words in err, err


def test_one_hosts_file_served_for_another_is_refused(bucket: Bucket, pin: Pin, keys: Keys) -> None:
    """The attacker controls the bucket: web1's validly signed file is served for db1."""
    bucket.publish(HOST, key_file(keys.pub(keys.forged)))
    signed_for_web1 = bucket.provider.api.files[f"hostkeys/{HOST}.pub"]
    bucket.provider.api.files[f"hostkeys/{DB1}.pub"] = signed_for_web1
    bucket.provider.api.files[f"hostkeys/{DB1}.pub.sig"] = bucket.provider.api.files[
        f"hostkeys/{HOST}.pub.sig"
    ]
    refused(pin, keys, DB1, f"refused as mix-and-match: the signed file is for host {HOST!r}")


def test_an_old_file_after_a_rotation_is_refused(bucket: Bucket, pin: Pin, keys: Keys) -> None:
    old_time = time.time() - 7200
    bucket.publish(HOST, header(HOST, old_time) + key_file(keys.pub(keys.forged)))
    old = dict(bucket.provider.api.files)  # the attacker keeps a copy of the old signed file
    bucket.publish(HOST, key_file(keys.pub(keys.host)))  # the rotation: new keys, newer time
    out, _ = hook(pin, keys)
    assert out  # the new file is accepted
    assert pin.run("cache", "clear", "--all").returncode == 0  # even with the cache gone
    bucket.provider.api.files.update(old)
    refused(pin, keys, HOST, "refused as a rollback")


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (lambda: header(HOST, time.time() - 8 * 86400), "a freeze: signed file expired at"),
        (lambda: header(HOST, time.time() + 3600), "refused as fast-forward"),
        (lambda: header(HOST, days=90), "refused as endless data"),
        (lambda: b"# sshpin-hostkeys v1 host=x\n", "header line must be"),
        (lambda: b"# sshpin-hostkeys v2 host=x\n", "unknown version"),
    ],
    ids=["expired", "future", "endless", "malformed", "version"],
)
def test_files_out_of_their_time_or_malformed_are_refused(
    bucket: Bucket, pin: Pin, keys: Keys, head: object, words: str
) -> None:
    bucket.publish(HOST, head() + key_file(keys.pub(keys.forged)))  # type: ignore[operator]
    refused(pin, keys, HOST, words)


def test_unbound_files_are_refused_unless_opted_in_with_a_warning(
    bucket: Bucket, pin: Pin, keys: Keys
) -> None:
    bucket.publish(HOST, key_file(keys.pub(keys.host)), bound=False)
    refused(pin, keys, HOST, "refused as unbound: it names no host and time", attacker="host")
    pin.config.write_text(pin.config.read_text() + "allow_unbound = true\n")
    out, err = hook(pin, keys)
    assert out.split()[1:] == keys.pub(keys.host).split()[:2]
    assert "warning:" in err and "another host's file or an old one" in err, err


def test_entries_record_the_statement_and_its_trust(bucket: Bucket, pin: Pin, keys: Keys) -> None:
    bucket.publish(HOST, key_file(keys.pub(keys.host)))
    assert hook(pin, keys)[0]
    entry = (pin.cache / "ops-bucket" / "hosts" / HOST).read_text()
    assert "\nexpires " in entry and "\ngenerated " in entry and "\ntrust " in entry


def test_a_changed_url_makes_the_cached_file_unusable(bucket: Bucket, pin: Pin, keys: Keys) -> None:
    bucket.publish(HOST, key_file(keys.pub(keys.host)))
    assert hook(pin, keys)[0]
    text = pin.config.read_text().replace("/hostkeys/{host}.pub", "/moved/{host}.pub")
    pin.config.write_text(text)
    out, err = hook(pin, keys)
    assert out == "" and "no key file" in err, err


@pytest.mark.slow
def test_ssh_refuses_a_swapped_file(bucket: Bucket, ssh: SSH, keys: Keys) -> None:
    ssh.sshd.restart([keys.forged])  # the attacker's server, and its file signed for web1
    bucket.publish(HOST, key_file(keys.pub(keys.forged)))
    for suffix in ("", ".sig"):
        data = bucket.provider.api.files[f"hostkeys/{HOST}.pub{suffix}"]
        bucket.provider.api.files[f"hostkeys/127.0.0.1.pub{suffix}"] = data
    done = ssh.ssh("true")
    assert done.returncode == 255
    ours = [line for line in done.stderr.splitlines() if line.startswith("sshpin:")]
    assert ours and all("refused as mix-and-match" in line for line in ours), done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def test_a_cached_file_past_its_expires_is_not_served_within_ttl(
    bucket: Bucket, pin: Pin, keys: Keys
) -> None:
    from sshpin.store.cachedir import ProviderCache

    bucket.publish(HOST, key_file(keys.pub(keys.host)))
    assert hook(pin, keys)[0]
    store = ProviderCache(str(pin.cache), "ops-bucket")
    entry = store.read_host(HOST)
    assert entry is not None
    entry.expires = time.time() - 1  # its signed statement ran out; the fetch is minutes old
    store.write_host(entry)
    bucket.provider.stop()  # and the bucket cannot be reached for a newer one
    out, err = hook(pin, keys)
    assert out == ""
    assert "freeze" in err and err.count("\n") == 1, err
