"""``sshpin pin`` / ``unpin``: keys pasted from a provider's page, served by the hook."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.keys import parse_line
from sshpin.errors import UsageError
from sshpin.store import pins
from tests.conftest import HOOK_LINE, SSH, SSHPIN, Keys, Pin


def pin(p: Pin, host: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SSHPIN, "pin", host], input=stdin, env=p.env, capture_output=True, text=True, timeout=60
    )


def test_pin_shows_what_ssh_keygen_shows_and_the_hook_serves_it(
    pin_user: Pin, keys: Keys, tmp_path: Path
) -> None:
    host_pub = keys.pub(keys.host)
    pasted = f"# from the capsul page\n\n{host_pub}\n"
    done = pin(pin_user, "web.example.org", pasted)
    assert done.returncode == 0, done.stderr
    known = tmp_path / "kh"
    known.write_text("web.example.org " + " ".join(host_pub.split()[:2]) + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-lv", "-f", str(known)], capture_output=True, text=True, check=True
    ).stdout
    assert done.stdout.startswith(shown)  # fingerprint line and randomart, byte for byte
    pin_file = pin_user.dir / "pins" / "web.example.org"
    assert (pin_file.stat().st_mode & 0o777) == 0o600
    assert ((pin_user.dir / "pins").stat().st_mode & 0o777) == 0o700

    hook = pin_user.hook("HOSTNAME", "web.example.org", *host_pub.split()[:2])
    assert hook.returncode == 0
    assert hook.stdout == "web.example.org " + " ".join(host_pub.split()[:2]) + "\n"
    assert hook.stderr == ""
    # as in known_hosts, a pin of a bare host name is for port 22 (written ``[host]:22`` too)
    assert pin_user.hook("ORDER", "[web.example.org]:22").stdout.startswith("[web.example.org]:22 ")
    other = pin_user.hook("HOSTNAME", "[web.example.org]:2222", *host_pub.split()[:2])
    assert (other.returncode, other.stdout, other.stderr) == (0, "", "")

    # the same keys again: nothing changes; other keys: the old pin is backed up first
    again = pin(pin_user, "web.example.org", host_pub)
    assert "already pinned to these keys" in again.stdout
    assert not (pin_user.dir / "pins" / ".backup").exists()
    rebuilt = keys.pub(keys.rebuilt)
    changed = pin(pin_user, "web.example.org", f"web.example.org {rebuilt}\n")
    assert changed.returncode == 0, changed.stderr
    backups = list((pin_user.dir / "pins" / ".backup").iterdir())
    assert len(backups) == 1 and host_pub.split()[1] in backups[0].read_text()
    hook = pin_user.hook("ORDER", "web.example.org", "NONE", "NONE")
    assert hook.stdout == "web.example.org " + " ".join(rebuilt.split()[:2]) + "\n"

    listed = pin_user.run("cache", "list", "--json")
    import json

    rows = json.loads(listed.stdout)
    assert [(r["source"], r["names"], r["state"]) for r in rows] == [
        ("pin", ["web.example.org"], "pinned")
    ]
    assert pin_user.run("cache", "clear", "--all").returncode == 0
    assert pin_user.hook("ORDER", "web.example.org").stdout != ""  # clear never drops pins

    events = [r["event"] for r in json.loads(pin_user.run("cache", "history", "--json").stdout)]
    assert events == ["pinned", "pin-changed"]

    gone = pin_user.run("unpin", "web.example.org")
    assert gone.returncode == 0 and "unpinned" in gone.stdout
    assert pin_user.hook("ORDER", "web.example.org").stdout == ""
    assert len(list((pin_user.dir / "pins" / ".backup").iterdir())) == 2
    again = pin_user.run("unpin", "web.example.org")
    assert again.returncode == 2 and "is not pinned" in again.stderr


@pytest.fixture
def pin_user(pin: Pin) -> Pin:
    """A user whose only provider vouches for capsul ids: other hosts need a pin."""
    pin.write_config(hosts='["capsul-*"]')
    return pin


def test_pin_refuses_bad_input_and_stores_nothing(pin_user: Pin, keys: Keys) -> None:
    dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAP" + "A" * 40
    cases = [
        ("", "no key on standard input"),
        ("# only a comment\n", "no key on standard input"),
        (f"@cert-authority * {keys.pub(keys.host)}\n", "line 1: marker"),
        (f"{keys.pub(keys.host)}\nnot a key at all\n", "line 2:"),
        (dsa + "\n", "line 1:"),
    ]
    for stdin, words in cases:
        done = pin(pin_user, "web.example.org", stdin)
        assert done.returncode == 1, (stdin, done.stderr)
        assert done.stderr.startswith("sshpin: pin web.example.org: ") and words in done.stderr
        assert done.stderr.count("\n") == 1
        assert not (pin_user.dir / "pins" / "web.example.org").exists()
    bad_host = pin(pin_user, "../etc", keys.pub(keys.host))
    assert bad_host.returncode == 1 and "not a host name" in bad_host.stderr


@pytest.mark.slow
def test_real_ssh_uses_a_pin_and_refuses_another_key(pin_user: Pin, ssh: SSH, keys: Keys) -> None:
    # the provider vouches only for capsul-*: 127.0.0.1 is known through the pin alone
    before = ssh.ssh("true")
    assert before.returncode == 255  # nothing vouches for it yet, and checking is strict
    assert pin(pin_user, "127.0.0.1", keys.pub(keys.host)).returncode == 0
    bare = ssh.ssh("true")  # a bare host's pin is for port 22, as in known_hosts
    assert bare.returncode == 255, bare.stderr
    port = f"[127.0.0.1]:{ssh.sshd.port}"
    assert pin(pin_user, port, keys.pub(keys.host)).returncode == 0
    done = ssh.ssh("echo", "pinned")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "pinned\n"
    ssh.sshd.restart([keys.forged])
    forged = ssh.ssh("true")
    assert forged.returncode == 255 and "Host key verification failed" in forged.stderr


def test_a_group_writable_pins_dir_is_not_trusted(pin_user: Pin, keys: Keys) -> None:
    assert pin(pin_user, "web.example.org", keys.pub(keys.host)).returncode == 0
    (pin_user.dir / "pins").chmod(0o770)
    hook = pin_user.hook("ORDER", "web.example.org")
    assert hook.returncode == 0 and hook.stdout == ""
    assert "writable by others" in hook.stderr and "chmod 700" in hook.stderr


def test_pin_updates_the_snippet_setup_wrote(pin_user: Pin, keys: Keys, tmp_path: Path) -> None:
    ssh_config = tmp_path / "ssh_config"
    assert pin_user.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    done = pin(pin_user, "web.example.org", keys.pub(keys.host))
    assert f"updated {pin_user.dir / 'ssh_config'}" in done.stdout
    effective = subprocess.run(
        ["ssh", "-G", "-F", str(ssh_config), "web.example.org"], capture_output=True, text=True
    ).stdout
    assert f"knownhostscommand {HOOK_LINE}" in effective
    assert pin_user.run("unpin", "web.example.org").returncode == 0
    effective = subprocess.run(
        ["ssh", "-G", "-F", str(ssh_config), "web.example.org"], capture_output=True, text=True
    ).stdout
    assert "knownhostscommand" not in effective
    doctor = pin_user.run("doctor", "--offline", "--ssh-config", str(ssh_config))
    assert "ok    snippet" in doctor.stdout


key_lines = st.sampled_from(
    [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx8Ig8cQWs1Ebyd3x6rGM0Rbs8zrcOc3E6JvCG1aSCr",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOjyPMB+aIM0D5VQyDCOhG1JOJJjSKUd1UYkG8W7ajgY",
    ]
)
noise = st.sampled_from(["", "   ", "# a comment", "\t# indented comment"])


@given(st.lists(st.tuples(key_lines, st.booleans(), st.text("abc .-", max_size=8), noise)))
def test_parse_pasted_finds_exactly_the_keys(
    items: list[tuple[str, bool, str, str]],
) -> None:
    lines, want = [], []
    for key, as_known_hosts, comment, extra in items:
        lines.append(extra)
        lines.append(f"host.example {key}" if as_known_hosts else f"{key} {comment}".rstrip())
        parsed = parse_line(key)
        if parsed not in want:
            want.append(parsed)
    text = "\n".join(lines)
    if not want:
        with pytest.raises(UsageError):
            pins.parse_pasted(text, "h")
    else:
        assert pins.parse_pasted(text, "h") == want


def test_pin_on_a_terminal_says_what_to_paste(pin_user: Pin, keys: Keys) -> None:
    """At a terminal, ``sshpin pin HOST`` does not wait in silence: it asks for the keys and
    says how to end; the pasted keys, ended by Ctrl-D, are pinned."""
    import os
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [SSHPIN, "pin", "tty.example.org"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=pin_user.env,
            text=True,
        )
        os.close(terminal)
        os.write(controller, (keys.pub(keys.host) + "\n").encode() + b"\x04")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    assert proc.returncode == 0, err
    assert err.startswith("Paste the public host keys of tty.example.org")
    assert "Ctrl-D" in err
    assert "tty.example.org: pinned 1 key(s)" in out
    # without a terminal (a pipe, as in every other test here): no prompt at all
    done = pin(pin_user, "pipe.example.org", keys.pub(keys.host) + "\n")
    assert done.returncode == 0 and "Paste" not in done.stderr
