"""Only the user's own files decide trust (issue 20): paths, scope, malformed trust material,
setup's names and pin's notes. The hostile-machine faults are in tests/faults."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from sshpin.core import config
from sshpin.core.schema import too_broad
from sshpin.errors import ConfigError
from sshpin.providers import load_config
from tests.conftest import SSHPIN, Keys, Pin

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZsXAdjk6KeLjHq+lAt7Sw1QBZqMNoPvzlz/TY0H0qE"


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big")
    return len(raw).to_bytes(4, "big") + raw


def rsa_line(e: int, n: int) -> str:
    blob = b"\0\0\0\x07ssh-rsa" + _mpint(e) + _mpint(n)
    return "ssh-rsa " + base64.b64encode(blob).decode()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_relative_xdg_and_sshpin_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    for name in ("SSHPIN_CONFIG", "SSHPIN_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "repo/config")
    monkeypatch.setenv("XDG_CACHE_HOME", "./cache")
    assert config.config_path() == "/home/u/.config/sshpin/config.toml"
    assert config.cache_dir() == "/home/u/.cache/sshpin"
    monkeypatch.setenv("SSHPIN_CONFIG", "evil/config.toml")
    monkeypatch.setenv("SSHPIN_CACHE_DIR", "evil")
    assert config.config_path() == "/home/u/.config/sshpin/config.toml"
    assert config.cache_dir() == "/home/u/.cache/sshpin"
    monkeypatch.setenv("XDG_CONFIG_HOME", "/x")
    monkeypatch.delenv("SSHPIN_CONFIG")
    assert config.config_path() == "/x/sshpin/config.toml"


def test_paths_in_the_config_are_relative_to_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path, '[[provider]]\nname = "c"\ntype = "capsul"\n'
                 'api_url = "https://p.example/api"\nhosts = ["capsul-*"]\n'
                 'ca_bundle = "certs/../ca.pem"\n'
                 '[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["*.example.org"]\n'
                 'ca_key_files = ["keys/ca.pub", "~/ca2.pub", "/abs/ca3.pub"]\n')  # fmt: skip
    monkeypatch.setenv("HOME", "/home/u")
    cfg = load_config(path)
    assert cfg is not None
    assert cfg.providers[0].get("ca_bundle") == str(tmp_path / "ca.pem")
    assert cfg.providers[1].get("ca_key_files") == [
        str(tmp_path / "keys/ca.pub"), "/home/u/ca2.pub", "/abs/ca3.pub"]  # fmt: skip


def test_a_config_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "conf"
    d.mkdir()
    path = write(d, '[[provider]]\nname = "ca"\ntype = "cert-authority"\n'
                 f'hosts = ["*.example.org"]\nca_keys = ["{CA_KEY}"]\n')  # fmt: skip
    d.chmod(0o777)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"config dir {d}: writable by group or others" in str(e.value)
    assert e.value.hint == f"chmod go-w {d}"


@pytest.mark.parametrize(
    "hosts",
    [["*"], ["**"], ["?*"], ["*?*"], ["*.*"], ["0.0.0.0/0"], ["::/0"], ["!x", "*"],
     ["!*.example.org", "?*"], ["0.0.0.0/1", "128.0.0.0/1"], ["::/1", "8000::/1"], ["*a*"],
     ["*.example.org", "*"]],
)  # fmt: skip
def test_a_cert_authority_for_every_host_is_refused_however_spelled(
    tmp_path: Path, hosts: list[str]
) -> None:
    assert too_broad(hosts)
    quoted = ", ".join(f'"{h}"' for h in hosts)
    path = write(tmp_path, f'[[provider]]\nname = "ca"\ntype = "cert-authority"\n'
                 f'hosts = [{quoted}]\nca_keys = ["{CA_KEY}"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match="may not vouch for every host"):
        load_config(path)


@pytest.mark.parametrize(
    "hosts",
    [["*.example.org"], ["10.0.0.0/8"], ["192.168.1.0/24", "db?.internal"], ["capsul-*"],
     ["*.corp.example.com", "!bastion.corp.example.com"], ["fd00::/8"]],
)  # fmt: skip
def test_narrow_cert_authority_hosts_are_accepted(hosts: list[str]) -> None:
    assert too_broad(hosts) is None


@pytest.mark.parametrize("where", ["signing_keys", "ca_keys", "revoked_keys", "ca_key_files"])
def test_an_rsa_key_with_e_not_below_n_is_a_config_error(tmp_path: Path, where: str) -> None:
    n = (1 << 2047) | 1
    line = rsa_line(n + 2, n)
    (tmp_path / "ca.pub").write_text(line + "\n")
    (tmp_path / "ca.pub").chmod(0o600)
    if where == "signing_keys":
        text = ('[[provider]]\nname = "c"\ntype = "capsul"\napi_url = "https://p.example/api"\n'
                f'hosts = ["capsul-*"]\nsigning_keys = ["{line}"]\n')  # fmt: skip
    elif where == "ca_key_files":
        text = ('[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["*.example.org"]\n'
                'ca_key_files = ["ca.pub"]\n')  # fmt: skip
    else:
        keys = f'ca_keys = ["{CA_KEY}"]\n' if where == "revoked_keys" else ""
        text = ('[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["*.example.org"]\n'
                f'{keys}{where} = ["{line}"]\n')  # fmt: skip
    path = write(tmp_path, text)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SSHPIN_CONFIG": path,
           "SSHPIN_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    host = "capsul-x" if where == "signing_keys" else "web.example.org"
    for argv in (["known-hosts", "HOSTNAME", host], ["doctor", "--offline"], ["cache", "list"],
                 ["fingerprints", host], ["cache", "show", host]):  # fmt: skip
        done = subprocess.run([SSHPIN, *argv], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr, argv
        said = done.stderr + done.stdout
        if argv[0] == "known-hosts":
            assert done.stdout == ""
        if where != "ca_key_files" or argv[-1] != "list":  # reads no CA file
            assert "exponent is not smaller than the modulus" in said, (argv, said)


def test_setup_writes_only_valid_host_names_and_refuses_a_writable_pins_dir(
    pin: Pin, keys: Keys, tmp_path: Path
) -> None:
    pins = pin.dir / "pins"
    pins.mkdir(mode=0o700)
    good = subprocess.run([SSHPIN, "pin", "web.example.org"], input=keys.pub(keys.host),
                          env=pin.env, capture_output=True, text=True)  # fmt: skip
    assert good.returncode == 0, good.stderr
    for bad in ("evil\n  ProxyCommand touch pwned", "Upper.example.org", "a b", "x*"):
        (pins / bad).write_text("planted")
    ssh_config = tmp_path / "ssh_config"
    done = pin.run("setup", "--ssh-config", str(ssh_config))
    assert done.returncode == 0, done.stderr
    snippet = (pin.dir / "ssh_config").read_text()
    assert "Match originalhost !*.,web.example.org\n" in snippet
    assert "ProxyCommand" not in snippet and "Upper" not in snippet and "x*" not in snippet
    assert "4 file(s) not named as a host" in done.stderr
    pins.chmod(0o777)
    done = pin.run("setup", "--ssh-config", str(ssh_config))
    assert done.returncode != 0
    assert f"pins dir {pins}: writable by others or not yours" in done.stderr


def test_pin_names_every_host_of_a_line_it_does_not_pin(pin: Pin, keys: Keys) -> None:
    key = " ".join(keys.pub(keys.host).split()[:2])
    other = " ".join(keys.pub(keys.rebuilt).split()[:2])
    text = f"web.example.org,db.example.org,[web.example.org]:22,[b.example]:2222 {key}\n"
    text += f"other.example {other}\n"
    done = subprocess.run([SSHPIN, "pin", "web.example.org"], input=text, env=pin.env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "line 1 also names db.example.org, [b.example]:2222: not pinned for them" in done.stderr
    assert "line 2 is for other.example, not web.example.org" in done.stderr
    assert "pinned 2 key(s)" in done.stdout
