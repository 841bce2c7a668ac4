"""``sshpin provider check``: passes against the reference server and against ``sshpin
publish``'s output on a plain static server, and fails naming the check against servers that
each break one rule."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from sshpin.provider_side.refserver import ReferenceServer, host_key_entry
from sshpin.trust import sshsig
from tests.conftest import SSHPIN, TOKEN, Keys, Pin, Static


@pytest.fixture
def signed(provider: ReferenceServer, keys: Keys, tmp_path: Path) -> str:
    """The reference server signing its documents; returns the signing key's .pub file."""
    keygen(str(tmp_path / "ops"), comment="ops")
    provider.api.signing_key = sshsig.load_private_key(str(tmp_path / "ops"))
    provider.api.add("capsul-c1", [keys.pub(keys.host)], ipv4="198.51.100.1")
    provider.api.add("capsul-c2", [keys.pub(keys.rebuilt)], ipv4="198.51.100.2")
    return str(tmp_path / "ops.pub")


def check(pin: Pin, *args: str) -> tuple[int, dict[str, dict[str, object]]]:
    done = subprocess.run(
        [SSHPIN, "provider", "check", *args, "--ca-bundle", pin.ca_path, "--json"],
        env={**pin.env, "SSHPIN_TOKEN": TOKEN}, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, {c["check"]: c for c in report["checks"]}


def test_the_reference_server_passes(pin: Pin, provider: ReferenceServer, signed: str) -> None:
    status, checks = check(pin, provider.api_url, "--signing-key-file", signed)
    assert status == 0, {name: c for name, c in checks.items() if not c["ok"]}
    assert {"auth", "fetch", "content-type", "size", "schema", "keys", "generated_at",
            "binding", "signature", "etag", "?host=", "paging", "time"} <= set(checks)  # fmt: skip
    assert "valid" in str(checks["schema"]["detail"])


def test_a_paged_reference_server_passes_paging(
    pin: Pin, provider: ReferenceServer, signed: str
) -> None:
    _pages(provider)
    _, checks = check(pin, provider.api_url, "--signing-key-file", signed)
    assert checks["paging"]["ok"] is True and "pages to the end" in str(checks["paging"]["detail"])


def test_the_token_never_appears_in_argv_or_output(pin: Pin, provider: ReferenceServer) -> None:
    done = subprocess.run([SSHPIN, "provider", "check", provider.api_url, "--ca-bundle",
                           pin.ca_path], input=TOKEN + "\n", env=pin.env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert TOKEN not in done.stdout + done.stderr
    assert "ok    fetch" in done.stdout


def _stale(api: ReferenceServer) -> None:
    api.api.generated_at = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 40 * 86400)
    )


def _wrong_fingerprint(api: ReferenceServer) -> None:
    entry = host_key_entry(api.api.capsuls[0]["ssh_host_keys"][0]["key_type"] + " "
                           + api.api.capsuls[0]["ssh_host_keys"][0]["content"])  # fmt: skip
    entry["sha256"] = "SHA256:" + "A" * 43
    api.api.capsuls[0]["ssh_host_keys"] = [entry]


def _bad_signature(api: ReferenceServer) -> None:
    api.api.signature_override = base64.b64encode(b"SSHSIG" + b"\0" * 40).decode()


def _paging_loop(api: ReferenceServer) -> None:
    body = json.loads(api.api.body())
    body["next_page_token"] = "again"
    api.api.signing_key = None
    api.api.body_override = json.dumps(body).encode()


def _pages(api: ReferenceServer, echo: bool = True) -> None:
    api.api.generate(5)
    api.api.page_size = 2
    if not echo:
        api.api.faults["no_page_token"] = True


def _redirect(api: ReferenceServer) -> None:
    api.api.status_override = 302
    api.api.extra_headers = {"Location": "https://x.invalid/"}


def _oversize(api: ReferenceServer) -> None:
    api.api.body_override = b" " * (5 << 20)


def _html(api: ReferenceServer) -> None:
    api.api.extra_headers = {"Content-Type": "text/html"}


BROKEN: dict[str, tuple[Callable[[ReferenceServer], None], str]] = {
    "no auth": (lambda p: setattr(p.api, "require_token", False), "auth"),
    "wrong fingerprint": (_wrong_fingerprint, "keys"),
    "bad signature": (_bad_signature, "signature"),
    "stale generated_at": (_stale, "generated_at"),
    "paging loop": (_paging_loop, "paging"),
    "pages without page_token": (lambda p: _pages(p, echo=False), "paging"),
    "?host= answer without host": (lambda p: p.api.faults.update(lookup_no_host=True), "?host="),
    "first page with a host": (
        lambda p: p.api.faults.update(first_is_lookup="capsul-test1"),
        "paging",
    ),
    "redirect": (_redirect, "fetch"),
    "oversize": (_oversize, "fetch"),
    "wrong Content-Type": (_html, "content-type"),
    "ignored ETag": (lambda p: setattr(p.api, "honour_etag", False), "etag"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_server_that_breaks_one_rule_fails_that_check(
    case: str, pin: Pin, provider: ReferenceServer, signed: str
) -> None:
    breaks, name = BROKEN[case]
    breaks(provider)
    status, checks = check(pin, provider.api_url, "--signing-key-file", signed)
    assert status == 3
    assert checks[name]["ok"] is False, checks
    assert checks[name]["fix"], checks[name]


def test_publish_output_on_a_static_server_passes(
    pin: Pin, static: Static, keys: Keys, tmp_path: Path
) -> None:
    keygen(str(tmp_path / "ops"), comment="ops")
    collected = tmp_path / "c"
    (collected / "capsul-s1").mkdir(parents=True)
    (collected / "capsul-s1" / "ssh_host_ed25519_key.pub").write_text(keys.pub(keys.host) + "\n")
    api = static.url + "/api"
    out, key = str(static.root / "api"), str(tmp_path / "ops")
    done = pin.run("publish", "--keys-dir", str(collected), "--account", "ops", "--api-url", api,
                   "--out", out, "--sign-key", key)  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, checks = check(pin, "--url", f"{api}/hostkeys/{{host}}.pub", "capsul-s1",
                           "--signing-key-file", str(tmp_path / "ops.pub"))  # fmt: skip
    assert status == 0, {name: c for name, c in checks.items() if not c["ok"]}
    status, checks = check(pin, api, "--public", "--signing-key-file", str(tmp_path / "ops.pub"))
    failed = {name for name, c in checks.items() if not c["ok"]}
    # a static server cannot answer 304 or ?host=, nor send the Sshpin-Signature header
    assert failed <= {"etag", "signature", "?host="}, checks
    assert checks["schema"]["ok"] and checks["keys"]["ok"] and checks["binding"]["ok"]
