"""An upgrade in place keeps the hook line that an older ``sshpin setup`` wrote into the ssh
config working: ``…/site-packages/sshpin/launch.py`` stays where it was (docs/architecture.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SSH

ROOT = Path(__file__).resolve().parent.parent
BEFORE_WINGS = "c422909"  # the last commit with the flat layout (before issue 18)


def sh(*argv: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, **kw)  # type: ignore[call-overload]  # fmt: skip
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.mark.slow
def test_the_hook_line_of_an_old_setup_survives_an_upgrade_in_place(
    ssh: SSH, tmp_path: Path
) -> None:
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", BEFORE_WINGS + "^{commit}"],
                           capture_output=True)  # fmt: skip
    if found.returncode != 0:
        pytest.fail(f"commit {BEFORE_WINGS} is not in this clone: fetch the full history")
    old, new, venv = tmp_path / "old", tmp_path / "new", tmp_path / "venv"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_WINGS],
                             capture_output=True, check=True)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    tracked = sh("git", "-C", ROOT, "ls-files", "-z").stdout.split("\0")
    for name in filter(None, tracked):  # the working tree as it is, not only what is committed
        if (ROOT / name).is_file():
            (new / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, new / name)
    sh(sys.executable, "-m", "venv", "--system-site-packages", venv)
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps",
           "--disable-pip-version-check"]  # fmt: skip
    sh(*pip, old)
    ssh_config = tmp_path / "user_ssh_config"
    ssh_config.write_text("")  # no hook of the user's own: the old setup's Include only
    # the old sshpin knew no 'ports' (its hook vouched on every port); the test's sshd cannot
    # listen on 22, so the key is put back after the upgrade, as a user on another port must
    config = ssh.pin.config.read_text()
    ssh.pin.config.write_text(config.replace(f"ports = {ssh.pin.ports}\n", ""))
    sh(venv / "bin" / "sshpin", "setup", "--ssh-config", ssh_config, env=ssh.pin.env)
    ssh.pin.config.write_text(config)
    snippet = (ssh.pin.dir / "ssh_config").read_text()
    assert "site-packages/sshpin/launch.py known-hosts" in snippet
    sh(*pip, new)  # the upgrade, in place
    site = Path(sh(venv / "bin" / "python", "-c", "import sshpin; print(sshpin.__file__)").stdout)
    assert (site.parent / "hook.py").exists() and not (site.parent / "hostkeys.py").exists()
    assert (ssh.pin.dir / "ssh_config").read_text() == snippet  # the user's config untouched
    done = ssh.tool("ssh", "-F", str(ssh_config), "-i", ssh.keys.client,
                    "-o", f"UserKnownHostsFile={ssh.known_hosts}", "-o", "BatchMode=yes",
                    "-p", str(ssh.sshd.port), "127.0.0.1", "echo", "upgraded")  # fmt: skip
    assert done.returncode == 0 and done.stdout == "upgraded\n", done.stderr
    assert Path(ssh.known_hosts).read_text() == ""  # pinned by the hook, not trusted on first use

    # the old snippet's Host lines miss a name typed in capitals: the new doctor calls the
    # snippet out of date, and the new setup rewrites it with Match lines (issue 30)
    assert "\nHost 127.0.0.1 capsul-*\n" in snippet
    doctor = ssh.tool(str(venv / "bin" / "sshpin"), "doctor", "--offline", "--json", "--ssh-config",
                      str(ssh_config))  # fmt: skip
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["snippet"]["ok"] is False, checks["snippet"]
    sh(venv / "bin" / "sshpin", "setup", "--ssh-config", ssh_config, env=ssh.pin.env)
    rewritten = (ssh.pin.dir / "ssh_config").read_text()
    assert (
        "\nHost " not in rewritten and "\nMatch originalhost !*.,127.0.0.1,capsul-*\n" in rewritten
    )
    doctor = ssh.tool(str(venv / "bin" / "sshpin"), "doctor", "--offline", "--json", "--ssh-config",
                      str(ssh_config))  # fmt: skip
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["snippet"]["ok"] is True, checks["snippet"]
