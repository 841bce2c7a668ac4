"""Configuration (DESIGN.md section 3): locate, check, parse, validate, and compile.

Parsing TOML costs about 15 ms of imports (tomllib) here, as much as the interpreter start. So
the validated configuration is also stored, as plain data in ``marshal`` form (a built-in
module: no import cost), in the cache directory together with the config file's identity
(device, inode, size, mtime, ctime). The hook loads that copy when the identity still matches,
and parses the TOML only after the file changed. The copy lives in the checked cache dir and
is validated again after loading, so a damaged copy is a miss, never a crash or a wrong answer.
"""

from __future__ import annotations

import marshal
import os
import stat

from sshpin.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from typing import Any

PROVIDER_TYPES = ("capsul", "url", "cert-authority")
_COMMON_KEYS = {"name", "type", "hosts", "ttl", "stale_if_error"}
ALLOWED_KEYS = {
    "capsul": _COMMON_KEYS
    | {"api_url", "aliases", "resolve_dns", "signing_keys", "ca_bundle", "token_command"},
    "url": _COMMON_KEYS | {"url", "signing_keys", "ca_bundle"},
    "cert-authority": {"name", "type", "hosts", "ca_keys", "ca_key_files", "revoked_keys"},
}
DEFAULTS: dict[str, Any] = {
    "aliases": {},
    "resolve_dns": True,
    "ttl": "1h",
    "stale_if_error": "7d",
    "signing_keys": [],
    "ca_bundle": "",
    "token_command": "",
    "ca_keys": [],
    "ca_key_files": [],
    "revoked_keys": [],
}
COMPILED_VERSION = 2
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ProviderConfig:
    """One validated ``[[provider]]`` table. ``data`` is plain data (marshal-able)."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def hosts(self) -> list[str]:
        return list(self.data["hosts"])

    @property
    def ttl(self) -> float:
        return float(self.data.get("ttl_seconds", 3600))

    @property
    def stale_if_error(self) -> float:
        return float(self.data.get("stale_seconds", 7 * 86400))

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self.data.get("aliases", {}))

    def get(self, key: str) -> Any:
        return self.data.get(key, DEFAULTS.get(key))


class Config:
    __slots__ = ("path", "providers")

    def __init__(self, path: str, providers: list[ProviderConfig]) -> None:
        self.path = path
        self.providers = providers

    def provider(self, name: str) -> ProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.providers) or "none configured"
        raise ConfigError(f"{self.path}: no provider named {name!r} (known: {known})")


def _home() -> str:
    return os.path.expanduser("~")


def config_path() -> str:
    explicit = os.environ.get("SSHPIN_CONFIG")
    if explicit:
        return explicit
    return os.path.join(config_dir(), "config.toml")


def config_dir() -> str:
    """Where user data lives (config, pins): never evicted like the cache."""
    explicit = os.environ.get("SSHPIN_CONFIG")
    if explicit:
        return os.path.dirname(os.path.abspath(explicit))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(_home(), ".config")
    return os.path.join(base, "sshpin")


def cache_dir() -> str:
    explicit = os.environ.get("SSHPIN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(_home(), ".cache")
    return os.path.join(base, "sshpin")


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


def check_file_safe(path: str, st: os.stat_result, what: str) -> None:
    """As ssh's StrictModes: refuse a file others may write (they could reroute trust)."""
    uid = os.geteuid()
    if st.st_uid not in (uid, 0):
        raise ConfigError(f"{what} {path}: owned by uid {st.st_uid}, not by you: refusing it")
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path}: writable by group or others: refusing it (fix: chmod go-w {path})"
        )


def load(path: str | None = None, cache: str | None = None) -> Config | None:
    """The configuration, or None when no config file exists (every host is unmanaged)."""
    path = path or config_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config {path}: not a regular file")
    check_file_safe(path, st, "config")
    identity = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    compiled = os.path.join(cache, "config.marshal") if cache else None
    if compiled:
        data = _load_compiled(compiled, identity)
        if data is not None:
            return Config(path, [ProviderConfig(p) for p in data])
    providers = parse_file(path)
    if compiled:
        _store_compiled(compiled, identity, [p.data for p in providers])
    return Config(path, providers)


def _load_compiled(compiled: str, identity: tuple[Any, ...]) -> list[dict[str, Any]] | None:
    try:
        with open(compiled, "rb") as f:
            blob = marshal.load(f)  # noqa: S302 - our own file, in the owner-only cache dir
        if (
            isinstance(blob, tuple)
            and len(blob) == 3
            and blob[0] == COMPILED_VERSION
            and blob[1] == identity
            and isinstance(blob[2], list)
            and all(isinstance(p, dict) and "name" in p and "hosts" in p for p in blob[2])
        ):
            return blob[2]
    except (OSError, EOFError, ValueError, TypeError):
        pass
    return None


def _store_compiled(compiled: str, identity: tuple[Any, ...], data: list[dict[str, Any]]) -> None:
    from sshpin.cache import atomic_write

    try:
        atomic_write(compiled, marshal.dumps((COMPILED_VERSION, identity, data)))
    except OSError:
        pass  # a read-only or full cache only costs the next call a TOML parse


