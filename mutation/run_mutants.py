"""Plant each security mutant of security_mutants.toml and require its tests to fail.

    python3 mutation/run_mutants.py             # every mutant (a few minutes)
    python3 mutation/run_mutants.py ID [ID...]  # the named ones

Each mutant edits the working tree in place (the tests run the installed hook, which is this
tree), runs ``pytest -x`` on the tests named in ``killed_by``, and restores the file whatever
happens. A mutant is killed when those tests fail; a survivor, or a mutant whose ``find`` text
is not in its file exactly once (the code moved: update the list), fails the run.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    mutants = tomllib.loads((ROOT / "mutation" / "security_mutants.toml").read_text())["mutant"]
    if argv:
        mutants = [m for m in mutants if m["id"] in argv]
    failures = 0
    for m in mutants:
        path = ROOT / m["file"]
        original = path.read_text()
        finds, replaces = m["find"], m["replace"]  # one edit, or a list of edits
        pairs = (
            list(zip(finds, replaces, strict=True))
            if isinstance(finds, list)
            else [(finds, replaces)]
        )
        stale = [f for f, _ in pairs if original.count(f) != 1]
        if stale:
            print(f"STALE     {m['id']}: {stale[0]!r} is not in {m['file']} exactly once")
            failures += 1
            continue
        mutated = original
        for find, replace in pairs:
            mutated = mutated.replace(find, replace)
        started = time.monotonic()
        try:
            path.write_text(mutated)
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                 "-p", "no:randomly", "-n", "0", *m["killed_by"]],
                cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
            )  # fmt: skip
        finally:
            path.write_text(original)
        took = time.monotonic() - started
        if done.returncode == 1:
            print(f"killed    {m['id']} ({took:.0f} s): {m['rule']}")
        else:
            why = "SURVIVED" if done.returncode == 0 else f"ERROR {done.returncode}"
            print(f"{why:<9} {m['id']}: {m['rule']}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            failures += 1
    print(f"{len(mutants) - failures} killed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
