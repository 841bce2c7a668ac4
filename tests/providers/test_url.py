"""``type = "url"``: signed key files in object storage, signed by the real ssh-keygen."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from sshpin.commands.demo import keygen
from tests.conftest import SSH, Keys, Pin
from tests.refserver import ReferenceServer

HOST = "web1.vps.example.org"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("ops")
    return {"ops": keygen(str(d / "ops")), "ops_key": str(d / "ops"),
            "rogue": keygen(str(d / "rogue")), "rogue_key": str(d / "rogue")}  # fmt: skip


def ssh_keygen_sign(key: str, data: bytes, tmp: Path) -> bytes:
    """What the operator's automation does: ``ssh-keygen -Y sign -n sshpin-hostkeys``."""
    path = tmp / "hostkeys.pub"
    path.write_bytes(data)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", "sshpin-hostkeys", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    sig = Path(str(path) + ".sig").read_bytes()
    Path(str(path) + ".sig").unlink()
    return sig


def header(host: str, generated: float | None = None, days: float = 7) -> bytes:
    """The signed binding line (docs/provider-api.md): host and time."""
    start = time.time() - 60 if generated is None else generated
    when = [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (start, start + days * 86400)
    ]
    return f"# sshpin-hostkeys v1 host={host} generated_at={when[0]} expires={when[1]}\n".encode()


class Bucket:
    def __init__(self, provider: ReferenceServer, ops: dict[str, str], tmp: Path) -> None:
        self.provider, self.ops, self.tmp = provider, ops, tmp

    def publish(self, host: str, data: bytes, signer: str = "ops_key", sig: bytes | None = None,
                bound: bool = True) -> None:  # fmt: skip
        if bound and not data.startswith(b"# sshpin-hostkeys"):
            data = header(host) + data
        self.provider.api.files[f"hostkeys/{host}.pub"] = data
        signature = ssh_keygen_sign(self.ops[signer], data, self.tmp) if sig is None else sig
        self.provider.api.files[f"hostkeys/{host}.pub.sig"] = signature


@pytest.fixture
def bucket(pin: Pin, provider: ReferenceServer, ops: dict[str, str], tmp_path: Path) -> Bucket:
    pin.config.write_text(
        '[[provider]]\nname = "ops-bucket"\ntype = "url"\n'
        'hosts = ["*.vps.example.org", "127.0.0.1"]\n'
        f'url = "{provider.files_url}/hostkeys/{{host}}.pub"\n'
        f'signing_keys = ["{ops["ops"]}"]\n'
        f'ca_bundle = "{pin.ca_path}"\n'
        f"ports = {pin.ports}\n"  # the ssh fixture, set up first or later, puts its sshd's port
    )
    return Bucket(provider, ops, tmp_path)


def key_file(*pubs: str) -> bytes:
    return ("".join(p + "\n" for p in pubs)).encode()


def test_signed_file_is_served_and_cached(bucket: Bucket, pin: Pin, keys: Keys) -> None:
    bucket.publish(HOST, key_file("# ssh_host keys", keys.pub(keys.host), keys.pub(keys.rebuilt)))
    done = pin.hook("HOSTNAME", f"[{HOST}]:2222", *keys.pub(keys.host).split()[:2])
    assert done.returncode == 0 and done.stderr == ""
    host_line = " ".join(keys.pub(keys.host).split()[:2])
    rebuilt_line = " ".join(keys.pub(keys.rebuilt).split()[:2])
    assert done.stdout == f"[{HOST}]:2222 {host_line}\n[{HOST}]:2222 {rebuilt_line}\n"
    requests = bucket.provider.api.file_requests
    assert requests == 2  # the file and its .sig
    again = pin.hook("ORDER", HOST)
    assert again.stdout and bucket.provider.api.file_requests == requests  # cached
    import json

    rows = json.loads(pin.run("cache", "list", "--json").stdout)
    assert rows[0]["signed"] is True and rows[0]["names"] == [HOST]
    assert rows[0]["source"].endswith(f"/hostkeys/{HOST}.pub")


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no signature", "is not signed (no .sig)"),
        ("another signer", "not a signing key"),
        ("signature of another file", "bad signature"),
        ("wrong namespace", "namespace"),
        ("malformed line", "line 3"),  # the header is line 1
        ("no file", "no key file for"),
        ("garbage signature", "not an armored SSH signature"),
    ],
)
def test_refusals(bucket: Bucket, pin: Pin, keys: Keys, tmp_path: Path, case: str,
                  words: str) -> None:  # fmt: skip
    good = key_file(keys.pub(keys.host))
    if case == "no signature":
        bucket.provider.api.files[f"hostkeys/{HOST}.pub"] = good
    elif case == "another signer":
        bucket.publish(HOST, good, signer="rogue_key")
    elif case == "signature of another file":
        bucket.publish(HOST, good, sig=ssh_keygen_sign(bucket.ops["ops_key"], b"x\n", tmp_path))
    elif case == "wrong namespace":
        path = tmp_path / "f"
        path.write_bytes(good)
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", bucket.ops["ops_key"], "-n",
                        "file", str(path)], check=True, capture_output=True)  # fmt: skip
        bucket.publish(HOST, good, sig=Path(str(path) + ".sig").read_bytes())
    elif case == "malformed line":
        bucket.publish(HOST, good + b"ssh-ed25519 AAAA@@@\n")
    elif case == "garbage signature":
        bucket.publish(HOST, good, sig=b"hello\n")
    done = pin.hook("HOSTNAME", HOST, *keys.pub(keys.host).split()[:2])
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_refused_key_types_are_skipped_not_fatal(
    bucket: Bucket, pin: Pin, keys: Keys, tmp_path: Path
) -> None:
    short = tmp_path / "rsa1024"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(short)],
                   check=True, capture_output=True)  # fmt: skip
    bucket.publish(HOST, key_file(Path(str(short) + ".pub").read_text(), keys.pub(keys.host)))
    done = pin.hook("ORDER", HOST)
    assert done.stdout == f"{HOST} {' '.join(keys.pub(keys.host).split()[:2])}\n"


