"""``history.log``: the append-only record of every change of a host's key set."""

from __future__ import annotations

import os

from sshpin.core.files import ensure_dir


def history_path(root: str) -> str:
    return os.path.join(root, "history.log")


def append_history(root: str, records: list[dict[str, object]]) -> None:
    """Append records as JSON lines with one ``write`` each, under O_APPEND.

    A process killed mid-append can leave at most its own last line torn; readers skip a
    line that does not parse, so earlier records are never lost or corrupted. A record
    begins with a newline when the file does not end in one (a torn line is then sealed off).
    """
    import json

    if not records:
        return
    ensure_dir(root)
    path = history_path(root)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        prefix = b""
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    prefix = b"\n"
        for record in records:
            os.write(fd, prefix + json.dumps(record, sort_keys=True).encode() + b"\n")
            prefix = b""
        os.fsync(fd)
    finally:
        os.close(fd)


def history_record(
    when: float,
    provider: str,
    capsul: str,
    name: str,
    addresses: list[str],
    event: str,
    before: set[str],
    after: set[str],
    source: str,
) -> dict[str, object]:
    """One history record: a change of a key set, as fingerprints added and removed."""
    import time

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "provider": provider,
        "capsul": capsul,
        "name": name,
        "addresses": addresses,
        "event": event,
        "added": sorted(after - before),
        "removed": sorted(before - after),
        "source": source,
    }


def read_history(root: str) -> list[dict[str, object]]:
    import json

    out: list[dict[str, object]] = []
    try:
        with open(history_path(root), "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn line from a killed writer
                if isinstance(record, dict):
                    out.append(record)
    except FileNotFoundError:
        pass
    return out
