"""``sshpin doctor``'s stale-line check: the lines of the user's own known_hosts files, for a
host sshpin vouches for, whose key sshpin does not vouch for.

The hook already names such a key ``@revoked`` when a server offers it (lookup.Answer), so
ssh refuses it; the line is still worth removing, for every client that reads the file
without sshpin. What sshpin vouches for comes from the cache and the pins only (the same
lookup as ``cache show``, no fetch): the check is local, ``doctor --offline`` included.
Hashed names (``|1|salt|hash``, ``HashKnownHosts``) are matched by HMAC-SHA1 of the names the
cache and the pins know, as ssh matches them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import shlex

from sshpin.core import config as config_mod
from sshpin.core.checks import Check
from sshpin.core.files import read_small
from sshpin.core.keys import HostKey, decode_base64
from sshpin.core.names import Query, port_name, split_host
from sshpin.core.offered import offered_key
from sshpin.errors import SshpinError, UsageError
from sshpin.lookup import lookup
from sshpin.store import pins

MAX_FILE = 16 << 20  # a known_hosts file larger than this is not read
HASH_MAGIC = "|1|"


def stale_lines(files: list[str], cfg: config_mod.Config, default_file: str) -> list[Check]:
    """One failed check per stale line of ``files``, with the ``ssh-keygen -R`` removing it
    (``-f FILE`` unless it is ``default_file``, ssh-keygen's own default)."""
    out: list[Check] = []
    known: list[str] | None = None  # the names hashed lines are matched against, when needed
    for path in files:
        raw = read_small(path, MAX_FILE)
        if raw is None:
            continue
        for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
            fields = line.split()
            if len(fields) < 3 or fields[0].startswith(("#", "@")):
                continue  # blank, comment, or a marker line (@revoked, @cert-authority)
            key = _key(fields[1], fields[2])
            if key is None:
                continue  # not a key ssh would read either
            if fields[0].startswith(HASH_MAGIC):
                if known is None:
                    known = candidate_names(cfg)
                names = [n for n in known if hashed_match(fields[0], n)]
            else:
                names = [n for n in fields[0].split(",") if not any(c in n for c in "*?!")]
            for name in names:
                vouched = _disagrees(name, key)
                if vouched is None:
                    continue
                where = f"{path}:{number}"
                command = f"ssh-keygen -R {shlex.quote(name)}"
                if path != default_file:
                    command += f" -f {shlex.quote(path)}"
                hashed = " (hashed)" if fields[0].startswith(HASH_MAGIC) else ""
                out.append(
                    Check(
                        "known_hosts",
                        False,
                        f"{where}: {name}{hashed} {key.key_type} {key.sha256()} is not a key "
                        f"sshpin vouches for ({vouched}); the hook names it @revoked to ssh, "
                        "other clients reading this file may still accept it",
                        command,
                    )
                )
    return out


def _key(declared: str, text: str) -> HostKey | None:
    try:
        blob = decode_base64(text)
    except ValueError:
        return None
    key = offered_key(blob)
    return key if key is not None and key.key_type == declared else None


def _disagrees(name: str, key: HostKey) -> str | None:
    """What vouches for ``name`` (a known_hosts name: host or ``[host]:port``) when it does
    not vouch for ``key``; None when the name is not vouched for, or the key is."""
    try:
        host, port = split_host(name)
        answer = lookup(Query(port_name(host, port), None), fetch=False)
    except (SshpinError, UsageError):
        return None  # nothing authentic for it, or no host: the user's line is the fallback
    if not answer.refuses(key.blob):
        return None
    return answer.why


def candidate_names(cfg: config_mod.Config) -> list[str]:
    """Every known_hosts name the cache and the pins know: each capsul id, name and address,
    each cached host, on each port its provider vouches on; and each pin's name."""
    from sshpin.providers import for_config

    names: list[str] = list(pins.hosts())
    for p in cfg.providers:
        try:
            rows = for_config(p).rows()
        except SshpinError:
            continue
        ports = p.get("ports") or [22]
        for row in rows:
            for host in (row.capsul, *row.names, *row.addresses):
                for port in ports:
                    name = port_name(host, port)
                    if host and name not in names:
                        names.append(name)
    return names


def hashed_match(field: str, name: str) -> bool:
    """Is ``field`` (``|1|base64 salt|base64 hash``) the HMAC-SHA1 of ``name``, as ssh hashes?"""
    parts = field.split("|")
    if len(parts) != 4 or parts[0] or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    mine = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(mine, digest)
