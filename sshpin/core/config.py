"""Configuration (man/sshpin.conf.5): locate, check, parse, and compile.

What each provider ``type`` accepts is not known here: the providers registry
(``sshpin.providers``) validates each table and is passed to ``load`` as ``validate``.

Parsing TOML costs about 15 ms of imports (tomllib) here, as much as the interpreter start. So
the validated configuration is also stored, as plain data in ``marshal`` form (a built-in
module: no import cost), in the cache directory together with the config file's identity
(device, inode, size, mtime, ctime). The hook loads that copy when the identity still matches,
and parses the TOML only after the file changed. The copy lives in the checked cache dir and
is validated again after loading, so a damaged copy is a miss, never a crash or a wrong answer.
"""

import marshal
import posix

from sshpin.core import files
from sshpin.core.files import check_file_safe as check_file_safe  # re-exported
from sshpin.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Validate = Callable[[dict[str, Any]], dict[str, Any]]

BASE_KEY = "\0dir"  # passed to validate with each table: its config file's directory
COMMON_KEYS = frozenset({"name", "type", "hosts"})
DEFAULTS: "dict[str, Any]" = {
    "aliases": {},
    "resolve_dns": True,
    "signing_keys": [],
    "ca_bundle": "",
    "token_command": "",
    "ca_keys": [],
    "ca_key_files": [],
    "revoked_keys": [],
}
COMPILED_VERSION = 6  # 3: providers carry their trust context; 4: paths resolved; 5: ports;
# 6: hosts patterns kept without a trailing dot (schema.host_pattern)
MAX_CONFIG = 1 << 20
MAX_COMPILED = 4 << 20


class ProviderConfig:
    """One validated ``[[provider]]`` table. ``data`` is plain data (marshal-able)."""

    __slots__ = ("data",)

    def __init__(self, data: "dict[str, Any]") -> None:
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

    @property
    def ports(self) -> list[int] | None:
        """The ports this provider vouches for; None: any port (``ports`` in sshpin.conf(5))."""
        value = self.data.get("ports", [22])  # absent (never, once validated): the narrow one
        return None if value is None else list(value)

    def covers(self, port: int) -> bool:
        """Does this provider vouch for the sshd on ``port``? (On the hook's hot path.)"""
        value = self.data.get("ports", [22])
        return value is None or port in value

    def get(self, key: str) -> "Any":
        return self.data.get(key, DEFAULTS.get(key))


class Config:
    __slots__ = ("path", "providers")

    def __init__(self, path: str, providers: "list[ProviderConfig]") -> None:
        self.path = path
        self.providers = providers

    def provider(self, name: str) -> ProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.providers) or "none configured"
        raise ConfigError(f"{self.path}: no provider named {name!r} (known: {known})")

    def vouching(self, host: str, port: int) -> "ProviderConfig | None":
        """The provider that vouches for ``host`` (lower case, no port) on ``port``."""
        return self.choose(host, port)[0]

    def choose(self, host: str, port: int) -> "tuple[ProviderConfig | None, str, bool]":
        """(the provider that vouches for ``host`` on ``port``, or None and why none does,
        and whether a provider's ``hosts`` match it at all): the first whose ``hosts`` match
        it and whose ``ports`` hold the port. The one choice of the hook's lookup, export,
        proxy, ``sshpin ssh`` and ``cache show``."""
        from sshpin.core.names import hosts_match

        matching = [p for p in self.providers if hosts_match(p.hosts, host)]
        for p in matching:
            if p.covers(port):
                return p, "", True
        if matching:
            ports = ports_text(matching[0].ports)
            return None, (f"port {port} is not among the ports provider {matching[0].name!r} "
                          f"vouches for ({ports})"), True  # fmt: skip
        return None, "no provider's hosts match it", False


def _home() -> str:
    home = files.getenv("HOME")
    if home:
        return home
    import os

    return os.path.expanduser("~")  # the password database


