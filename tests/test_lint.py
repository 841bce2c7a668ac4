"""Static checks run as part of the one test command: ruff, mypy --strict, the import layers
(import-linter), mandoc -T lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    done = _run(sys.executable, "-m", "ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict() -> None:
    done = _run(sys.executable, "-m", "mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_imports_only_go_down() -> None:
    """The wings' layers and independence contracts in pyproject.toml (docs/architecture.md)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = _run(lint, "--no-cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("page", ["man/sshpin.1", "man/sshpin.conf.5"])
def test_man_pages_lint_clean(page: str) -> None:
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.fail("mandoc is not installed (apt-get install mandoc)")
    done = _run(mandoc, "-T", "lint", "-W", "warning", page)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_every_security_mutant_still_names_its_code() -> None:
    """mutation/run_mutants.py plants each mutant by exact text; code that moved makes it
    stale (and CI's mutant stage fail). Caught here first, in the suite, in milliseconds."""
    import tomllib

    mutants = tomllib.loads((ROOT / "mutation" / "security_mutants.toml").read_text())["mutant"]
    assert len({m["id"] for m in mutants}) == len(mutants)
    for m in mutants:
        source = (ROOT / m["file"]).read_text()
        finds = m["find"] if isinstance(m["find"], list) else [m["find"]]
        for find in finds:
            assert source.count(find) == 1, f"{m['id']}: {find!r} is not once in {m['file']}"
        assert m["killed_by"], m["id"]
