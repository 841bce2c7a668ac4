"""The command line: help, version, exit statuses, the manual's coverage, and ``sshpin ssh``."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest

from sshpin import __version__
from sshpin.cli import build_parser
from sshpin.commands.demo import Sshd
from sshpin.core.config import COMMON_KEYS
from sshpin.providers import TYPES, provider_class
from tests.conftest import SSH, SSHPIN, Keys, Pin

ROOT = Path(__file__).resolve().parent.parent
MAN1 = (ROOT / "man" / "sshpin.1").read_text()
MAN5 = (ROOT / "man" / "sshpin.conf.5").read_text()
SSHPIN_SSH = os.path.join(os.path.dirname(SSHPIN), "sshpin-ssh")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> dict[str, argparse.ArgumentParser]:
    return subcommands(build_parser())


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    ]


def test_version(pin: Pin) -> None:
    done = pin.run("--version")
    assert (done.returncode, done.stdout) == (0, f"sshpin {__version__}\n")


ALL_COMMANDS = sorted(
    [[name] for name in commands()]
    + [[name, action] for name, p in commands().items() for action in subcommands(p)]
)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(pin: Pin, command: list[str]) -> None:
    done = pin.run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: sshpin" in done.stdout and done.stderr == ""
    # rendered as written: no argparse escape (%%) or unfilled %(default)s left over
    assert "%%" not in done.stdout and "%(" not in done.stdout


def test_usage_errors_exit_1_with_one_sshpin_line(pin: Pin) -> None:
    for args in (["no-such-command"], ["setup", "--bogus"], ["login"], ["doctor", "x"]):
        done = pin.run(*args)
        assert done.returncode == 1, args  # never argparse's 2, which means "no keys" here
        assert done.stderr.splitlines()[-1].startswith("sshpin: "), done.stderr
    done = pin.run()
    assert done.returncode == 1 and "usage: sshpin" in done.stderr


def test_manual_documents_every_command_option_and_config_key() -> None:
    for name, parser in commands().items():
        assert re.search(rf"^\.It Cm {re.escape(name)}\b", MAN1, re.M), f"sshpin.1: {name}"
        for opt in long_options(parser):
            assert f"Fl -{opt[2:]}" in MAN1, f"sshpin.1: {name} {opt}"
        for action in subcommands(parser):
            assert re.search(rf"^\.It Cm {name} {action}\b", MAN1, re.M), f"{name} {action}"
            for opt in long_options(subcommands(parser)[action]):
                assert f"Fl -{opt[2:]}" in MAN1, f"sshpin.1: {name} {action} {opt}"
    for opt in long_options(build_parser()):
        assert f"Fl -{opt[2:]}" in MAN1, opt
    assert ".Nm sshpin-ssh" in MAN1
    every = set(COMMON_KEYS).union(*(provider_class(t).KEYS for t in TYPES))
    for key in sorted(every):
        assert re.search(rf"^\.It Ic {key}\b", MAN5, re.M), f"sshpin.conf.5: {key}"


def wrapper_args(ssh: SSH, known_hosts: str) -> list[str]:
    """ssh options for a user with no ssh config at all: nothing hands hosts to sshpin."""
    return [
        "-F", "/dev/null", "-i", ssh.keys.client, "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "User=root",
    ]  # fmt: skip


@pytest.mark.slow
def test_sshpin_ssh_pins_with_no_config_edit(ssh: SSH, sshd: Sshd, keys: Keys) -> None:
    opts = wrapper_args(ssh, ssh.known_hosts)
    port = ["-p", str(sshd.port)]
    done = ssh.tool(SSHPIN, "ssh", *opts, *port, "127.0.0.1", "echo", "wrapped")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrapped\n"
    assert Path(ssh.known_hosts).read_text() == ""

    # plain ssh with the same options has nothing to vouch for the key: refused
    plain = ssh.tool("ssh", *opts, "-o", "StrictHostKeyChecking=yes", *port, "127.0.0.1", "true")
    assert plain.returncode == 255 and "Host key verification failed" in plain.stderr

    sshd.restart([keys.forged])
    # a user's later StrictHostKeyChecking=no cannot undo the wrapper's: the first value wins
    forged = ssh.tool(
        SSHPIN, "ssh", *opts, "-o", "StrictHostKeyChecking=no", *port, "127.0.0.1", "true"
    )
    assert forged.returncode == 255
    assert "Host key verification failed" in forged.stderr
    assert "is not one provider 'capsul' vouches for capsul-test1" in forged.stderr


@pytest.mark.slow
def test_sshpin_ssh_leaves_hosts_it_does_not_manage_to_the_users_ssh(
    ssh: SSH, sshd: Sshd, keys: Keys
) -> None:
    """``localhost`` (the same sshd, a name no provider's hosts cover): ssh as configured, so
    the user's accept-new records the key, where forcing strict checking would refuse it. The
    managed spelling of the same server stays strict (the test above)."""
    opts = wrapper_args(ssh, ssh.known_hosts)
    port = ["-p", str(sshd.port), "-4"]
    accept = ["-o", "StrictHostKeyChecking=accept-new"]
    done = ssh.tool(SSHPIN, "ssh", *opts, *accept, *port, "localhost", "echo", "plain")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "plain\n"
    recorded = Path(ssh.known_hosts).read_text()
    assert recorded.startswith(f"[localhost]:{sshd.port} ssh-ed25519 ")  # ssh's own TOFU
    assert "sshpin" not in done.stderr  # the hook had nothing to say about it

    # A man in the middle (another key) and a user's config that says StrictHostKeyChecking
    # no: plain ssh would connect anyway. Every spelling sshpin vouches for must be refused.
    sshd.restart([keys.forged])
    Path(ssh.known_hosts).write_text("")
    pinned = ssh.pin.run("pin", f"[localhost]:{sshd.port}", stdin=keys.pub(keys.host) + "\n")
    assert pinned.returncode == 0, pinned.stderr
    lax = ["-o", "StrictHostKeyChecking=no"]
    for spelling in (
        ["localhost"],  # a pin for another port than 22: [localhost]:PORT
        ["-o", f"HostKeyAlias=[127.0.0.1]:{sshd.port}", "localhost"],  # a bracketed alias
        ["-o", "HostKeyAlias=capsul-test1", "localhost"],  # a bare alias the provider covers
    ):
        done = ssh.tool(SSHPIN, "ssh", *opts, *lax, *port, *spelling, "true")
        assert done.returncode == 255, (spelling, done.stderr)
        assert "Host key verification failed" in done.stderr, spelling
    # the control: the same server under a name nobody vouches for connects, as plain ssh
    done = ssh.tool(SSHPIN, "ssh", *opts, *lax, *port, "-o", "HostKeyAlias=other", "localhost",
                    "true")  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_sshpin_ssh_with_a_broken_config_stays_strict(ssh: SSH, sshd: Sshd) -> None:
    """When sshpin cannot tell whether it vouches for a host (its config is broken), the
    wrapper fails closed: strict checking, so a user's accept-new cannot record a key."""
    ssh.pin.write_config(extra="colour = 1\n")
    opts = wrapper_args(ssh, ssh.known_hosts)
    accept = ["-o", "StrictHostKeyChecking=accept-new"]
    port = ["-p", str(sshd.port), "-4"]
    done = ssh.tool(SSHPIN, "ssh", *opts, *accept, *port, "localhost", "true")
    assert done.returncode == 255 and "Host key verification failed" in done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


@pytest.mark.slow
def test_scp_rsync_and_git_through_the_wrapper(ssh: SSH, sshd: Sshd, tmp_path: Path) -> None:
    opts = wrapper_args(ssh, ssh.known_hosts)
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(4096))
    remote = f"127.0.0.1:{tmp_path}/scp-copy"
    # scp -S takes a program and no arguments: the sshpin-ssh console script
    done = ssh.tool("scp", "-S", SSHPIN_SSH, *opts, "-P", str(sshd.port), str(src), remote)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "scp-copy").read_bytes() == src.read_bytes()

    wrapper = " ".join([SSHPIN, "ssh", *opts, "-p", str(sshd.port)])
    dest = tmp_path / "rsync-copy"
    done = ssh.tool("rsync", "-a", "-e", wrapper, str(src), f"127.0.0.1:{dest}")
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == src.read_bytes()

    bare = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    env = dict(ssh.pin.env, GIT_SSH_COMMAND=wrapper)
    done = subprocess.run(
        ["git", "clone", "-q", f"127.0.0.1:{bare}", str(tmp_path / "clone")],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(ssh.known_hosts).read_text() == ""


def test_sshpin_ssh_help(pin: Pin) -> None:
    done = pin.run("ssh", "--help")
    assert done.returncode == 0 and "scp -S sshpin-ssh" in done.stdout
