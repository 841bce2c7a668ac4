"""The constant database under the listing's index: whole or nothing, a few reads a key."""

from __future__ import annotations

import os
from pathlib import Path

from sshpin.store.cdb import Reader, Writer


def test_every_key_is_found_and_repeats_are_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "x.cdb")
    w = Writer(path)
    for i in range(5000):
        w.add(b"k%d" % i, b"v%d" % i)
    w.add(b"k7", b"again")
    w.commit()
    with Reader.open(path) as r:  # type: ignore[union-attr]
        assert r.get(b"k4999") == b"v4999"
        assert r.get_all(b"k7") == [b"v7", b"again"]
        assert r.get(b"missing") is None
        assert sum(1 for _ in r.items(b"k1")) == 1111
    assert os.listdir(tmp_path) == ["x.cdb"]


def test_an_aborted_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = str(tmp_path / "x.cdb")
    w = Writer(path)
    w.add(b"a", b"1")
    w.commit()
    before = Path(path).read_bytes()
    w = Writer(path)
    w.add(b"a", b"2")
    w.abort()
    assert Path(path).read_bytes() == before and os.listdir(tmp_path) == ["x.cdb"]


def test_a_damaged_or_foreign_file_is_no_database(tmp_path: Path) -> None:
    foreign = tmp_path / "f"
    foreign.write_bytes(b"not a database" * 400)
    assert Reader.open(str(foreign)) is None
    assert Reader.open(str(tmp_path / "none")) is None
    path = str(tmp_path / "x.cdb")
    w = Writer(path)
    w.add(b"a", b"1")
    w.commit()
    data = bytearray(Path(path).read_bytes())
    Path(path).write_bytes(bytes(data[: len(data) - 8]))  # a torn table
    r = Reader.open(path)
    assert r is not None
    try:
        r.get(b"a")
    except ValueError:
        pass  # damage is reported, never a crash or a wrong value
    r.close()
