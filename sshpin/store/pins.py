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
from sshpin.core.files import NotRegularFile, atomic_write, ensure_dir, open_regular, read_small
from sshpin.core.keys import HostKey, parse_key_lines
from sshpin.core.names import port_name, split_host, valid_host
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
    if not check_dir():
        return None
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
        notes += [f"pin {host}: {note}" for note in other_names(text, host)]
    return keys


def _name(field: str) -> str:
    """A known_hosts host field's name as pins are kept: ``[h]:22`` is ``h``, other ports
    stay in brackets (a pin is per host name, ssh's port 22)."""
    if field.startswith("[") and field.endswith("]:22"):
        return field[1:-4].lower()
    return field.lower()


def other_names(text: str, host: str) -> list[str]:
    """Notes naming what known_hosts lines say beyond ``host``: the other names on a line
    (``a,b,[c]:22 type key``), a hashed name, or a line for another host altogether. Only
    ``host`` is pinned: a pin for another name needs its own ``sshpin pin NAME``."""
    from sshpin.core.keys import parse_key_line
    from sshpin.errors import SshpinError

    notes = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = parse_key_line(stripped).hosts
        except SshpinError:
            continue
        if not fields:
            continue  # .pub form: names no host
        names = [_name(f) for f in fields.split(",") if f]
        ignored = [n for n in names if n != host]
        if not ignored:
            continue
        shown = ", ".join(ascii(n)[1:-1][:60] for n in ignored[:8])
        more = f" and {len(ignored) - 8} more" if len(ignored) > 8 else ""
        if host in names:
            notes.append(
                f"line {number} also names {shown}{more}: not pinned for "
                f"{'it' if len(ignored) == 1 else 'them'} (pin each with 'sshpin pin NAME')"
            )
        else:
            notes.append(
                f"line {number} is for {shown}{more}, not {host}: its key is pinned for {host} "
                "only, as asked"
            )
    return notes


def _backup(host: str) -> str | None:
    try:
        fd, _ = open_regular(_path(host))
    except (FileNotFoundError, NotRegularFile):  # a FIFO there is no pin: nothing to back up
        return None
    with open(fd, "rb") as f:
        data = f.read()
    directory = os.path.join(pins_dir(), ".backup")  # a dot: never a host name
    ensure_dir(directory)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = os.path.join(directory, f"{host}.{stamp}")
    n = 1
    while os.path.exists(dest):
        dest = os.path.join(directory, f"{host}.{stamp}.{n}")
        n += 1
    atomic_write(dest, data)
    return dest


def write(host: str, keys: list[HostKey], now: float) -> tuple[HostEntry | None, str | None]:
    """Store the pin; returns the previous pin and the backup made of it (if any)."""
    ensure_dir(config_dir())
    ensure_dir(pins_dir())
    try:
        old = read(host)
    except ConfigError:
        old = None
    entry = HostEntry(host, "", RULE, now, keys, source="pin")
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


def check_dir() -> bool:
    """False when the pins dir does not exist; ConfigError when it is not a private directory
    of ours (another user able to write there could plant keys, or, through a file's name,
    lines in the ssh config ``setup`` writes)."""
    directory = pins_dir()
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise ConfigError(f"pins dir {directory}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"pins dir {directory}: writable by others or not yours: its pins are not used",
            f"chmod 700 {directory}",
        )
    return True


def valid_name(name: str) -> bool:
    """A pin file's name is a name as the hook looks it up (``Query.name``): a host (port 22)
    or ``[host]:port``, the host lower case without a trailing dot, and nothing ssh_config or
    a file name could read another way (``valid_host``'s characters only). Exactly the names
    ``sshpin pin`` writes: ``port_name`` of what ``split_host`` reads gives the name back."""
    from sshpin.errors import SshpinError

    try:
        host, port = split_host(name)
    except SshpinError:
        return False
    return valid_host(host) and port_name(host, port) == name


def hosts(skipped: list[str] | None = None) -> list[str]:
    """The pinned names (``host`` or ``[host]:port``): the names in the pins dir that
    ``valid_name`` accepts (others are added to ``skipped``, shown with ascii()); ConfigError
    if others may write the dir."""
    if not check_dir():
        return []
    try:
        names = os.listdir(pins_dir())
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if name.startswith("."):
            continue
        if valid_name(name):
            out.append(name)
        elif skipped is not None:
            skipped.append(ascii(name)[1:-1])
    return out
