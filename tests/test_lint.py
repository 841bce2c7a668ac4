"""Static checks run as part of the one test command: ruff, mypy --strict, the import layers
(import-linter), mandoc -T lint."""

from __future__ import annotations

import re
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


def _quote_problems(text: str) -> list[str]:
    """Paragraphs of rendered text whose typographic single quotes do not pair up: a quote
    opened inside another, or one left open (mdoc's partial-implicit Ql swallowing the rest of
    its line renders as ``(\\u2018a is \\u2018b\\u2019\\u2019)``)."""
    bad = []
    for paragraph in text.split("\n\n"):
        depth = 0
        for ch in paragraph:
            depth += {"\u2018": 1, "\u2019": -1}.get(ch, 0)
            if depth not in (0, 1):
                break
        if depth != 0:
            bad.append(" ".join(paragraph.split())[:200])
    return bad


def test_quote_check_finds_a_swallowed_quote() -> None:
    assert _quote_problems("a (\u2018x is \u2018y\u2019\u2019) b") != []
    assert _quote_problems("a (\u2018x\u2019 is \u2018y\u2019) b\n\n\u2018z\u2019") == []


@pytest.mark.parametrize("page", ["man/sshpin.1", "man/sshpin.conf.5"])
def test_man_pages_render_with_paired_quotes(page: str) -> None:
    """What a reader sees (``mandoc -T utf8``): every quote closes where it should."""
    text = _render(page)
    assert "\u2018" in text  # the check below has quotes to look at
    assert _quote_problems(text) == []


def _render(page: str) -> str:
    """``page`` as ``mandoc -T utf8`` shows it, overstrike (bold, underline) as plain text."""
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        pytest.fail("mandoc is not installed (apt-get install mandoc)")
    done = _run(mandoc, "-T", "utf8", page)
    assert done.returncode == 0, done.stderr
    return re.sub(".\b", "", done.stdout)


def _rendered(page: str) -> str:
    return " ".join(_render(page).split())


@pytest.mark.parametrize(
    ("page", "span"),
    [
        ("man/sshpin.1", "presented (\u2018NONE NONE\u2019 for ORDER);"),
        ("man/sshpin.1", "(default \u2018capsul-*\u2019; a repeated --hosts adds its patterns)"),
        ("man/sshpin.conf.5", "answers for (\u2018api\u2019, equal to api_url)"),
    ],
)
def test_a_quote_covers_exactly_its_literal(page: str, span: str) -> None:
    """Paired quotes can still close after the wrong word: mdoc's ``Ql`` runs to the end of
    its line, macros included, so ``.Pq Ql NONE NONE No for Cm ORDER`` renders
    (\u2018NONE NONE for ORDER\u2019)."""
    assert span in _rendered(page)


@pytest.mark.parametrize("page", ["man/sshpin.1", "man/sshpin.conf.5"])
def test_no_normal_text_inside_a_ql(page: str) -> None:
    """``No`` after ``Ql`` on one line means text meant to be outside the quote, which mdoc
    puts inside it (``Ql`` is closed by the end of its line only): one line per ``Ql``."""
    lines = (ROOT / page).read_text().splitlines()
    bad = [f"{n}: {line}" for n, line in enumerate(lines, 1)
           if re.search(r"(^\.| )Ql .* No ", line)]  # fmt: skip
    assert bad == []


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


def test_no_module_of_the_package_is_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "sshpin").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}  # fmt: skip
    assert not long, long


def test_no_fault_knob_bomb_or_cache_filler_ships() -> None:
    """Test servers' knobs live under tests/ (tests/refserver.py), never in the package."""
    words = ("self.faults", "_bomb", "fill_cache", "status_override", "body_override", "page_delay")
    found = [f"{p.relative_to(ROOT)}: {w}" for p in (ROOT / "sshpin").rglob("*.py")
             for w in words if w in p.read_text()]  # fmt: skip
    assert not found, found


def test_the_time_rules_and_the_rfc3339_formatter_are_defined_once() -> None:
    text = {p: p.read_text() for p in (ROOT / "sshpin").rglob("*.py")}
    for pattern in (r"^MAX_AGE = ", r"^SKEW = ", r'strftime\("%Y-%m-%dT%H:%M:%SZ"'):
        where = [str(p.relative_to(ROOT)) for p, t in text.items() if re.search(pattern, t, re.M)]
        assert len(where) == 1, (pattern, where)
