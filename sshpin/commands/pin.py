"""``sshpin pin HOST`` and ``sshpin unpin HOST``: keys the user vouches for, pasted from a
provider's web page, with their fingerprints and visual host keys shown as ssh-keygen does."""

from __future__ import annotations

import os
import time
from typing import TextIO

from sshpin.commands.cache import cache_root, host_arg
from sshpin.errors import EXIT_OK, NoKeysError, SshpinError, UsageError, say
from sshpin.store import pins
from sshpin.store.history import HistoryRecord, append_history, history_record


def cmd_pin(token: str, stdin: TextIO, out: TextIO) -> int:
    from sshpin.core.fingerprint import keygen_line, randomart

    host = host_arg(token).name  # ``host`` (port 22) or ``[host]:port``, as known_hosts has it
    if stdin.isatty():  # a person at a terminal: say what to paste and how to end
        from sshpin.errors import terminal

        terminal(f"Paste the public host keys of {host} (.pub or known_hosts lines, from the "
                 "provider's page), then press Ctrl-D on an empty line:\n")  # fmt: skip
    text = stdin.read(pins.MAX_INPUT + 1)
    if len(text) > pins.MAX_INPUT:
        raise UsageError(f"pin {host}: more than 64 KiB on standard input")
    notes: list[str] = []
    keys = pins.parse_pasted(text, host, notes)
    for note in notes:
        say("pin", note)
    now = time.time()
    for key in keys:
        out.write(keygen_line(key, host) + "\n" + randomart(key) + "\n")
    old, backup = pins.write(host, keys, now)
    before = {k.sha256() for k in old.keys} if old else set()
    after = {k.sha256() for k in keys}
    if old is not None and before == after:
        out.write(f"{host}: already pinned to these keys\n")
        return EXIT_OK
    event = "pinned" if old is None else "pin-changed"
    _history(history_record(now, "pin", host, host, [], event, before, after, "pin"))
    out.write(f"{host}: pinned {len(keys)} key(s) in {pins.pins_dir()}")
    out.write(f" (previous pin kept in {backup})\n" if backup else "\n")
    _snippet(out)
    return EXIT_OK


def _snippet(out: TextIO) -> None:
    """Keep the ssh snippet's block of pinned hosts in step (ssh must ask the hook for them)."""
    from sshpin.commands.snippet import refresh_snippet, snippet_path

    try:
        changed = refresh_snippet()
    except SshpinError as e:
        say("pin", f"ssh snippet not updated: {e}")
        return
    if changed:
        out.write(f"updated {changed}\n")
    elif not os.path.exists(snippet_path()):
        out.write("note: run 'sshpin setup' so that ssh asks sshpin for this host's keys\n")


def _history(record: HistoryRecord) -> None:
    try:
        append_history(cache_root(), [record])
    except (OSError, SshpinError) as e:
        say("pin", f"history not written: {e}")


def cmd_unpin(token: str, out: TextIO) -> int:
    host = host_arg(token).name
    try:
        old = pins.read(host)
    except SshpinError:
        old = None
    backup = pins.remove(host)
    if backup is None:
        raise NoKeysError(f"unpin {host}: {host} is not pinned")
    removed = {k.sha256() for k in old.keys} if old else set()
    _history(history_record(time.time(), "pin", host, host, [], "unpinned", removed,
                                  set(), "pin"))  # fmt: skip
    out.write(f"{host}: unpinned (the pin is kept in {backup})\n")
    _snippet(out)
    return EXIT_OK
