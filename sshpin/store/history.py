"""``history.log``: the append-only record of every change of a host's key set."""

from __future__ import annotations

import os
from typing import TypedDict

from sshpin.core.files import NotRegularFile, ensure_dir, open_append, open_regular
from sshpin.core.times import rfc3339
from sshpin.errors import ConfigError


class HistoryRecord(TypedDict):
    """One change of a key set, as ``history.log`` keeps it (a JSON line)."""

    time: str  # RFC 3339, UTC
    provider: str
    capsul: str
    name: str
    addresses: list[str]
    event: str  # first-seen, changed, removed
    added: list[str]  # SHA256 fingerprints
    removed: list[str]
    source: str


def history_path(root: str) -> str:
    return os.path.join(root, "history.log")


def append_history(root: str, records: list[HistoryRecord]) -> None:
    """Append records as JSON lines with one ``write`` each, under O_APPEND.

    A process killed mid-append can leave at most its own last line torn; readers skip a
    line that does not parse, so earlier records are never lost or corrupted. A record
    begins with a newline when the file does not end in one (a torn line is then sealed off).
    """
    import json

    if not records:
        return
    ensure_dir(root)
    fd, st = open_append(history_path(root))  # a FIFO there: NotRegularFile, not a wait
    try:
        prefix = b""
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
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
) -> HistoryRecord:
    """One history record: a change of a key set, as fingerprints added and removed."""

    return {
        "time": rfc3339(when),
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
    """Every record that parses; ConfigError when history.log is not a regular file."""
    import json

    out: list[dict[str, object]] = []
    path = history_path(root)
    try:
        fd, _ = open_regular(path)
    except FileNotFoundError:
        return out
    except NotRegularFile:
        raise ConfigError(f"history {path}: not a regular file: refusing it") from None
    except OSError as e:
        raise ConfigError(f"cannot read history {path}: {e.strerror or e}") from None
    with open(fd, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed writer
            if isinstance(record, dict):
                out.append(record)
    return out
