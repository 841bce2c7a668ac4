"""``sshpin export [HOST...|--all] -o FILE [--watch SECONDS]``: a known_hosts file for clients
that read one (Go's ``x/crypto/ssh/knownhosts``, OpenSSH before 8.5, anything else).

Each host's lines come from the one lookup (lookup.py), as the hook prints them, keys,
``@cert-authority`` and ``@revoked`` lines alike, and carry the ``sshpin-until`` limit of the
ProxyCommand mode's managed file (store/knownhosts.py: the cache's own freshness rule). The
file is sshpin's: every run rewrites it whole and atomically from what the cache vouches for
now, so a key the provider dropped, a host whose lookup fails and a line past its limit are
gone after the next run. ``--watch`` reruns every SECONDS, and sooner when a line's limit comes
first; without it the command runs once, for a timer (sshpin(1) has a systemd example).
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from sshpin.commands.cache import host_arg, rows
from sshpin.core import config
from sshpin.core.files import atomic_write, read_small
from sshpin.core.names import Query
from sshpin.errors import EXIT_NO_KEYS, EXIT_OK, ConfigError, SshpinError, UsageError, log, say
from sshpin.lookup import lookup
from sshpin.providers import for_config, load_config, provider_for
from sshpin.store.knownhosts import UNTIL, in_time, vouched_lines

HEADER = "# sshpin export: rewritten whole on every run from what sshpin vouches for; do not edit"
MODE = 0o644  # public keys, as ssh's own known_hosts
MAX_FILE = 16 << 20


def account_hosts() -> list[list[str]]:
    """``--all``: for every cached capsul or host and every pin, the names ssh may use for
    it (capsul id first, then names and addresses); the lookup decides which it vouches for.
    With nothing cached yet, each caching provider is fetched from first."""
    found = rows()
    if not any(row.provider != "pin" for row, _ in found):
        cfg = load_config(cache=config.cache_dir())
        for p in [for_config(c) for c in (cfg.providers if cfg else [])]:
            if p.caches:
                try:
                    p.refresh(None)
                except SshpinError as e:
                    say("export", f"provider {p.name!r}: {e.message}", e.hint)
        found = rows()
    out: list[list[str]] = []
    for row, _ in found:
        names = [row.capsul] if row.capsul else []
        names += [n for n in row.names + row.addresses if n and n not in names]
        if names:
            out.append(names)
    return out


def host_lines(token: str) -> tuple[list[str], bool]:
    """(the lines sshpin vouches for, for ``token`` (ssh's ``host`` or ``[host]:port``), with
    their limits; whether sshpin manages the host). Raises SshpinError."""
    query = Query(token)
    # by host and port, as lookup.py chooses (a provider vouches on its ``ports`` only)
    provider = provider_for(load_config(cache=config.cache_dir()), query.host, query.port)
    answer = lookup(query)
    managed = bool(answer.provider) or answer.pin is not None
    return vouched_lines(token, answer.pin, answer.entry, provider), managed


def build(groups: list[list[str]], explicit: bool) -> tuple[list[str], int]:
    """(lines, exit status): each group is one host's names; a failure drops its lines."""
    lines: list[str] = []
    status = EXIT_OK
    for names in groups:
        for i, token in enumerate(names):
            try:
                found, managed = host_lines(token)
            except SshpinError as e:
                if explicit or i == 0:
                    say(token, f"{e.message}; no lines exported for it", e.hint)
                    status = max(status, e.exit_status)
                else:
                    log(token, f"{e.message}; no lines exported for it")
                continue
            trusted = [line for line in found if not line.startswith("@revoked ")]
            if not trusted and explicit:  # (--all: the capsul left the account, say, as said)
                why = "no authentic keys" if managed else "not managed by sshpin"
                say(token, f"{why}: no lines exported for it")
                status = max(status, EXIT_NO_KEYS)
            lines += [line for line in found if line not in lines]
    return lines, status


def write(path: str, lines: list[str], now: float) -> bool:
    """Write the file (the lines within their limits) if its content changes; True if so."""
    body = "".join(line + "\n" for line in [HEADER, *lines] if in_time(line, now)).encode()
    if read_small(path, limit=MAX_FILE) == body:
        return False
    try:
        atomic_write(path, body, MODE)
    except OSError as e:
        raise ConfigError(f"export: cannot write {path}: {e.strerror or e}") from None
    return True


def next_limit(lines: list[str]) -> float | None:
    """The earliest ``sshpin-until`` among the lines: when ``--watch`` must rewrite at latest."""
    limits = []
    for line in lines:
        last = line.rsplit(" ", 1)[-1]
        if last.startswith(UNTIL) and last[len(UNTIL) :].isdigit():
            limits.append(float(last[len(UNTIL) :]))
    return min(limits) if limits else None


def run_once(hosts: list[str], every: bool, path: str, out: TextIO) -> tuple[int, list[str]]:
    groups = account_hosts() if every else [[host_arg(h).token] for h in hosts]
    lines, status = build(groups, explicit=not every)
    if write(path, lines, time.time()):
        out.write(f"{path}: {len(lines)} lines\n")
        out.flush()
    return status, lines


def cmd_export(hosts: list[str], every: bool, path: str, watch: float | None, out: TextIO) -> int:
    if bool(hosts) == every:
        raise UsageError("export: give HOST... or --all, not both")
    if watch is not None and not 1 <= watch <= 86400:
        raise UsageError("export: --watch takes 1 to 86400 seconds")
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise ConfigError(f"export: {os.path.dirname(path)}: no such directory")
    status, lines = run_once(hosts, every, path, out)
    while watch is not None:
        wait = watch
        first = next_limit(lines)
        if first is not None:
            wait = min(wait, max(1.0, first - time.time() + 1))
        time.sleep(wait)
        try:
            status, lines = run_once(hosts, every, path, out)
        except SshpinError as e:
            say("export", e.message, e.hint)
    return status
