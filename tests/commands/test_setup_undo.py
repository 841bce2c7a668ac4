"""``sshpin setup`` then ``--undo`` on a new user's home: every byte as it was, or absent.

The home is a real directory tree with nothing redirected: the config goes to
``$HOME/.config/sshpin`` (no ``SSHPIN_CONFIG``, no ``XDG_*``), and the ssh config is named with
``--ssh-config $HOME/.ssh/config`` (ssh itself reads the password database's home, which a test
cannot point elsewhere).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SSHPIN

API = "https://capsul.example/api"


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root``: its mode, and its bytes for a file."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (
            st.st_mode,
            path.read_bytes() if path.is_file() else None,
        )
    return out


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SSHPIN_", "XDG_")) and k not in ("HOME",)
    }
    env["HOME"] = str(home)
    done = subprocess.run(
        [SSHPIN, "setup", "--ssh-config", str(home / ".ssh" / "config"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture
def home(tmp_path: Path) -> Path:
    d = tmp_path / "home"
    d.mkdir(mode=0o755)
    (d / ".profile").write_text("# the user's own file\n")
    return d


def setup_then_undo(home: Path) -> tuple[str, str]:
    done = run(home, "--provider", "capsul", "--api-url", API)
    assert (home / ".ssh" / "config").read_text().startswith("# sshpin: pinned host keys")
    assert (home / ".config" / "sshpin" / "config.toml").exists()
    undone = run(home, "--undo")
    return done.stdout, undone.stdout


def test_undo_on_a_home_with_no_dot_ssh_leaves_nothing(home: Path) -> None:
    before = snapshot(home)
    _, undone = setup_then_undo(home)
    assert snapshot(home) == before  # no ~/.ssh, no ~/.config, no backup: nothing at all
    assert f"removed {home / '.ssh' / 'config'}, which setup created" in undone
    assert f"removed {home / '.ssh'}, which setup created" in undone
    assert run(home, "--undo").stdout == "nothing to undo\n"


def test_undo_on_a_home_with_dot_ssh_but_no_config(home: Path) -> None:
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "known_hosts").write_text("example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n")
    (ssh / "id_ed25519.pub").write_text("ssh-ed25519 AAAA me@laptop\n")
    config = home / ".config"
    config.mkdir(mode=0o700)  # the XDG dir exists (other programs'), sshpin's does not
    (config / "other.conf").write_text("x = 1\n")
    before = snapshot(home)
    _, undone = setup_then_undo(home)
    assert snapshot(home) == before
    assert f"removed {home / '.config' / 'sshpin'}, which setup created" in undone
    assert str(ssh) + "," not in undone  # ~/.ssh was there before: it stays


def test_undo_keeps_what_the_user_added_since(home: Path) -> None:
    run(home, "--provider", "capsul", "--api-url", API)
    ssh_config = home / ".ssh" / "config"
    ssh_config.write_text(ssh_config.read_text() + "Host mine\n    User me\n")
    (home / ".ssh" / "known_hosts").write_text("")  # ssh wrote here since
    run(home, "--undo")
    assert ssh_config.read_text() == "Host mine\n    User me\n"
    assert (home / ".ssh" / "known_hosts").exists()
    assert not (home / ".config").exists()  # that part was still only setup's


def test_a_second_setup_keeps_the_record_of_the_first(home: Path) -> None:
    before = snapshot(home)
    run(home, "--provider", "capsul", "--api-url", API)
    assert run(home).stdout == "nothing to change: already set up\n"
    run(home, "--undo")
    assert snapshot(home) == before