def _absolute_env(name: str) -> str:
    """An environment variable naming a directory or file: used only when absolute. A relative
    value would be resolved against ssh's working directory (a cloned repository, say), so it
    is ignored, as the XDG Base Directory spec says of relative ``XDG_*`` values."""
    value = files.getenv(name) or ""
    return value if value.startswith("/") else ""


def _absolute(path: str) -> str:
    """``os.path.abspath``; without importing os for a path that is already absolute and
    normal (no empty, ``.`` or ``..`` component: ``~/.config/sshpin`` is one)."""
    if path.startswith("/") and all(p not in ("", ".", "..") for p in path[1:].split("/")):
        return path
    import os

    return os.path.abspath(path)


def config_path() -> str:
    explicit = _absolute_env("SSHPIN_CONFIG")
    if explicit:
        return explicit
    return files.join(config_dir(), "config.toml")


def config_dir() -> str:
    """Where user data lives (config, pins): never evicted like the cache."""
    explicit = _absolute_env("SSHPIN_CONFIG")
    if explicit:
        return files.dirname(explicit)
    base = _absolute_env("XDG_CONFIG_HOME") or files.join(_home(), ".config")
    return files.join(base, "sshpin")


def cache_dir() -> str:
    explicit = _absolute_env("SSHPIN_CACHE_DIR")
    if explicit:
        return explicit
    base = _absolute_env("XDG_CACHE_HOME") or files.join(_home(), ".cache")
    return files.join(base, "sshpin")


def load(
    validate: "Validate", path: str | None = None, cache: str | None = None
) -> "Config | None":
    """The configuration, or None when no config file exists (every host is unmanaged).

    ``validate`` checks one ``[[provider]]`` table and returns its plain-data form (the
    providers registry's ``validate_table``); it runs only when the file changed."""
    from sshpin.core.files import check_dir_safe

    path = path or config_path()
    try:
        st = posix.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    if not files.is_file(st.st_mode):
        raise ConfigError(f"config {path}: not a regular file: refusing it")
    check_file_safe(path, st, "config")
    check_dir_safe(files.dirname(_absolute(path)), "config dir")
    identity = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    compiled = files.join(cache, "config.marshal") if cache else None
    if compiled:
        data = _load_compiled(compiled, identity)
        if data is not None:
            return Config(path, [ProviderConfig(p) for p in data])
    providers = parse_file(path, validate)
    if compiled:
        _store_compiled(compiled, identity, [p.data for p in providers])
    return Config(path, providers)


def _load_compiled(compiled: str, identity: "tuple[Any, ...]") -> "list[dict[str, Any]] | None":
    from sshpin.core.files import read_small

    raw = read_small(compiled, limit=MAX_COMPILED)  # a FIFO or a link there is a miss
    if raw is None:
        return None
    try:
        blob = marshal.loads(raw)  # noqa: S302 - our own file, in the owner-only cache dir
        if (
            isinstance(blob, tuple)
            and len(blob) == 3
            and blob[0] == COMPILED_VERSION
            and blob[1] == identity
            and isinstance(blob[2], list)
            and all(isinstance(p, dict) and "name" in p and "hosts" in p for p in blob[2])
        ):
            return blob[2]
    except (EOFError, ValueError, TypeError):
        pass
    return None


def _store_compiled(
    compiled: str, identity: "tuple[Any, ...]", data: "list[dict[str, Any]]"
) -> None:
    from sshpin.core.files import atomic_write

    try:
        atomic_write(compiled, marshal.dumps((COMPILED_VERSION, identity, data)))
    except OSError:
        pass  # a read-only or full cache only costs the next call a TOML parse


def parse_file(path: str, validate: "Validate") -> "list[ProviderConfig]":
    import tomllib

    from sshpin.core.files import read_trusted

    try:
        raw, _ = read_trusted(path, "config", MAX_CONFIG)
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path}: not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: {e}") from e
    base = files.dirname(_absolute(path))
    try:
        return parse_document(doc, validate, path, base)
    except ConfigError as e:
        raise _with_line(e, path, text) from e.__cause__