@pytest.mark.slow
def test_real_ssh_through_a_signed_key_file_and_a_rotation(
    bucket: Bucket, ssh: SSH, keys: Keys
) -> None:
    bucket.publish("127.0.0.1", key_file(keys.pub(keys.host)))
    done = ssh.ssh("echo", "from-the-bucket")
    assert done.returncode == 0, done.stderr
    ssh.sshd.restart([keys.forged])
    forged = ssh.ssh("true")
    assert forged.returncode == 255
    assert "vouches for in its signed key file" in forged.stderr
    # the operator publishes the rebuilt machine's keys: the next connection works
    ssh.sshd.restart([keys.rebuilt])
    bucket.publish("127.0.0.1", key_file(keys.pub(keys.rebuilt)))
    ssh.pin.age_mismatch_marks()
    rebuilt = ssh.ssh("true")
    assert rebuilt.returncode == 0, rebuilt.stderr
    refresh = ssh.pin.run("cache", "refresh", "127.0.0.1")
    assert refresh.returncode == 0 and "no key changes" in refresh.stdout
    bucket.provider.api.files.clear()
    failed = ssh.pin.run("cache", "refresh", "--all")
    assert failed.returncode == 2 and "no key file" in failed.stderr


def test_the_userdata_script_feeds_the_whole_flow(
    bucket: Bucket, pin: Pin, keys: Keys, tmp_path: Path
) -> None:
    """contrib/userdata-publish-hostkeys.sh uploads a VM's public host keys; the operator
    signs them with ssh-keygen -Y sign and publishes; sshpin then vouches for them."""
    key_dir = tmp_path / "etc-ssh"
    key_dir.mkdir()
    (key_dir / "ssh_host_ed25519_key.pub").write_text(keys.pub(keys.host) + "\n")
    (key_dir / "ssh_host_dsa_key.pub").write_text("ssh-dss AAAA old\n")
    script = Path(__file__).resolve().parents[2] / "contrib" / "userdata-publish-hostkeys.sh"
    env = dict(pin.env, KEY_DIR=str(key_dir), CURL_CA_BUNDLE=pin.ca_path, HOST_NAME=HOST,
               UPLOAD_URL=f"{bucket.provider.files_url}/staging/vm1.pub")  # fmt: skip
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "uploaded 1 host key(s)" in done.stdout
    uploaded = bucket.provider.api.files["staging/vm1.pub"]
    first, rest = uploaded.split(b"\n", 1)
    assert first.startswith(f"# sshpin-hostkeys v1 host={HOST} generated_at=".encode()), first
    assert rest == (" ".join(keys.pub(keys.host).split()[:2]) + "\n").encode()
    bucket.publish(HOST, uploaded)  # the operator's automation signs and publishes
    assert pin.hook("ORDER", HOST).stdout == f"{HOST} {rest.decode()}"
    bad = subprocess.run(["sh", str(script)], env=dict(env, UPLOAD_URL="http://x/"),
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "https://" in bad.stderr


@pytest.mark.slow
def test_real_ssh_through_a_key_file_mixing_known_and_unknown_types(
    bucket: Bucket, ssh: SSH, keys: Keys, tmp_path: Path
) -> None:
    """A file as a newer machine's userdata would publish it: security keys, a post-quantum
    hybrid, a type from the future, DSA and a host certificate next to the one key sshpin
    knows. ssh connects; each other line is skipped with a note naming its type (issue 15)."""
    from tests.core.test_keyfiles import hand_built

    host_pub = tmp_path / "host.pub"
    host_pub.write_text(keys.pub(keys.host) + " root@capsul-test1\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca")],
                   check=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-h", "-I", "capsul-test1",
                    "-n", "127.0.0.1", str(host_pub)], check=True, capture_output=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-C", "root@capsul-test1 old",
                    "-f", str(tmp_path / "dsa")], check=True)  # fmt: skip
    others = [*hand_built().values(), (tmp_path / "dsa.pub").read_text().strip(),
              (tmp_path / "host-cert.pub").read_text().strip()]  # fmt: skip
    lines = [*others[:3], host_pub.read_text().strip(), *others[3:]]
    bucket.publish("127.0.0.1", key_file(*lines))
    done = ssh.ssh("echo", "through-a-mixed-file")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "through-a-mixed-file\n"
    skipped = [line for line in done.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == len(others), done.stderr
    for line, other in zip(skipped, others, strict=True):
        assert line.startswith("sshpin: 127.0.0.1: provider 'ops-bucket': https://"), line
        assert other.split()[0] in line
    again = ssh.ssh("true")  # cached: the notes are not repeated
    assert again.returncode == 0 and "skipped" not in again.stderr
