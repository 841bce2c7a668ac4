"""The server's key, when the provider or a pin vouches for other keys of the host, is printed
as ``@revoked``: ssh then refuses it whatever other file holds it (tests/test_revoke_e2e.py
has it end to end). Here: the hook's output from the bytes of both sides, and the one builder
of that line (``core.offered.offered_key``), property-tested."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sshpin.core.keys import HostKey, decode_base64, encode_base64
from sshpin.core.offered import REVOCABLE_TYPES, offered_key
from sshpin.hook import parse_args
from sshpin.lookup import Answer
from sshpin.store.entries import HostEntry
from tests.conftest import Keys, Pin
from tests.refserver import ReferenceServer
from tests.strategies import _mpint, _ssh_string, ecdsa_blob, valid_blobs

TOKEN = "[127.0.0.1]:2222"


def pub(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Keys sshpin never vouches for, made by the real ssh-keygen: DSA and 1024-bit RSA."""
    d = tmp_path_factory.mktemp("weak")
    out = {}
    for name, argv in {"dsa": ["-t", "dsa"], "rsa1024": ["-t", "rsa", "-b", "1024"]}.items():
        subprocess.run(["ssh-keygen", "-q", *argv, "-N", "", "-f", str(d / name)], check=True)
        out[name] = (d / f"{name}.pub").read_text().split()[:2]
    return out


@pytest.fixture
def capsul(pin: Pin, provider: ReferenceServer, keys: Keys) -> Pin:
    provider.api.add("capsul-abc", [keys.pub(keys.host)], ipv4="127.0.0.1")
    return pin


def revoked(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("@revoked")]


def test_a_key_the_provider_does_not_vouch_for_is_revoked(capsul: Pin, keys: Keys) -> None:
    forged = pub(keys, keys.forged)
    done = capsul.hook("HOSTNAME", TOKEN, *forged)
    assert revoked(done) == [f"@revoked {TOKEN} {forged[0]} {forged[1]}"]
    assert f"{TOKEN} {' '.join(pub(keys, keys.host))}" in done.stdout.splitlines()


def test_a_key_the_provider_vouches_for_is_not_revoked(capsul: Pin, keys: Keys) -> None:
    done = capsul.hook("HOSTNAME", TOKEN, *pub(keys, keys.host))
    assert done.stdout == f"{TOKEN} {' '.join(pub(keys, keys.host))}\n"
    assert revoked(done) == []


def test_weak_keys_are_revoked_by_their_own_type(capsul: Pin, weak: dict[str, list[str]]) -> None:
    """DSA and short RSA keys: never vouched for, and exactly the stale ones to refuse."""
    for key_type, b64 in weak.values():
        assert revoked(capsul.hook("HOSTNAME", TOKEN, key_type, b64)) == [
            f"@revoked {TOKEN} {key_type} {b64}"
        ]


def test_order_and_a_host_certificate_revoke_nothing(
    capsul: Pin, keys: Keys, tmp_path: Path
) -> None:
    assert revoked(capsul.hook("ORDER", TOKEN, "NONE", "NONE")) == []
    shutil.copy(keys.forged + ".pub", tmp_path / "h.pub")
    subprocess.run(["ssh-keygen", "-q", "-s", keys.client, "-h", "-I", "h", "-n", "127.0.0.1",
                    str(tmp_path / "h.pub")], check=True)  # fmt: skip
    cert = (tmp_path / "h-cert.pub").read_text().split()[:2]
    assert cert[0] == "ssh-ed25519-cert-v01@openssh.com"
    assert revoked(capsul.hook("HOSTNAME", TOKEN, *cert)) == []


