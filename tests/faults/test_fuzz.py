"""A short atheris run of the provider-document parser in every CI run; set
SSHPIN_FUZZ_RUNS for a longer one locally (e.g. SSHPIN_FUZZ_RUNS=500000)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Keys
from tests.refserver import CapsulAPI

HERE = Path(__file__).resolve().parent


def test_atheris_finds_no_crash_in_the_document_parser(keys: Keys, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    api = CapsulAPI(set())
    api.add("capsul-seed1", [keys.pub(keys.host), keys.pub(keys.rebuilt)], ipv4="192.0.2.1")
    api.add("capsul-seed2", [keys.pub(keys.forged)], ipv6="2001:db8::1", name="web")
    api.revoke([keys.pub(keys.client)])
    (corpus / "seed").write_bytes(api.body())
    runs = os.environ.get("SSHPIN_FUZZ_RUNS", "4000")
    done = subprocess.run(
        [sys.executable, str(HERE / "fuzz_document.py"), str(corpus), f"-runs={runs}",
         "-max_len=8192", "-timeout=10"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr  # libFuzzer's summary: the runs completed