def parse_document(
    doc: "dict[str, Any]", validate: "Validate", path: str = "config", base: str = ""
) -> "list[ProviderConfig]":
    """The provider tables of a parsed config. ``base``: the config file's directory, against
    which relative paths in it are resolved (none given: relative paths are refused)."""
    tables = doc.get("provider", [])
    count = len(tables) if isinstance(tables, list) else 0
    for key in doc:
        if key != "provider":
            import difflib

            near = "provider" if difflib.get_close_matches(key, ["provider"], 1) else ""
            guess = "did you mean [[provider]]?" if near else "expected [[provider]] tables"
            raise _located(f"{path}: unknown key {key!r} ({guess})", 0, key, count)
    if not isinstance(tables, list):
        raise _located(f"{path}: provider: expected [[provider]] tables", 0, "provider", 0)
    providers: list[ProviderConfig] = []
    for index, table in enumerate(tables, 1):
        where = f"{path}: provider #{index}"
        if not isinstance(table, dict):
            raise _located(f"{where}: expected a table", index, "", count)
        if isinstance(table.get("name"), str):
            where = f"{path}: provider {table['name']!r}"
        try:
            providers.append(ProviderConfig(validate({**table, BASE_KEY: base})))
        except ValueError as e:
            raise _located(f"{where}: {e}", index, _key_named(str(e), table), count) from e
    names = [p.name for p in providers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: provider name {name!r} used twice")
    return providers


def _located(message: str, table: int, key: str, count: int) -> ConfigError:
    """A ConfigError that knows where in the file it is: the ``table``-th of ``count``
    ``[[provider]]`` tables (0: the top level) and the ``key`` (\"\": the table itself).
    parse_file adds the line."""
    error = ConfigError(message)
    error.where = (table, key, count)
    return error


def _key_named(message: str, table: "dict[str, Any]") -> str:
    """The key of ``table`` a validation message is about (``unknown key 'x' ...``, or
    ``x: ...`` / ``x[2]: ...``), or \"\"."""
    import re

    m = re.match(r"unknown key '([^']*)'", message) or re.match(r"([A-Za-z_]\w*)\W", message)
    return m.group(1) if m and m.group(1) in table else ""


def _with_line(error: ConfigError, path: str, text: str) -> ConfigError:
    """``error`` with ``path:LINE`` for ``path`` when the line of what it is about is found:
    the key's line in its ``[[provider]]`` table, else the table's header; at the top level,
    the key's line before the first table, or its table header. When the headers found do
    not number the tables parsed (an inline array, a header inside a multi-line string), the
    message is kept as it was: no line rather than a wrong one."""
    import re

    if error.where is None or path not in error.message:
        return error
    table, key, count = error.where
    lines = text.split("\n")  # as TOML counts lines (not str.splitlines: U+2028 is text)
    header = re.compile(r"""\s*\[\[\s*(?:provider|"provider"|'provider')\s*\]\]\s*(?:#.*)?$""")
    headers = [n for n, line in enumerate(lines) if header.match(line)]
    if len(headers) != count:
        return error
    found = headers[table - 1] if table else -1
    if key:
        name = re.escape(key)
        wanted = re.compile(rf"""\s*(?:"{name}"|'{name}'|{name})\s*[=.]""")
        named_table = re.compile(rf"""\s*\[+\s*(?:"{name}"|'{name}'|{name})\s*[\].]""")
        for n in range(headers[table - 1] + 1 if table else 0, len(lines)):
            if lines[n].lstrip().startswith("["):
                if not table and named_table.match(lines[n]):
                    found = n
                    break
                if table:
                    break  # the next table: the key is not in this one
                continue  # the top level ends here, but its key may be a table's header
            if (table or not headers or n < headers[0]) and wanted.match(lines[n]):
                found = n
                break
    if found < 0:
        return error
    return ConfigError(error.message.replace(path, f"{path}:{found + 1}", 1), error.hint)


def ports_text(value: list[int] | None) -> str:
    """``ports`` for people: ``22``, ``22, 2222`` or ``any``."""
    return "any" if value is None else ", ".join(str(p) for p in value)