def test_nothing_is_revoked_where_the_provider_has_nothing(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """Not in the account; an unmanaged host: the user's own known_hosts stays the fallback."""
    done = pin.hook("HOSTNAME", TOKEN, *pub(keys, keys.forged))
    assert (done.returncode, done.stdout) == (0, "")
    assert "sshpin:" in done.stderr
    unmanaged = pin.hook("HOSTNAME", "[example.org]:22", *pub(keys, keys.forged))
    assert (unmanaged.returncode, unmanaged.stdout, unmanaged.stderr) == (0, "", "")


def test_a_pin_revokes_other_keys_unless_it_holds_the_offered_one(capsul: Pin, keys: Keys) -> None:
    name = "pinned.example.org"
    assert capsul.run("pin", name, stdin=keys.pub(keys.rebuilt) + "\n").returncode == 0
    forged = pub(keys, keys.forged)
    assert revoked(capsul.hook("HOSTNAME", name, *forged)) == [
        f"@revoked {name} {' '.join(forged)}"
    ]
    assert revoked(capsul.hook("HOSTNAME", name, *pub(keys, keys.rebuilt))) == []
    # a pin is the way to trust a key the provider disagrees with: it answers alone
    assert capsul.run("pin", TOKEN, stdin=keys.pub(keys.forged) + "\n").returncode == 0
    done = capsul.hook("HOSTNAME", TOKEN, *forged)
    assert done.stdout == f"{TOKEN} {' '.join(forged)}\n"


def test_a_certificate_authority_alone_revokes_no_plain_key(pin: Pin, keys: Keys) -> None:
    """A CA vouches for certificates; it says nothing of another sshd at that name."""
    pin.config.write_text(
        pin.config.read_text() + '\n[[provider]]\nname = "containers"\ntype = "cert-authority"\n'
        f'hosts = ["localhost"]\nca_keys = ["{keys.pub(keys.client)}"]\n'
    )
    done = pin.hook("HOSTNAME", "localhost", *pub(keys, keys.forged))
    assert done.stdout.startswith("@cert-authority localhost ")
    assert revoked(done) == []


# -- Answer.lines, in process ----------------------------------------------------------------


def entry(*blobs: bytes, cas: tuple[bytes, ...] = ()) -> HostEntry:
    return HostEntry("h", "capsul-x", "test", 0.0, [offered_key(b) for b in blobs],  # type: ignore[misc]
                     cas=[offered_key(b) for b in cas])  # type: ignore[misc]  # fmt: skip


BLOB_A = ecdsa_blob(256, 7)
BLOB_B = ecdsa_blob(256, 11)


def test_answer_lines_revoke_only_an_offered_key_outside_the_vouched_ones() -> None:
    answer = Answer("t", None, "capsul", entry(BLOB_A))
    line = f"@revoked h {offered_key(BLOB_B).openssh()}"  # type: ignore[union-attr]
    assert answer.lines("h", BLOB_B)[-1] == line
    assert not any(x.startswith("@revoked") for x in answer.lines("h", BLOB_A))
    assert answer.lines("h") == answer.lines("h", None) == answer.lines("h", BLOB_A)
    assert Answer("t", entry(BLOB_B), "capsul", entry(BLOB_A)).lines("h", BLOB_B) == [
        f"h {offered_key(BLOB_B).openssh()}",  # type: ignore[union-attr]
        f"h {offered_key(BLOB_A).openssh()}",  # type: ignore[union-attr]
    ]  # the pin holds it
    assert not Answer("t", None, "capsul", entry(cas=(BLOB_A,))).refuses(BLOB_B)
    assert not Answer("managed, but nothing is cached yet", None, "capsul").refuses(BLOB_B)
    assert Answer("t", entry(BLOB_A)).refuses(BLOB_B)


# -- the line's builder: no offered blob puts a newline, space or marker in it ----------------


@cache
def dsa_params() -> tuple[int, int, int]:
    from cryptography.hazmat.primitives.asymmetric import dsa

    n = dsa.generate_parameters(1024).parameter_numbers()
    return n.p, n.q, n.g


def dsa_blob(x: int) -> bytes:
    p, q, g = dsa_params()
    return _ssh_string(b"ssh-dss") + b"".join(_mpint(v) for v in (p, q, g, pow(g, x, p)))


@cache
def short_rsa() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    return _ssh_string(b"ssh-rsa") + _mpint(numbers.e) + _mpint(numbers.n)


def sk_blob(raw: bytes, application: bytes, ecdsa: bool) -> bytes:
    if ecdsa:
        point = ecdsa_blob(256, int.from_bytes(raw, "big") % 2**200 + 1)[23:]  # curve, point
        return _ssh_string(b"sk-ecdsa-sha2-nistp256@openssh.com") + point + _ssh_string(application)
    return _ssh_string(b"sk-ssh-ed25519@openssh.com") + _ssh_string(raw) + _ssh_string(application)


TYPE_NAME = st.from_regex(r"\A[a-z0-9][a-z0-9.@-]{0,63}\Z").filter(
    lambda t: t not in REVOCABLE_TYPES and not t.endswith("-cert-v01@openssh.com")
)
WELL_FORMED = st.one_of(
    valid_blobs,  # ed25519, the three ECDSA curves, RSA 2048 and 3072
    st.integers(2, 2**150).map(dsa_blob),
    st.just(0).map(lambda _: short_rsa()),
    st.tuples(st.binary(min_size=32, max_size=32),
              st.text(st.characters(min_codepoint=1, codec="utf-8"), min_size=1, max_size=20)
              .map(str.encode), st.booleans()).map(lambda t: sk_blob(*t)),
    st.tuples(TYPE_NAME, st.binary(max_size=64)).map(
        lambda t: _ssh_string(t[0].encode()) + t[1]  # a type sshpin does not know: as given
    ),
)  # fmt: skip


def safe(key: HostKey, blob: bytes) -> None:
    line = key.known_hosts_line("[h]:2", "@revoked")
    fields = line.split(" ")
    assert len(fields) == 4 and line == " ".join(fields) and line.isprintable()
    assert fields[:2] == ["@revoked", "[h]:2"]
    assert fields[2] == key.key_type == blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()
    assert not fields[2].startswith("@") and decode_base64(fields[3]) == blob


@given(WELL_FORMED)
def test_every_well_formed_offered_key_is_revocable(blob: bytes) -> None:
    key = offered_key(blob)
    assert key is not None
    event(key.key_type if key.key_type in REVOCABLE_TYPES else "another type")
    safe(key, blob)


NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.@-"
TYPE_JUNK = st.sampled_from(["\n", " ", "\t", "\r", "\x00", "@revoked", "#", ",", "A B", "é"])


@given(WELL_FORMED, st.binary(max_size=8), TYPE_JUNK, st.integers(0, 3), st.booleans())
def test_no_offered_blob_puts_a_newline_space_or_marker_in_the_line(
    blob: bytes, noise: bytes, junk: str, where: int, as_type: bool
) -> None:
    """Mutated well-formed blobs: a type with junk spliced in, or bytes spliced anywhere."""
    size = int.from_bytes(blob[:4], "big")
    name = blob[4 : 4 + size].decode()
    if as_type:
        name = (name[:where] + junk + name[where:]) if where else junk + name
        mutated = _ssh_string(name.encode()) + blob[4 + size :]
    else:
        cut = where * len(blob) // 4
        mutated = blob[:cut] + noise + blob[cut:]
    key = offered_key(mutated)
    if as_type and ((junk[0] == "@" and not where) or not set(junk) <= set(NAME_CHARS)):
        assert key is None  # a marker in front; a blank, newline or other byte of no type name
    if key is not None:
        safe(key, mutated)


@given(st.text(max_size=20), st.binary(max_size=80))
def test_through_the_hooks_argv_only_safe_lines(key_type: str, tail: bytes) -> None:
    """Whatever ``%t %K`` ssh is given: the hook's parse, then Answer.lines."""
    blob = _ssh_string(key_type.encode()) + tail
    try:
        query = parse_args(["HOSTNAME", "[h]:2", key_type, encode_base64(blob)])
    except Exception:
        return
    lines = Answer("t", None, "capsul", entry(BLOB_A)).lines("[h]:2", query.want)
    for line in lines[1:]:
        key = offered_key(blob)
        assert key is not None
        safe(key, blob)
        assert line == key.known_hosts_line("[h]:2", "@revoked")
    assert "\n" not in "".join(lines)
