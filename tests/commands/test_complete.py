"""Shell completion: bash's completion function run for real prefixes, and ``sshpin complete``.

Each case runs ``bash --norc`` with contrib/completion/sshpin.bash sourced, COMP_WORDS and
COMP_CWORD set as bash sets them, calls ``_sshpin`` and reads COMPREPLY. Commands and options
are compared with the argparse parser itself, so the script cannot drift from the CLI.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import pytest

from sshpin.cli import build_parser
from tests.conftest import SSHPIN, Pin

ROOT = Path(__file__).resolve().parents[2]
BASH = ROOT / "contrib" / "completion" / "sshpin.bash"
ZSH = ROOT / "contrib" / "completion" / "_sshpin"
SIGNING_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def complete(pin: Pin, *words: str, function: str = "_sshpin") -> list[str]:
    """COMPREPLY for the command line ``words`` (the last one is being completed)."""
    script = (
        f'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); {function}; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "bash", str(BASH), SSHPIN, *words],
        env=pin.env,
        cwd=pin.dir,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [w for w in done.stdout.splitlines() if w]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


@pytest.fixture
def user(pin: Pin) -> Pin:
    """Two providers; cached hosts of each; two pins."""
    pin.write_config(
        extra='\n[[provider]]\nname = "ops-bucket"\ntype = "url"\nhosts = ["*.ops.example"]\n'
        'url = "https://objects.example/{host}.pub"\n'
        f'signing_keys = ["{SIGNING_KEY}"]\n'
    )
    for provider, hosts in [("capsul", ["capsul-abc", "capsul-abd", "127.0.0.1"]),
                            ("ops-bucket", ["web.ops.example"])]:  # fmt: skip
        d = pin.cache / provider / "hosts"
        d.mkdir(parents=True)
        for host in hosts:
            (d / host).write_text("")
        (d / ".tmp.123.abcd").write_text("")  # an atomic write in progress: not a host
    pins = pin.dir / "pins"
    pins.mkdir(mode=0o700)
    for host in ("pinned.example", "capsul-pin"):
        (pins / host).write_text("")
    return pin


def test_commands_and_options_are_the_parsers(user: Pin) -> None:
    parser = build_parser()
    commands = subcommands(parser)
    assert set(complete(user, "")) == set(commands)
    assert set(complete(user, "-")) == options(parser)
    for name, sub in commands.items():
        if name == "ssh":
            continue  # everything after 'ssh' is ssh's: hosts are offered instead
        if name == "cache":
            assert set(complete(user, "cache", "")) == set(subcommands(sub))
            for action, actions in subcommands(sub).items():
                assert set(complete(user, "cache", action, "-")) == options(actions), action
            continue
        assert set(complete(user, name, "-")) == options(sub), name
    assert complete(user, "cache", "re") == ["refresh"]
    assert complete(user, "fi") == ["fingerprints"]
    assert complete(user, "setup", "--un") == ["--undo"]


def test_provider_names_come_from_the_config(user: Pin) -> None:
    assert complete(user, "login", "") == ["capsul", "ops-bucket"]
    assert complete(user, "logout", "o") == ["ops-bucket"]
    assert complete(user, "setup", "--provider", "c") == ["capsul"]
    assert complete(user, "login", "capsul", "") == []  # one NAME only


def test_hosts_come_from_the_cache_and_the_pins(user: Pin) -> None:
    every = ["127.0.0.1", "capsul-abc", "capsul-abd", "capsul-pin", "pinned.example"]
    every = sorted([*every, "web.ops.example"])
    assert complete(user, "cache", "show", "") == every
    assert complete(user, "cache", "show", "capsul-ab") == ["capsul-abc", "capsul-abd"]
    assert complete(user, "fingerprints", "w") == ["web.ops.example"]
    assert complete(user, "cache", "refresh", "p") == ["pinned.example"]
    assert complete(user, "ssh", "capsul-p") == ["capsul-pin"]
    assert complete(user, "capsul-a", function="_sshpin_ssh") == ["capsul-abc", "capsul-abd"]
    assert complete(user, "unpin", "") == ["capsul-pin", "pinned.example"]  # pins only
    assert complete(user, "cache", "show", "capsul-abc", "") == []  # one HOST only
    assert complete(user, "cache", "list", "") == []
    assert complete(user, "doctor", "--ssh-config", "pi") == ["pins"]  # files


def test_a_host_name_is_never_run_as_a_command(user: Pin) -> None:
    d = user.cache / "capsul" / "hosts"
    (d / "$(id>pwned)").write_text("")
    (d / "`id>pwned2`").write_text("")
    offered = complete(user, "cache", "show", "")
    assert "$(id>pwned)" in offered and "`id>pwned2`" in offered
    assert not (user.dir / "pwned").exists() and not (user.dir / "pwned2").exists()


def test_complete_reads_local_files_only_and_never_complains(user: Pin) -> None:
    done = user.run("complete", "providers")
    assert done.stdout == "capsul\nops-bucket\n" and done.returncode == 0
    user.config.write_text("[[provider]\nbroken")
    assert complete(user, "login", "") == []
    done = user.run("complete", "providers")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    user.env["SSHPIN_CACHE_DIR"] = str(user.dir / "no-such-dir")
    assert user.run("complete", "hosts").stdout == "capsul-pin\npinned.example\n"
    done = user.run("complete", "everything")
    assert done.returncode == 1
    assert done.stderr == "sshpin: complete: usage: sshpin complete providers|hosts|pins\n"
    assert "complete" not in user.run("--help").stdout  # hidden


def test_completing_a_host_is_quick(user: Pin) -> None:
    d = user.cache / "capsul" / "hosts"
    for i in range(2000):
        (d / f"capsul-{i:05d}").write_text("")
    started = time.monotonic()
    assert len(complete(user, "cache", "show", "capsul-000")) == 100
    assert time.monotonic() - started < 5  # one python start and a directory listing


def test_the_zsh_script_covers_every_command() -> None:
    text = ZSH.read_text()
    assert text.startswith("#compdef sshpin sshpin-ssh\n")
    for name, sub in subcommands(build_parser()).items():
        assert f"'{name}:" in text, name
        if name not in ("ssh", "cache"):
            for option in options(sub) - {"-h", "--help"}:
                assert f"'{option}[" in text or f"){option}[" in text, (name, option)


def test_the_package_installs_both_scripts() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = data["data-files"]
    assert files["share/bash-completion/completions"] == ["contrib/completion/sshpin"]
    assert files["share/zsh/site-functions"] == ["contrib/completion/_sshpin"]
    installed = ROOT / "contrib" / "completion" / "sshpin"  # the name bash-completion looks up
    assert installed.read_bytes() == BASH.read_bytes()
