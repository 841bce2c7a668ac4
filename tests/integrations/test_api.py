"""sshpin.api: the hook's answer for any caller, through the one lookup (issue 22)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sshpin.api import InvalidHost, NoAuthenticKeys, SshpinError, vouched
from sshpin.core.keys import decode_base64
from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer


def blob(pub: str) -> bytes:
    return decode_base64(pub.split()[1])


def test_vouched_is_what_the_hook_prints(env: Pin, provider: ReferenceServer, keys: Keys) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.revoke([keys.pub(keys.forged)])
    answer = vouched("127.0.0.1", 2222)
    assert answer.managed and answer.provider == "capsul" and not answer.pinned
    assert answer.name == "[127.0.0.1]:2222"
    assert [k.openssh() for k in answer.keys] == [" ".join(keys.pub(keys.host).split()[:2])]
    assert [k.blob for k in answer.revoked] == [blob(keys.pub(keys.forged))]
    assert answer.trusts(blob(keys.pub(keys.host)))
    assert not answer.trusts(blob(keys.pub(keys.forged)))
    hook = env.hook("HOSTNAME", "[127.0.0.1]:2222")
    assert list(answer.lines) == hook.stdout.splitlines()
    with pytest.raises(AttributeError):
        answer.keys = ()  # type: ignore[misc]  # frozen


def test_offered_key_refetches_once(env: Pin, provider: ReferenceServer, keys: Keys) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    vouched("capsul-test1")
    provider.api.set_keys("capsul-test1", [keys.pub(keys.rebuilt)])
    assert vouched("capsul-test1").trusts(blob(keys.pub(keys.host)))  # cached, no fetch
    assert provider.api.count() == 1
    answer = vouched("capsul-test1", offered=blob(keys.pub(keys.rebuilt)))
    assert answer.trusts(blob(keys.pub(keys.rebuilt)))
    assert not answer.trusts(blob(keys.pub(keys.host)))
    assert provider.api.count() == 2


def test_unmanaged_and_failures(env: Pin, provider: ReferenceServer) -> None:
    answer = vouched("example.org")
    assert not answer.managed and answer.keys == () and answer.lines == ()
    with pytest.raises(NoAuthenticKeys) as e:
        vouched("capsul-nosuch", 22)
    assert isinstance(e.value, SshpinError) and e.value.host == "capsul-nosuch"
    assert str(e.value).startswith("capsul-nosuch: ")
    for host, port in (("bad host", 22), ("ok.example", 0), ("ok.example", 70000)):
        with pytest.raises(InvalidHost):
            vouched(host, port)
    assert provider.api.count() == 1


def test_the_api_imports_neither_library() -> None:
    code = (
        "import sys, sshpin.api; "
        "assert not {'paramiko', 'asyncssh'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_what_sshpin_says_goes_to_logging_not_to_the_programs_stderr(
    env: Pin,
    provider: ReferenceServer,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import time

    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    vouched("capsul-test1")
    provider.api.status_override = 503  # the provider is down; the cached keys go stale
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    with caplog.at_level("WARNING", logger="sshpin"):
        answer = vouched("capsul-test1", offered=blob(keys.pub(keys.forged)))
    assert not answer.trusts(blob(keys.pub(keys.forged)))
    said = [r.getMessage() for r in caplog.records if r.name == "sshpin"]
    assert any(m.startswith("sshpin: capsul-test1: ") and "stale" in m for m in said), said
    assert capfd.readouterr().err == ""
