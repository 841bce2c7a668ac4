"""Fingerprints and the visual host key, byte for byte as the real ``ssh-keygen`` draws them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core.fingerprint import HEIGHT, WIDTH, _draw, keygen_line, randomart
from sshpin.core.keys import parse_line

TYPES = [("ed25519", []), ("ecdsa", ["-b", "256"]), ("ecdsa", ["-b", "384"]),
         ("ecdsa", ["-b", "521"]), ("rsa", ["-b", "2048"]), ("rsa", ["-b", "3072"])]  # fmt: skip


@pytest.fixture(scope="module")
def pubs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("fp")
    out = []
    for i, (kind, extra) in enumerate(TYPES):
        path = d / f"k{i}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"c{i}", "-f", str(path)],
            check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.append(Path(str(path) + ".pub"))
    return out


def keygen(*args: str) -> str:
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("md5", [False, True])
def test_line_and_randomart_match_ssh_keygen_lv(pubs: list[Path], md5: bool) -> None:
    for pub in pubs:
        key = parse_line(pub.read_text())
        comment = pub.read_text().split()[2]
        ours = keygen_line(key, comment, md5) + "\n" + randomart(key, md5) + "\n"
        theirs = keygen("-l", "-v", *(["-E", "md5"] if md5 else []), "-f", str(pub))
        assert ours == theirs, pub


@given(st.binary(min_size=0, max_size=64))
def test_randomart_shape(raw: bytes) -> None:
    art = _draw(raw, "[ED25519 256]", "[SHA256]").split("\n")
    assert len(art) == HEIGHT + 2 and all(len(line) == WIDTH + 2 for line in art)
    body = "".join(line[1:-1] for line in art[1:-1])
    assert body.count("E") == 1 and body.count("S") <= 1  # the end may land on the start
    assert art[0].startswith("+") and "[ED25519 256]" in art[0]