def parse_file(path: str) -> list[ProviderConfig]:
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
        doc = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path}: not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: {e}") from e
    return parse_document(doc, path)


def parse_document(doc: dict[str, Any], path: str = "config") -> list[ProviderConfig]:
    for key in doc:
        if key != "provider":
            raise ConfigError(f"{path}: unknown key {key!r} (expected [[provider]] tables)")
    tables = doc.get("provider", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: provider: expected [[provider]] tables")
    providers: list[ProviderConfig] = []
    for index, table in enumerate(tables, 1):
        where = f"{path}: provider #{index}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        if isinstance(table.get("name"), str):
            where = f"{path}: provider {table['name']!r}"
        try:
            providers.append(ProviderConfig(_validate_provider(table)))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from e
    names = [p.name for p in providers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: provider name {name!r} used twice")
    return providers


def _string(table: dict[str, Any], key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ValueError(f"{key}: required")
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{key}: control characters are not allowed")
    return value


def _string_list(table: dict[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings")
    return list(value)


def _https_url(value: str, key: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{key}: must be an https:// URL (TLS is never optional), got {value!r}")
    if parts.username or parts.password:
        raise ValueError(f"{key}: credentials in the URL are not allowed; use a token source")
    return value


def _validate_provider(table: dict[str, Any]) -> dict[str, Any]:
    from sshpin.resolve import is_capsul_id, valid_host

    name = _string(table, "name")
    if not name or len(name) > 32 or not _NAME_CHARS.issuperset(name) or name[0] in "-_":
        raise ValueError(
            f"name: {name!r} must be 1-32 lower-case letters, digits, '-' or '_' "
            "(it names files, keyring entries and environment variables)"
        )
    kind = _string(table, "type")
    if kind not in PROVIDER_TYPES:
        raise ValueError(f"type: {kind!r} is not one of {', '.join(PROVIDER_TYPES)}")
    for key in table:
        if key not in ALLOWED_KEYS[kind]:
            raise ValueError(f"unknown key {key!r} for a provider of type {kind!r}")
    out: dict[str, Any] = {"name": name, "type": kind}
    hosts = _string_list(table, "hosts")
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
    if kind == "cert-authority" and any(p.strip("!") in ("*", "*.*") for p in hosts):
        raise ValueError("hosts: a certificate authority may not vouch for every host ('*')")
    out["hosts"] = [h.lower() for h in hosts]
    if kind != "cert-authority":
        out["ttl_seconds"] = parse_duration(table.get("ttl", DEFAULTS["ttl"]), "ttl")
        out["stale_seconds"] = parse_duration(
            table.get("stale_if_error", DEFAULTS["stale_if_error"]), "stale_if_error"
        )
        if out["ttl_seconds"] <= 0:
            raise ValueError("ttl: must be longer than zero")
        out["signing_keys"] = _signing_keys(_string_list(table, "signing_keys"))
        ca_bundle = _string(table, "ca_bundle", "")
        out["ca_bundle"] = os.path.expanduser(ca_bundle) if ca_bundle else ""
    if kind == "capsul":
        out["api_url"] = _https_url(_string(table, "api_url"), "api_url").rstrip("/")
        aliases = table.get("aliases", {})
        if not isinstance(aliases, dict):
            raise ValueError("aliases: expected a table of name = capsul id")
        clean: dict[str, str] = {}
        for alias, target in aliases.items():
            if not valid_host(alias) or not isinstance(target, str) or not is_capsul_id(target):
                raise ValueError(f'aliases: {alias!r} = {target!r}: expected name = "capsul-..."')
            clean[alias.lower()] = target
        out["aliases"] = clean
        resolve_dns = table.get("resolve_dns", True)
        if not isinstance(resolve_dns, bool):
            raise ValueError("resolve_dns: expected true or false")
        out["resolve_dns"] = resolve_dns
        out["token_command"] = _string(table, "token_command", "")
    elif kind == "url":
        url = _https_url(_string(table, "url"), "url")
        if "{host}" not in url:
            raise ValueError("url: must contain {host}")
        out["url"] = url
        if not out["signing_keys"]:
            raise ValueError('signing_keys: required for type = "url" (files are signed)')
    else:
        ca_keys = _string_list(table, "ca_keys")
        files = [os.path.expanduser(f) for f in _string_list(table, "ca_key_files")]
        out["ca_keys"] = _signing_keys(ca_keys)
        out["revoked_keys"] = _signing_keys(_string_list(table, "revoked_keys"))
        out["ca_key_files"] = files
        if not ca_keys and not files:
            raise ValueError("ca_keys or ca_key_files: a certificate authority needs its key")
    return out


def _signing_keys(lines: list[str]) -> list[str]:
    """Validate public key lines; keep them as ``type base64`` (comments dropped). Security
    keys (``sk-*``) are accepted: these keys sign and certify, they are not host keys."""
    from sshpin.errors import VerificationError
    from sshpin.keys import SIGNING_KEY_TYPES, parse_line

    out = []
    for line in lines:
        try:
            out.append(parse_line(line, SIGNING_KEY_TYPES).openssh())
        except VerificationError as e:
            raise ValueError(f"key {line[:40]!r}: {e}") from e
    return out
