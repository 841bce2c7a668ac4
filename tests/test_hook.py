"""The hook's command line (property-based) and its import discipline."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.errors import UsageError
from sshpin.hook import parse_args
from tests.conftest import HOOK, Keys, Pin
from tests.refserver import ReferenceServer

ED = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + b"k" * 32).decode()


def test_parse_args_forms() -> None:
    r = parse_args(["ORDER", "10.0.0.5", "NONE", "NONE"])
    assert (r.host, r.port, r.want) == ("10.0.0.5", 22, None)
    r = parse_args(["HOSTNAME", "[Web.Example]:2222", "ssh-ed25519", ED])
    assert (r.host, r.port, r.token) == ("web.example", 2222, "[Web.Example]:2222")
    assert r.want == base64.b64decode(ED)
    assert parse_args(["ADDRESS", "::1"]).want is None


def test_parse_args_with_alias_and_port() -> None:
    """``%I %H %t %K %k %p``: the key is read as in the four-word form (never dropped)."""
    r = parse_args(["HOSTNAME", "[10.0.0.5]:2222", "ssh-ed25519", ED, "Capsul-X", "2222"])
    assert (r.host, r.port, r.alias, r.want) == ("10.0.0.5", 2222, "capsul-x", base64.b64decode(ED))
    # ssh 9.2's ORDER call gives a bare %H whatever the port: %p says which sshd it is
    r = parse_args(["ORDER", "10.0.0.5", "NONE", "NONE", "10.0.0.5", "2222"])
    assert (r.port, r.name, r.alias) == (2222, "[10.0.0.5]:2222", "")
    # a bare %H on a HOSTNAME call is how ssh names a key by HostKeyAlias: port 22's name
    r = parse_args(["HOSTNAME", "capsul-x", "ssh-ed25519", ED, "capsul-x", "2222"])
    assert (r.port, r.name, r.alias) == (22, "capsul-x", "")
    assert parse_args(["ORDER", "h", "NONE", "NONE", "me@h:x", "22"]).alias == ""  # not a host
    for port in ["0", "65536", "x", "", "-1", "२२"]:
        with pytest.raises(UsageError):
            parse_args(["ORDER", "h", "NONE", "NONE", "h", port])


@pytest.mark.parametrize(
    "args",
    [[], ["ORDER"], ["order", "h"], ["HOSTNAME", "h", "ssh-ed25519"], ["X", "h", "NONE", "NONE"],
     ["HOSTNAME", "h", "ssh-rsa", ED], ["HOSTNAME", "h", "ssh-ed25519", "@@@"],
     ["HOSTNAME", "h", "ssh-ed25519", ED + "\n"], ["HOSTNAME", "h h", "NONE", "NONE"]],
)  # fmt: skip
def test_parse_args_refuses(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(args)


@given(st.lists(st.text(max_size=60), max_size=5))
def test_parse_args_never_crashes(args: list[str]) -> None:
    try:
        r = parse_args(args)
    except UsageError:
        return
    assert args[0] in ("ORDER", "HOSTNAME", "ADDRESS")
    assert "\n" not in r.token and " " not in r.token


def test_malformed_command_line_exits_1(pin: Pin) -> None:
    done = pin.hook("HOSTNAME")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("sshpin: known-hosts: usage:")


def test_no_config_means_unmanaged(pin: Pin) -> None:
    pin.config.unlink()
    done = pin.hook("HOSTNAME", "capsul-abc", "NONE", "NONE")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# requests, cryptography, keyring: the slow imports; the rest cost milliseconds each here.
HEAVY = {
    "requests",
    "cryptography",
    "keyring",
    "urllib3",
    "tomllib",
    "json",
    "argparse",
    "typing",
    "re",
}


@pytest.mark.parametrize("where", ["plain", "dot-dir"])
def test_cached_hit_imports_only_the_standard_library(
    pin: Pin, provider: ReferenceServer, keys: Keys, where: str
) -> None:
    """A real cached hit, run exactly as ``sshpin setup`` tells ssh to run it (the launcher
    with -I -S), with -X importtime listing every module the process imports; with the
    config in a directory whose name starts with a dot too (``~/.config``, the default)."""
    import subprocess

    env = dict(pin.env)
    if where == "dot-dir":
        dotted = pin.dir / ".config" / "sshpin"
        dotted.mkdir(parents=True, mode=0o700)
        (dotted / "config.toml").write_text(pin.config.read_text())
        (dotted / "config.toml").chmod(0o600)
        env["SSHPIN_CONFIG"] = str(dotted / "config.toml")
    provider.api.add("capsul-abc", [keys.pub(keys.host)], ipv4="127.0.0.1")
    key_type, b64 = keys.pub(keys.host).split()[:2]
    args = ["known-hosts", "HOSTNAME", "[127.0.0.1]:22", key_type, b64]
    first = subprocess.run([*HOOK, *args], env=env, capture_output=True, text=True)
    assert first.stdout, first.stderr  # a fetch fills the cache
    hit = subprocess.run(
        [HOOK[0], "-X", "importtime", *HOOK[1:], *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout == f"[127.0.0.1]:22 {key_type} {b64}\n"
    modules = {
        line.split("|")[-1].strip()
        for line in hit.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    loaded = {name.split(".")[0] for name in modules}
    assert "sshpin" in loaded and "site" not in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    assert provider.api.count() == 1
    # what the cached path costs (docs/architecture.md, "The launcher"): these modules of
    # sshpin and no more; not os (6.4M instructions), not __future__ (0.6M)
    assert sorted(m for m in modules if m.startswith("sshpin")) == [
        "sshpin", "sshpin.core", "sshpin.core.config", "sshpin.core.files", "sshpin.core.keys",
        "sshpin.core.names", "sshpin.errors", "sshpin.hook", "sshpin.lookup", "sshpin.store",
        "sshpin.store.entries",
    ]  # fmt: skip
    assert not modules & {"os", "stat", "posixpath", "_collections_abc", "__future__"}


def test_the_last_words_timer_is_gone_once_they_are_said(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """After the one line of an error, the hook's 2 s timer is disarmed: a slow exit (a loaded
    machine) must not be ended by SIGALRM once its handler is gone (exit status -14), which
    makes ssh drop the hook's output."""
    import subprocess
    import sys

    key_type, b64 = keys.pub(keys.host).split()[:2]
    code = (
        "import signal, sys; sys.path.insert(0, sys.argv[1]); from sshpin.hook import main\n"
        "status = main(['HOSTNAME', 'capsul-nosuch', sys.argv[2], sys.argv[3]])\n"
        "print(status, signal.getitimer(signal.ITIMER_REAL))"
    )
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", code, root, key_type, b64], env=pin.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0 (0.0, 0.0)\n", done.stdout
    assert done.stderr.startswith("sshpin: capsul-nosuch: ") and done.stderr.count("\n") == 1
