"""Config tables checked key by key: what each provider's ``validate`` is made of.

Run only when the config file changed (core/config.py keeps a compiled copy for every other
call), so none of this is on the hook's path. Errors are ``ValueError`` naming the key;
core/config.py turns them into one ConfigError naming the file and the table.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from sshpin.core.config import BASE_KEY, COMMON_KEYS
from sshpin.core.names import hosts_match

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def local_path(value: str, key: str, base: str) -> str:
    """A path given in the config: ``~`` expanded; a relative one is taken from ``base``, the
    config file's own directory, never from the working directory (ssh runs the hook from
    wherever the user stands)."""
    if not value:
        return ""
    path = os.path.expanduser(value)
    if not path.startswith("/"):
        if not base.startswith("/"):
            raise ValueError(f"{key}: {value!r} is relative: give an absolute path or ~/...")
        path = os.path.join(base, path)
    return os.path.normpath(path)


def parse_duration(text: object, key: str) -> int:
    """``"90s"``, ``"1h"``, ``"7d"``, ``"1h30m"``: seconds. Units s, m, h, d, w."""
    if not isinstance(text, str) or not text:
        raise ValueError(f'{key}: expected a duration string like "1h" or "7d"')
    total = 0
    number = ""
    for ch in text:
        if ch.isascii() and ch.isdigit():
            number += ch
        elif ch in _UNITS and number:
            total += int(number) * _UNITS[ch]
            number = ""
        else:
            raise ValueError(f'{key}: invalid duration {text!r} (use e.g. "90s", "1h", "7d")')
    if number:
        raise ValueError(f"{key}: duration {text!r} lacks a unit (s, m, h, d or w)")
    return total


def string(table: dict[str, Any], key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ValueError(f"{key}: required")
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{key}: control characters are not allowed")
    return value


def path_value(table: dict[str, Any], key: str) -> str:
    """A path-valued key: see ``local_path``."""
    return local_path(string(table, key, ""), key, str(table.get(BASE_KEY, "")))


def path_list(table: dict[str, Any], key: str) -> list[str]:
    base = str(table.get(BASE_KEY, ""))
    return [local_path(v, key, base) for v in string_list(table, key) if v]


def string_list(table: dict[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings")
    return list(value)


def validate_common(table: dict[str, Any], types: Collection[str]) -> dict[str, Any]:
    """The keys every provider has: ``name``, ``type`` (one of ``types``) and ``hosts``."""
    from sshpin.core.names import valid_host

    name = string(table, "name")
    if not name or len(name) > 32 or not _NAME_CHARS.issuperset(name) or name[0] in "-_":
        raise ValueError(
            f"name: {name!r} must be 1-32 lower-case letters, digits, '-' or '_' "
            "(it names files, keyring entries and environment variables)"
        )
    kind = string(table, "type")
    if kind not in types:
        raise ValueError(f"type: {kind!r} is not one of {', '.join(sorted(types))}")
    hosts = string_list(table, "hosts")
    if not hosts:
        raise ValueError("hosts: must list the hosts this provider may vouch for")
    for pattern in hosts:
        bare = pattern[1:] if pattern.startswith("!") else pattern
        if "/" in bare:
            import ipaddress

            try:
                ipaddress.ip_network(bare, strict=False)
            except ValueError as e:
                raise ValueError(f"hosts: {pattern!r} is not a valid CIDR network") from e
        elif not bare or not valid_host(bare.replace("*", "a").replace("?", "a")):
            raise ValueError(f"hosts: {pattern!r} is not a host name pattern")
    return {"name": name, "type": kind, "hosts": [host_pattern(h) for h in hosts]}


def host_pattern(pattern: str) -> str:
    """A ``hosts`` pattern as it is kept: lower case, and a name pattern without one trailing
    dot, as the hook takes the host (core.names.bare_host: ``a.example.`` is ``a.example``)."""
    pattern = pattern.lower()
    return pattern[:-1] if pattern.endswith(".") and "/" not in pattern else pattern


def check_keys(table: dict[str, Any], allowed: Collection[str], kind: str) -> None:
    for key in table:
        if key not in COMMON_KEYS and key not in allowed and key != BASE_KEY:
            import difflib

            near = difflib.get_close_matches(key, sorted(COMMON_KEYS | set(allowed)), 1)
            guess = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown key {key!r} for a provider of type {kind!r}{guess}")


def fetching(table: dict[str, Any], out: dict[str, Any]) -> None:
    """The keys of every provider that fetches: ``ttl``, ``stale_if_error``, ``ports`` (22 by
    default: the sshd whose keys it knows), ``signing_keys`` and ``ca_bundle``."""
    freshness(table, out)
    ports(table, out, [22])
    out["signing_keys"] = key_lines(string_list(table, "signing_keys"))
    out["ca_bundle"] = path_value(table, "ca_bundle")


def freshness(table: dict[str, Any], out: dict[str, Any]) -> None:
    """``ttl`` and ``stale_if_error``, for providers that fetch."""
    out["ttl_seconds"] = parse_duration(table.get("ttl", "1h"), "ttl")
    out["stale_seconds"] = parse_duration(table.get("stale_if_error", "7d"), "stale_if_error")
    if out["ttl_seconds"] <= 0:
        raise ValueError("ttl: must be longer than zero")


def ports(table: dict[str, Any], out: dict[str, Any], default: list[int] | None) -> None:
    """``ports``: the ports whose sshd the provider's keys belong to (``default`` when unset;
    None: any port). A host on another port is not managed by this provider."""
    if "ports" not in table:
        out["ports"] = default
        return
    value = table["ports"]
    if not isinstance(value, list) or not value:
        raise ValueError("ports: expected a list of port numbers, e.g. [22, 2222]")
    for port in value:
        if type(port) is not int or not 0 < port < 65536:
            raise ValueError(f"ports: {port!r} is not a port number (1-65535)")
    out["ports"] = sorted(set(value))


def flag(table: dict[str, Any], key: str, default: bool = False) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false")
    return value


def trust_context(*parts: object) -> str:
    """A short digest of the trust a cached item was verified under (signing keys, URL, CA
    bundle, account, opt-ins). Cached items carry it; a different one is a miss, so tightening
    the configuration never keeps serving what was accepted under the looser one."""
    import hashlib
    import json

    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def https_url(value: str, key: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{key}: must be an https:// URL (TLS is never optional), got {value!r}")
    if parts.username or parts.password:
        raise ValueError(f"{key}: credentials in the URL are not allowed; use a token source")
    return value


def key_lines(lines: list[str]) -> list[str]:
    """Validate public key lines; keep them as ``type base64`` (comments dropped). Security
    keys (``sk-*``) are accepted: these keys sign and certify, they are not host keys."""
    from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line
    from sshpin.errors import VerificationError

    out = []
    for line in lines:
        try:
            out.append(parse_line(line, SIGNING_KEY_TYPES).openssh())
        except VerificationError as e:
            raise ValueError(f"key {line[:40]!r}: {e}") from e
    return out


def _probes() -> list[str]:
    """Names and addresses unrelated to any real configuration: single- and multi-label names
    of random letters and digits, and global IPv4 and IPv6 addresses spread over the address
    space. Derived from a fixed seed, so a configuration is judged the same way every time."""
    import hashlib
    import ipaddress

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    out: list[str] = []
    for i in range(48):
        digest = hashlib.sha256(b"sshpin-scope-probe-%d" % i).digest()
        word = "".join(alphabet[b % 36] for b in digest[:24])
        if i % 3 == 0:
            out.append("q" + word[:11])
        elif i % 3 == 1:
            out.append(f"q{word[:7]}.q{word[7:15]}.q{word[15:19]}")
        else:
            out.append(f"q{word[:5]}-{word[5:9]}.q{word[9:13]}")
        v4 = ipaddress.IPv4Address(bytes([(i * 16 + 1) % 224 or 1, *digest[24:27]]))
        if v4.is_global:
            out.append(str(v4))
        v6 = ipaddress.IPv6Address(b"\x20" + bytes([digest[27] | 1]) + digest[:14])
        if v6.is_global:
            out.append(str(v6))
    return out


def too_broad(patterns: list[str]) -> str | None:
    """Why ``patterns`` (a ``hosts`` list) covers every host, or None when it does not.

    Decided by what the list matches, not by how it is spelled: a positive pattern made only of
    ``*``, ``?`` and dots, a ``/0`` network, or a list that matches any of a set of unrelated
    random names and addresses (``**``, ``?*``, ``0.0.0.0/1`` with ``128.0.0.0/1``, ``!x``
    with ``*``...) is too broad."""
    import ipaddress

    for raw in patterns:
        if raw.startswith("!"):
            continue
        if "/" in raw:
            try:
                if ipaddress.ip_network(raw, strict=False).prefixlen == 0:
                    return f"{raw!r} is every address"
            except ValueError:
                continue
        elif "*" in raw and set(raw) <= {"*", "?", "."}:
            return f"{raw!r} matches every name"
    for probe in _probes():
        if hosts_match(patterns, probe):
            return f"it matches unrelated hosts such as {probe}"
    return None
