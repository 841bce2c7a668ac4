"""One lookup for every caller: ``cache show`` prints exactly what the hook prints, for every kind
of source (capsul document, url key file, certificate authority, pin), ``@revoked`` included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Keys, Pin
from tests.providers.test_url import Bucket, key_file
from tests.refserver import ReferenceServer


@pytest.fixture
def ops(tmp_path: Path) -> dict[str, str]:
    """The bucket's signing key (the url provider's ``signing_keys``), as tests/providers does."""
    from sshpin.commands.demo import keygen

    return {"ops": keygen(str(tmp_path / "ops")), "ops_key": str(tmp_path / "ops")}


def same_lines(pin: Pin, token: str) -> list[str]:
    """The hook's ORDER lines for ``token`` and ``cache show``'s, which must be equal."""
    hook = pin.hook("ORDER", token, "NONE", "NONE")
    assert hook.returncode == 0, hook.stderr
    shown = pin.run("cache", "show", token, "--json")
    assert shown.returncode == 0, shown.stderr
    lines: list[str] = json.loads(shown.stdout)["known_hosts"]
    assert lines == hook.stdout.splitlines()
    return lines


@pytest.fixture
def everything(
    pin: Pin,
    provider: ReferenceServer,
    keys: Keys,
    ops: dict[str, str],
    tmp_path: Path,
) -> Bucket:
    provider.api.add("capsul-a", [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.add("capsul-b", [keys.pub(keys.rebuilt)], ipv4="127.0.0.2")
    provider.api.revoke([keys.pub(keys.forged)])
    pin.config.write_text(
        pin.config.read_text()
        + '\n[[provider]]\nname = "ops-bucket"\ntype = "url"\nhosts = ["*.vps.example.org"]\n'
        "ports = [2222]\n"
        f'url = "{provider.files_url}/hostkeys/{{host}}.pub"\n'
        f'signing_keys = ["{ops["ops"]}"]\nca_bundle = "{pin.ca_path}"\n'
        '\n[[provider]]\nname = "containers"\ntype = "cert-authority"\nhosts = ["localhost"]\n'
        f'ca_keys = ["{keys.pub(keys.client)}"]\nrevoked_keys = ["{keys.pub(keys.forged)}"]\n'
    )
    return Bucket(provider, ops, tmp_path)


def test_show_equals_the_hook_for_every_source(everything: Bucket, pin: Pin, keys: Keys) -> None:
    forged = " ".join(keys.pub(keys.forged).split()[:2])
    # capsul: capsul-a fetched by the hook; capsul-b known only through the cached document
    assert same_lines(pin, "capsul-a")  # fetches the document
    lines = same_lines(pin, "capsul-b")  # derived from the document, never asked before
    assert f"@revoked capsul-b {forged}" in lines
    assert any(line.startswith("capsul-b ssh-ed25519") for line in lines)
    # url: a signed key file
    everything.publish("web1.vps.example.org", key_file(keys.pub(keys.host)))
    lines = same_lines(pin, "[web1.vps.example.org]:2222")
    assert [line.split()[0] for line in lines] == ["[web1.vps.example.org]:2222"]
    # cert-authority: @cert-authority and @revoked lines, nothing cached
    lines = same_lines(pin, "localhost")
    assert lines[0].startswith("@cert-authority localhost ")
    assert lines[-1] == f"@revoked localhost {forged}"
    # a pin, for a host no provider covers
    done = pin.run("pin", "pinned.example.org", stdin=keys.pub(keys.rebuilt) + "\n")
    assert done.returncode == 0, done.stderr
    lines = same_lines(pin, "pinned.example.org")
    assert lines == ["pinned.example.org " + " ".join(keys.pub(keys.rebuilt).split()[:2])]
