"""``sshpin doctor`` lists the lines of the user's own known_hosts files, plain and hashed, for a
host sshpin vouches for (from the cache and pins) whose key it does not vouch for, each with
the ``ssh-keygen -R`` that removes it; an agreeing line, or one for another host, is not
listed. The fix it gives is run here as given, with the real ssh-keygen."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer


def key(keys: Keys, which: str) -> str:
    return " ".join(keys.pub(which).split()[:2])


def findings(pin: Pin, ssh_config: Path, *args: str) -> list[dict[str, object]]:
    done = pin.run("doctor", "--json", "--ssh-config", str(ssh_config), *args)
    checks = json.loads(done.stdout)["checks"]
    return [c for c in checks if c["check"] == "known_hosts"]


def test_doctor_lists_stale_plain_and_hashed_lines_with_the_command_removing_each(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1")
    name = "[127.0.0.1]:2222"
    assert pin.hook("HOSTNAME", name, *key(keys, keys.host).split()).stdout  # cached now
    # (a cold miss asks ?host= for the address; the capsul's id is cached by its own lookup)
    assert pin.hook("HOSTNAME", "capsul-test1", *key(keys, keys.host).split()).stdout
    plain, hashed = tmp_path / "known_hosts", tmp_path / "known_hosts2"
    plain.write_text(
        f"{name} {key(keys, keys.forged)}\n"  # stale: the attacker's (an old) key
        f"{name} {key(keys, keys.host)}\n"  # agrees with the provider: not listed
        f"example.org {key(keys, keys.forged)}\n"  # not managed: not listed
        f"capsul-test1,127.0.0.1 {key(keys, keys.rebuilt)}\n"  # stale, both names
        "# a comment\n@revoked * " + key(keys, keys.forged) + "\n"
    )
    hashed.write_text(f"{name} {key(keys, keys.rebuilt)}\n{name} {key(keys, keys.host)}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True,
                   capture_output=True)  # fmt: skip
    assert hashed.read_text().startswith("|1|")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host *\n    UserKnownHostsFile {plain} {hashed}\n")
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0

    found = findings(pin, ssh_config)
    assert [str(f["detail"]).split(": ", 1)[0] for f in found] == [
        f"{plain}:1", f"{plain}:4", f"{plain}:4", f"{hashed}:1"
    ]  # fmt: skip
    assert all(f["ok"] is False for f in found)
    assert found[0]["fix"] == f"ssh-keygen -R '{name}' -f {plain}"
    assert found[1]["fix"] == f"ssh-keygen -R capsul-test1 -f {plain}"
    assert found[2]["fix"] == f"ssh-keygen -R 127.0.0.1 -f {plain}"
    assert found[3]["fix"] == f"ssh-keygen -R '{name}' -f {hashed}"
    shown = subprocess.run(["ssh-keygen", "-lf", keys.forged + ".pub"], capture_output=True,
                           text=True, check=True).stdout.split()[1]  # fmt: skip
    assert shown in str(found[0]["detail"])  # the fingerprint as ssh-keygen -l shows it
    assert "(hashed)" in str(found[3]["detail"]) and "(hashed)" not in str(found[0]["detail"])
    assert "resolved by address to capsul-test1" in str(found[0]["detail"])
    assert findings(pin, ssh_config, "--offline") == found  # local only: the same findings

    # the fix, as given, removes the line (here the whole hashed file's entries for the name)
    done = subprocess.run(str(found[3]["fix"]), shell=True, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [str(f["detail"]).split(": ", 1)[0] for f in findings(pin, ssh_config)] == [
        f"{plain}:1", f"{plain}:4", f"{plain}:4"
    ]  # fmt: skip


def test_nothing_is_listed_where_sshpin_vouches_for_nothing(
    pin: Pin, keys: Keys, tmp_path: Path
) -> None:
    """Nothing cached, no pin: the user's own lines are the fallback, not stale."""
    plain = tmp_path / "known_hosts"
    plain.write_text(f"[127.0.0.1]:2222 {key(keys, keys.forged)}\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host *\n    UserKnownHostsFile {plain}\n")
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    assert findings(pin, ssh_config, "--offline") == []
    # a pin vouches: the line disagreeing with it is listed
    assert pin.run("pin", "[127.0.0.1]:2222", stdin=keys.pub(keys.host) + "\n").returncode == 0
    assert pin.run("setup", "--ssh-config", str(ssh_config)).returncode == 0
    found = findings(pin, ssh_config, "--offline")
    assert [f["fix"] for f in found] == [f"ssh-keygen -R '[127.0.0.1]:2222' -f {plain}"]
