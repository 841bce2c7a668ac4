"""Coverage-guided fuzzing (atheris) of the provider-document parser.

    python3 tests/faults/fuzz_document.py CORPUS_DIR -runs=200000   # a longer local run

Any exception other than VerificationError (the parser's one way to refuse) is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from sshpin.errors import VerificationError
    from sshpin.trust.document import parse_capsul_api


def one_input(data: bytes) -> None:
    try:
        doc = parse_capsul_api(data, "fuzz", "https://fuzz.example/api/capsuls")
    except VerificationError:
        return
    for capsul in doc.capsuls:  # what was accepted must render to clean known_hosts lines
        for key in capsul.keys:
            line = key.known_hosts_line(capsul.id)
            assert "\n" not in line and "\r" not in line and not line.startswith("@")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
