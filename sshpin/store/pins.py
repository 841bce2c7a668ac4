"""Pins: host keys the user vouches for, pasted from a provider's page.

Pins are user data, not cache: they live under the config dir (``pins/<host>``), are never
evicted by ``cache clear``, and every change first copies the old pin to ``pins/.backup/``.
A pin is stored in the cache's host-entry format (rule ``pin``), so the hook reads it with the
same strict parser, standard library only. The hook consults a pin before any provider.
"""

from __future__ import annotations

import os
import stat
import time

from sshpin.core.config import config_dir
from sshpin.core.files import atomic_write, ensure_dir, read_small
from sshpin.core.keys import HostKey, parse_key_lines
from sshpin.errors import ConfigError, UsageError, VerificationError
from sshpin.store.entries import HostEntry

RULE = "pin"
MAX_INPUT = 65536


def pins_dir() -> str:
    return os.path.join(config_dir(), "pins")


def _path(host: str) -> str:
    return os.path.join(pins_dir(), host)


def read(host: str) -> HostEntry | None:
    """The pin for ``host`` (lower case, no port), or None. One failed open when none exists.

    A pin is used only when its directory is private: another user able to write there could
    otherwise plant keys.
    """
    raw = read_small(_path(host))
    if raw is None:
        return None
    try:
        st = os.lstat(pins_dir())
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"pins dir {pins_dir()}: writable by others or not yours: its pins are not used "
            f"(fix: chmod 700 {pins_dir()})"
        )
    entry = HostEntry.from_text(raw.decode("utf-8", "replace"))
    if entry is None or entry.host != host or entry.rule != RULE or not entry.keys:
        raise ConfigError(f"pin file {_path(host)} is damaged: fix or remove it (sshpin unpin)")
    return entry


def parse_pasted(text: str, host: str, notes: list[str] | None = None) -> list[HostKey]:
    """Keys pasted in ``.pub`` form (``type base64 [comment]``) or known_hosts form
    (``hosts type base64``); blank lines and ``#`` comments are skipped. Markers are refused.
    A key of a type sshpin does not serve (DSA, a certificate, a newer type) is skipped with a
    note in ``notes``; when nothing else is left, that is the error."""
    found: list[str] = []
    try:
        keys = parse_key_lines(text, skip_unsupported=True, notes=found)
    except VerificationError as e:
        raise UsageError(f"pin {host}: {e}") from None
    if not keys and found:
        raise UsageError(f"pin {host}: no usable key on standard input ({found[0]})")
    if not keys:
        raise UsageError(f"pin {host}: no key on standard input (paste .pub or known_hosts lines)")
    if notes is not None:
        notes += [f"pin {host}: {note}" for note in found]
    return keys


def _backup(host: str) -> str | None:
    src = _path(host)
    if not os.path.exists(src):
        return None
    directory = os.path.join(pins_dir(), ".backup")  # a dot: never a host name
    ensure_dir(directory)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = os.path.join(directory, f"{host}.{stamp}")
    n = 1
    while os.path.exists(dest):
        dest = os.path.join(directory, f"{host}.{stamp}.{n}")
        n += 1
    with open(src, "rb") as f:
        atomic_write(dest, f.read())
    return dest


def write(host: str, keys: list[HostKey], now: float) -> tuple[HostEntry | None, str | None]:
    """Store the pin; returns the previous pin and the backup made of it (if any)."""
    ensure_dir(config_dir())
    ensure_dir(pins_dir())
    try:
        old = read(host)
    except ConfigError:
        old = None
    entry = HostEntry(host, "", RULE, now, keys, False, "pin")
    if old is not None and set(old.keys) == set(keys):
        return old, None
    backup = _backup(host)
    atomic_write(_path(host), entry.to_text().encode())
    return old, backup


def remove(host: str) -> str | None:
    """Remove the pin (a backup is kept); returns the backup's path, None if none existed."""
    if not os.path.exists(_path(host)):
        return None
    backup = _backup(host)
    os.unlink(_path(host))
    return backup


def hosts() -> list[str]:
    try:
        names = os.listdir(pins_dir())
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith("."))
