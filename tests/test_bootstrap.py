"""The README's two commands, as a newcomer runs them: on a fresh clone, no virtualenv active.

``make demo`` and ``make test`` set everything up (scripts/bootstrap): system tools, a
virtualenv in ``.venv``, the package. A missing tool stops the run with the exact command to
install it, never with a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshpin.commands.demo import SSHD_PATHS

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The commands of the README's first code block, without their comments."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def no_venv_env() -> dict[str, str]:
    """The environment of a shell with no virtualenv active: no VIRTUAL_ENV, no venv on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL")
    }
    path = [
        d
        for d in env.get("PATH", "").split(os.pathsep)
        if d and not (Path(d).parent / "pyvenv.cfg").exists()
    ]
    env["PATH"] = os.pathsep.join(path)
    return env


def test_the_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("## The two commands") < text.index("## Install and use")
    assert readme_commands()[:2] == ["make demo", "make test"]


def test_every_document_link_points_into_the_repository() -> None:
    """A clone is all a reader has: each relative link of the README and docs/ names a file
    of the repository (none outside it, as ../shared/ would be), and a few do (the check
    reaches its accepting branch)."""
    import re

    found = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path = (page.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{page.name}: {target}"
            found += 1
    assert found >= 5


def test_a_missing_tool_stops_with_the_apt_command(tmp_path: Path) -> None:
    """As a user without the tools (and, here, told not to run apt-get): the exact command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "cksum", "cat", "rm", "apt-get"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "SSHPIN_NO_APT": "1"}
    for target, packages in [
        ("demo", "openssh-client openssh-server"),
        ("test", "openssh-client openssh-server rsync git mandoc curl dbus-daemon gnome-keyring"),
    ]:
        done = subprocess.run(
            ["/bin/sh", str(ROOT / "scripts" / "bootstrap"), target],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert "Traceback" not in done.stderr
        assert f"sshpin: bootstrap: {target} needs: ssh ssh-keygen" in done.stderr
        command = done.stderr.splitlines()[-1].strip()
        prefix = "" if os.getuid() == 0 else "sudo "
        assert command.startswith(f"{prefix}apt-get update && {prefix}apt-get install -y ")
        if any(os.access(p, os.X_OK) for p in SSHD_PATHS):  # found there, off PATH too
            packages = packages.replace(" openssh-server", "")
        assert f"--no-install-recommends {packages}" in command, command
        assert command.endswith(" ca-certificates")
    assert not (ROOT / "scripts" / ".venv").exists()


def test_as_root_the_missing_tools_are_installed_with_apt_get(tmp_path: Path) -> None:
    """As root (a stand-in ``id``), bootstrap runs apt-get update once, then install, with no
    stdin; a stand-in apt-get records its arguments and "installs" the tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cksum", "cat", "rm", "ln"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    scripts = {
        "id": "echo 0",
        "apt-get": 'echo "$DEBIAN_FRONTEND $*" >>"$LOG"; read -r x && echo "stdin: $x" >>"$LOG"\n'
        "case $1 in install) for t in ssh ssh-keygen sshd rsync git mandoc curl "
        "dbus-run-session gnome-keyring-daemon secret-tool; "
        'do ln -sf /bin/true "$BIN/$t"; done;; esac',
        # an interpreter too old for sshpin: bootstrap stops there, before any virtualenv
        "python3": 'case "$*" in *version_info*) exit 1;; esac; echo "Python 3.9.2"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "apt.log"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LOG": str(log), "BIN": str(bin_dir)}
    done = subprocess.run(
        ["/bin/sh", str(ROOT / "scripts" / "bootstrap"), "test"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    calls = log.read_text().splitlines()
    assert calls[0] == "noninteractive update -qq"
    assert calls[1].startswith("noninteractive install -y --no-install-recommends openssh-client ")
    assert calls[1].endswith(" ca-certificates -qq")
    assert len(calls) == 2  # apt-get update once; stdin is /dev/null for both
    assert "sshpin: bootstrap: installing openssh-client " in done.stderr
    assert done.returncode == 1
    assert "sshpin: bootstrap: sshpin needs Python 3.11 or later; python3 is Python 3.9.2" in (
        done.stderr
    )


def test_an_unknown_target_is_a_usage_line() -> None:
    done = subprocess.run(
        ["/bin/sh", str(ROOT / "scripts" / "bootstrap"), "nonsense"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("sshpin: bootstrap: usage: ")


@pytest.mark.slow
def test_a_fresh_clone_runs_the_demo_and_reaches_the_suite(tmp_path: Path) -> None:
    """git clone of this repository's committed HEAD, then the README's two commands there."""
    assert shutil.which("git") and shutil.which("make"), "git and make are needed"
    clone = tmp_path / "sshpin"
    subprocess.run(
        ["git", "clone", "-q", str(ROOT), str(clone)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert not (clone / ".venv").exists()
    env = no_venv_env()
    demo, test = readme_commands()[:2]

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=1200,
        )

    done = run(demo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("demo: OK"), done.stdout
    assert "Traceback" not in done.stderr
    assert (clone / ".venv" / "bin" / "sshpin").exists()

    # the second command sets up what the tests need, then reaches the suite (collect only)
    done = run(f"{test} ARGS='--collect-only -q'")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\d+ tests collected", done.stdout, re.M), done.stdout
    assert f"tests/{Path(__file__).name}::{sys._getframe().f_code.co_name}" in done.stdout
    assert (clone / ".venv" / ".sshpin-test").exists()
    assert "Traceback" not in done.stderr
