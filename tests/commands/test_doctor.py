"""``sshpin doctor``: every check passes on a set-up user, and each failure names its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import Pin
from tests.refserver import ReferenceServer


def doctor(pin: Pin, ssh_config: Path, *args: str) -> tuple[int, dict[str, dict[str, object]]]:
    done = pin.run("doctor", "--json", "--ssh-config", str(ssh_config), *args)
    doc = json.loads(done.stdout)
    assert doc["ok"] == (done.returncode == 0)
    return done.returncode, {c["check"]: c for c in doc["checks"]}


def test_doctor_passes_after_setup_and_names_each_failure(
    pin: Pin, provider: ReferenceServer, tmp_path: Path
) -> None:
    ssh_config = tmp_path / "ssh_config"
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    status, checks = doctor(pin, ssh_config)
    assert status == 0, checks
    assert list(checks) == [
        "openssh", "config", "snippet", "include", "home", "ssh capsul", "provider capsul",
        "cache",
    ]  # fmt: skip
    assert "supports KnownHostsCommand" in str(checks["openssh"]["detail"])
    assert "0 capsul(s)" in str(checks["provider capsul"]["detail"])

    text = pin.run("doctor", "--ssh-config", str(ssh_config))
    assert text.returncode == 0
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["ok"] * 8

    # a rejected token: the provider check fails and says to log in
    pin.env["SSHPIN_TOKEN_CAPSUL"] = "wrong"
    status, checks = doctor(pin, ssh_config)
    assert status == 1
    assert checks["provider capsul"]["ok"] is False
    fix = str(checks["provider capsul"]["fix"])  # the token came from the variable, not login
    assert "SSHPIN_TOKEN_CAPSUL variable" in fix and "sshpin login" not in fix
    assert fix not in str(checks["provider capsul"]["detail"])
    assert all(c["ok"] for name, c in checks.items() if name != "provider capsul")

    # --offline skips the providers
    status, checks = doctor(pin, ssh_config, "--offline")
    assert status == 0 and "provider capsul" not in checks

    # the Include gone: both the include check and ssh's own view of the host fail
    ssh_config.write_text("Host *\n    User nobody\n")
    status, checks = doctor(pin, ssh_config, "--offline")
    assert status == 1
    assert checks["include"]["ok"] is False and checks["include"]["fix"] == "sshpin setup"
    assert checks["ssh capsul"]["ok"] is False
    assert "knownhostscommand none" in str(checks["ssh capsul"]["detail"])

    # an earlier line that turns strict checking off for the host wins in ssh: doctor sees it
    ssh_config.unlink()
    ssh_config.write_text("Host 127.0.0.1\n    StrictHostKeyChecking no\n")
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    status, checks = doctor(pin, ssh_config, "--offline")
    assert checks["include"]["ok"] is True
    assert checks["ssh capsul"]["ok"] is True  # setup's Include went on top: ours comes first

    # a cache dir others may write to
    pin.cache.mkdir(exist_ok=True)
    pin.cache.chmod(0o777)
    status, checks = doctor(pin, ssh_config, "--offline")
    assert status == 1 and checks["cache"]["ok"] is False
    assert "writable by group or others" in str(checks["cache"]["detail"])
    pin.cache.chmod(0o700)

    # a config error names the file, the line and the key
    written = pin.config.read_text() + 'ttl = "soon"\n'
    pin.config.write_text(written)
    status, checks = doctor(pin, ssh_config, "--offline")
    assert status == 1
    line = written.count("\n")  # the line just added
    assert f"{pin.config}:{line}: provider 'capsul': ttl" in str(checks["config"]["detail"])


def test_doctor_with_no_config(pin: Pin, tmp_path: Path) -> None:
    pin.config.unlink()
    status, checks = doctor(pin, tmp_path / "none")
    assert status == 1
    assert checks["config"]["fix"] == "sshpin setup --provider NAME --api-url URL"
    assert checks["include"]["ok"] is False


def test_doctor_says_which_files_ssh_reads_and_when_home_is_elsewhere(
    pin: Pin, tmp_path: Path
) -> None:
    import pwd

    account = pwd.getpwuid(os.getuid()).pw_dir
    ssh_config = tmp_path / "ssh_config"
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0

    # HOME (the fixture's) is not the account's home: doctor says so, and what ssh reads
    status, checks = doctor(pin, ssh_config, "--offline")
    assert status == 0, checks
    home = str(checks["home"]["detail"])
    assert checks["home"]["ok"] is True
    assert f"$HOME is {pin.dir}, not the account's home {account}: ssh ignores $HOME" in home
    assert f"ssh reads {ssh_config}, known hosts {account}/.ssh/known_hosts " in home
    assert f"sshpin reads {pin.config}" in home and "(found through $HOME" in home

    # the default ssh config is the account's, with the system-wide one (no -F)
    done = pin.run("doctor", "--json", "--offline")
    detail = next(c["detail"] for c in json.loads(done.stdout)["checks"] if c["check"] == "home")
    assert f"ssh reads {account}/.ssh/config and /etc/ssh/ssh_config" in detail

    # HOME is the account's home: no warning, the same list of files
    pin.env["HOME"] = account
    status, checks = doctor(pin, ssh_config, "--offline")
    home = str(checks["home"]["detail"])
    assert home.startswith(f"ssh reads {ssh_config}, known hosts {account}/.ssh/known_hosts ")
    assert "$HOME" not in home and home.endswith(f"sshpin reads {pin.config}")


def test_hints_follow_the_token_and_ca_sources_in_use(
    pin: Pin, provider: ReferenceServer, tmp_path: Path
) -> None:
    ssh_config = tmp_path / "ssh_config"
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    # no token anywhere: the fix says how to give one, and the message does not repeat it
    del pin.env["SSHPIN_TOKEN_CAPSUL"]
    pin.env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    _, checks = doctor(pin, ssh_config)
    check = checks["provider capsul"]
    assert "no API token" in str(check["detail"]) and "sshpin login capsul" in str(check["fix"])
    assert "sshpin login" not in str(check["detail"])
    # a token_command's token rejected: fix it there (login would not help)
    pin.write_config(extra='token_command = "echo wrong-token"\n')
    _, checks = doctor(pin, ssh_config)
    assert "token_command in the config" in str(checks["provider capsul"]["fix"])
    hook = pin.hook("ORDER", "capsul-x")
    assert "token rejected" in hook.stderr and "token_command in the config" in hook.stderr
    # TLS: without ca_bundle, a private provider's certificate fails: the fix names it
    pin.write_config()
    pin.config.write_text(pin.config.read_text().replace("ca_bundle", "# ca_bundle"))
    pin.env["SSHPIN_TOKEN_CAPSUL"] = "x"
    _, checks = doctor(pin, ssh_config)
    assert "TLS verification failed" in str(checks["provider capsul"]["detail"])
    assert "sshpin setup --ca-bundle" in str(checks["provider capsul"]["fix"])


def test_doctor_on_a_fresh_home_changes_nothing_and_names_the_one_command(
    pin: Pin, tmp_path: Path
) -> None:
    """A new user's first command: doctor looks, never writes (no cache dir made), and every
    fix it gives works as written there (``sshpin setup`` alone fails with no provider)."""
    home = tmp_path / "fresh"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in pin.env.items() if not k.startswith("SSHPIN_")}
    env["HOME"] = str(home)
    fresh = Pin(dir=home, api_url=pin.api_url, ca_path=pin.ca_path, env=env)
    done = fresh.run("doctor", "--json", "--offline", "--ssh-config", str(home / "ssh_config"))
    assert done.returncode == 1
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert list(home.iterdir()) == []  # nothing made: no ~/.cache/sshpin, no ~/.config
    assert checks["cache"]["ok"] is True and "does not exist yet" in checks["cache"]["detail"]
    first = "sshpin setup --provider NAME --api-url URL"
    assert checks["config"]["fix"] == first and checks["include"]["fix"] == first
    setup = fresh.run("setup", "--ssh-config", str(home / "ssh_config"))
    assert setup.returncode != 0 and first in setup.stderr  # the bare command does not work
