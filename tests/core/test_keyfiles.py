"""Real-world key files: every type the local ssh-keygen makes (with comments), host
certificates, and hand-built blobs of types it cannot make here (security keys, post-quantum
hybrids, a made-up type). Known keys survive, every other line is skipped with a note naming
its type, and no line is ever taken for something else (issue 15)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from sshpin.core.config import ProviderConfig
from sshpin.core.keys import (
    SIGNING_KEY_TYPES,
    HostKey,
    parse_key_line,
    parse_key_lines,
    parse_line,
)
from sshpin.errors import (
    ConfigError,
    NoKeysError,
    UnsupportedKeyError,
    UsageError,
    VerificationError,
)
from sshpin.providers.certauthority import CertAuthorityProvider
from sshpin.store import pins
from sshpin.trust.keyfile import parse_key_file

KNOWN = [("ed25519", None), ("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521"),
         ("rsa", "2048"), ("rsa", "3072")]  # fmt: skip
REFUSED = [("dsa", None), ("rsa", "1024")]


def string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def hand_built() -> dict[str, str]:
    """``.pub`` lines of types ssh-keygen cannot make here, each with a comment."""
    pk = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )  # fmt: skip
    blobs = {
        "sk-ssh-ed25519@openssh.com": string(pk) + string(b"ssh:"),
        "sk-ecdsa-sha2-nistp256@openssh.com": string(b"nistp256") + string(point) + string(b"ssh:"),
        "ssh-mldsa44-ed25519@openssh.com": string(os.urandom(1312) + pk),
        "ssh-future@example.org": string(os.urandom(48)) + string(b"parameters"),
    }
    return {
        t: f"{t} {b64(string(t.encode()) + body)} {t.split('@')[0].upper()} test key #1"
        for t, body in blobs.items()
    }


class Material:
    def __init__(self, d: Path) -> None:
        self.known: dict[str, str] = {}  # name: .pub line (with its comment)
        self.refused: dict[str, str] = {}
        for kind, bits in KNOWN + REFUSED:
            path = d / f"{kind}{bits or ''}"
            cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path),
                   "-C", f"root@{kind}-host {kind} key, made {bits or 'default'}"]  # fmt: skip
            subprocess.run(cmd + (["-b", bits] if bits else []), check=True)
            line = path.with_suffix(".pub").read_text().strip()
            (self.known if (kind, bits) in KNOWN else self.refused)[path.name] = line
        ca = d / "ca"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
        for name in ("ed25519", "ecdsa256", "rsa2048"):
            subprocess.run(
                ["ssh-keygen", "-q", "-s", str(ca), "-h", "-I", "host-id", "-n", "web1.example",
                 str(d / f"{name}.pub")],
                check=True, capture_output=True,
            )  # fmt: skip
            self.refused[f"{name}-cert"] = (d / f"{name}-cert.pub").read_text().strip()
        self.refused.update(hand_built())

    def keys(self) -> list[HostKey]:
        return [parse_line(line) for line in self.known.values()]


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("keyfiles"))


def type_of(line: str) -> str:
    return line.split()[0]


def test_ssh_keygen_output_of_every_type(material: Material) -> None:
    for line in material.known.values():
        key = parse_line(line)
        assert key.openssh() == " ".join(line.split()[:2])
        assert parse_line(f"web1.example,10.0.0.5 {line}") == key  # known_hosts form
    types = {type_of(line) for line in material.refused.values()}
    assert {"ssh-dss", "ssh-ed25519-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com",
            "ecdsa-sha2-nistp256-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com",
            "ssh-mldsa44-ed25519@openssh.com", "ssh-future@example.org"} <= types  # fmt: skip
    for name, line in material.refused.items():
        for form in (line, f"[web1.example]:2222 {line}"):
            with pytest.raises(UnsupportedKeyError) as e:
                parse_line(form)
            shown = "RSA key of 1024 bits" if name == "rsa1024" else type_of(line)
            assert shown in str(e.value), (name, str(e.value))


def test_key_file_mixing_known_and_unknown(material: Material) -> None:
    lines = ["# /etc/ssh/ssh_host_*_key.pub", ""]
    for known, other in zip(material.known.values(), material.refused.values(), strict=False):
        lines += [other, known]
    lines += list(material.refused.values())[len(material.known) :]
    notes: list[str] = []
    keys = parse_key_file("\n".join(lines).encode(), "provider 'b': https://x/h.pub", notes)
    assert keys == material.keys()
    assert len(notes) == len(material.refused)
    for note, line in zip(notes, [x for x in lines if x in material.refused.values()], strict=True):
        assert note.startswith("provider 'b': https://x/h.pub: line ")
        assert "skipped" in note
        assert type_of(line) in note or "RSA key of 1024 bits" in note
    only_unknown = "\n".join(material.refused.values()).encode()
    with pytest.raises(NoKeysError, match="no usable host key in the file"):
        parse_key_file(only_unknown, "f")


def test_pasted_pin_skips_unknown_types_with_a_note(material: Material) -> None:
    notes: list[str] = []
    text = "\n".join([*material.refused.values(), *material.known.values()])
    assert pins.parse_pasted(text, "web1.example", notes) == material.keys()
    assert len(notes) == len(material.refused)
    assert all(n.startswith("pin web1.example: line ") for n in notes)
    sk = material.refused["sk-ssh-ed25519@openssh.com"]
    with pytest.raises(UsageError, match=r"no usable key.*sk-ssh-ed25519@openssh\.com"):
        pins.parse_pasted(sk, "web1.example")
    with pytest.raises(UsageError, match="line 2: marker '@cert-authority' is not allowed"):
        pins.parse_pasted(f"{sk}\n@cert-authority * {material.known['ed25519']}", "h")


def test_ca_key_files_skip_unknown_types(material: Material, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pub"
    sk = material.refused["sk-ssh-ed25519@openssh.com"]
    future = material.refused["ssh-future@example.org"]
    ca_file.write_text(f"# CAs\n{future}\n{material.known['ed25519']}\n{sk}\n")
    ca_file.chmod(0o600)
    provider = ProviderConfig({"name": "ca", "type": "cert-authority", "hosts": ["*"],
                               "ca_keys": [], "ca_key_files": [str(ca_file)]})  # fmt: skip
    ca_keys = CertAuthorityProvider(provider, str(tmp_path)).ca_keys
    notes: list[str] = []
    got = ca_keys(notes)
    assert got == [parse_line(material.known["ed25519"]), parse_line(sk, SIGNING_KEY_TYPES)]
    assert (
        len(notes) == 1 and "line 2: skipped" in notes[0] and "ssh-future@example.org" in notes[0]
    )
    ca_file.write_text(future + "\n")
    with pytest.raises(ConfigError, match=r"no usable CA key.*ssh-future@example\.org"):
        ca_keys()
    ca_file.write_text(f"{material.known['ed25519']}\nssh-future@example.org AAAA@@@ comment\n")
    with pytest.raises(ConfigError, match=r"ca.pub: line 2: key content after 'ssh-future"):
        ca_keys()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("sk-ssh-ed25519@openssh.com AAAA@@@ ED25519-SK test key", "key content after 'sk-ssh"),
        ("host.example ssh-ed25519 AAAA@@@", "key content after 'ssh-ed25519'"),
        ("just some words here", "not a key line"),
        ("ssh-ed25519", "needs a key type and a base64 key"),
        ("@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "marker '@revoked' is not allowed"),
    ],
)
def test_malformed_lines_are_refused_naming_the_problem(line: str, words: str) -> None:
    with pytest.raises(VerificationError) as e:
        parse_key_lines(f"# a file\n{line}\n", skip_unsupported=True)
    assert not isinstance(e.value, UnsupportedKeyError)
    assert str(e.value).startswith("line 2: ") and words in str(e.value), str(e.value)


def test_declared_type_differs_from_blob(material: Material) -> None:
    ed = material.known["ed25519"].split()[1]
    for line in (f"ssh-rsa {ed} comment", f"sk-ssh-ed25519@openssh.com {ed} ED25519-SK key",
                 f"host ssh-future@example.org {ed}"):  # fmt: skip
        with pytest.raises(VerificationError, match="differs from the type inside the key"):
            parse_key_lines(line, skip_unsupported=True)


def test_markers_only_where_allowed(material: Material) -> None:
    line = f"@cert-authority *.example {material.refused['sk-ssh-ed25519@openssh.com']}"
    parsed = parse_key_line(line, SIGNING_KEY_TYPES, markers=True)
    want = ("@cert-authority", "*.example", "SK-SSH-ED25519 test key #1")
    assert (parsed.marker, parsed.hosts, parsed.comment) == want
    with pytest.raises(VerificationError, match="marker"):
        parse_key_line(line, SIGNING_KEY_TYPES)
    with pytest.raises(VerificationError, match="marker '@other'"):
        parse_key_line(f"@other * {material.known['ed25519']}", markers=True)


# -- hypothesis: any mix of known and unknown lines, any comments ----------------------------


def _known_lines() -> list[str]:
    privates: list[Any] = [ed25519.Ed25519PrivateKey.generate() for _ in range(2)]
    privates += [ec.generate_private_key(c()) for c in (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)]
    privates.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return [
        p.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        for p in privates
    ]


def _unknown_lines() -> list[str]:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    lines = [" ".join(x.split()[:2]) for x in hand_built().values()]
    lines.append(short.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode())
    cert = string(b"ssh-ed25519-cert-v01@openssh.com") + string(os.urandom(32)) * 3
    lines.append(f"ssh-ed25519-cert-v01@openssh.com {b64(cert)}")
    lines.append(f"ssh-dss {b64(string(b'ssh-dss') + string(os.urandom(129)) * 4)}")
    return lines


KNOWN_LINES = _known_lines()
UNKNOWN_LINES = _unknown_lines()
TRICKY = [w for line in KNOWN_LINES + UNKNOWN_LINES for w in line.split()] + [
    "@cert-authority", "@revoked", "#", "AAAA", "host.example", "[h]:22", "*", "ssh-ed25519",
]  # fmt: skip
words = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), min_size=1),
)
comments = st.lists(words, max_size=4).map(" ".join)
# a host field is anything but a marker or a comment (those start with @ and #)
hosts = st.one_of(
    st.sampled_from([w for w in TRICKY if w[0] not in "@#"] + ["web1.example,10.0.0.5", "*"]),
    st.from_regex(r"\A[a-z0-9.*?,\[\]:-]{1,30}\Z"),
)


@st.composite
def entries(draw: st.DrawFn, pool: list[str]) -> tuple[str, str]:
    """A line holding one of ``pool``'s keys (``.pub`` or known_hosts form, any comment),
    and that key."""
    key = draw(st.sampled_from(pool))
    comment = draw(comments)
    host = draw(hosts) if draw(st.booleans()) else ""
    indent = draw(st.sampled_from(["", " ", "\t"]))
    return f"{indent}{host + ' ' if host else ''}{key} {comment}".rstrip(), key


noise = st.sampled_from(["", "  ", "# comment ssh-ed25519 AAAA", "#" + KNOWN_LINES[0]])
mixes = st.tuples(
    st.lists(entries(KNOWN_LINES), min_size=1, max_size=6),
    st.lists(entries(UNKNOWN_LINES), max_size=6),
    st.lists(noise.map(lambda x: (x, "")), max_size=3),
).flatmap(lambda t: st.permutations(t[0] + t[1] + t[2]))


@settings(max_examples=300, deadline=None)
@given(mixes)
def test_parsed_set_is_exactly_the_known_keys(items: list[tuple[str, str]]) -> None:
    want: list[HostKey] = []
    unknown = 0
    for _, key_part in items:
        if key_part in KNOWN_LINES:
            key = parse_line(key_part)
            if key not in want:
                want.append(key)
        elif key_part:
            unknown += 1
    notes: list[str] = []
    got = parse_key_lines("\n".join(line for line, _ in items), skip_unsupported=True, notes=notes)
    assert got == want  # exactly the known keys, in order, none lost, none invented
    assert len(notes) == unknown
    assert want  # the accepting branch is reached in every example
    event(f"unknown lines: {min(unknown, 3)}")
    target(float(unknown), label="unknown lines")
