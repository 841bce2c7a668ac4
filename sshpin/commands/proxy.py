"""``sshpin proxy HOST PORT [ALIAS]``: ssh's ProxyCommand (man/sshpin.1).

- Resolves a capsul id or alias to the capsul's address through the provider, cached like its
  keys (the host entry records the address); any other host is connected to as given.
- Before relaying, writes the host's authentic keys into sshpin's managed known_hosts file
  (``<cache dir>/known_hosts``, rewritten atomically under a lock, never the user's own file),
  which ``sshpin setup --legacy`` names in ``UserKnownHostsFile``: an OpenSSH older than 8.5
  (no KnownHostsCommand) then still refuses a forged key. Each line a provider vouches for
  ends with the comment ``sshpin-until=<time>``: the one freshness rule's limit (``expires``,
  ``ttl + stale_if_error``). Every rewrite drops lines past it, and a host the cache no longer
  vouches for (the lookup failed) loses its lines: the file never outlives the cache.
- Relays bytes between stdin/stdout and the socket until the server closes, with half-close
  (ssh closing our stdin shuts down the socket's sending side). One thread per direction,
  blocking reads of up to 1 MiB and writes; the system calls release the GIL, so both
  directions run at once. (splice(2) was tried: moving from a pipe into a socket it waited
  for the pipe's writer to close, not for data, and so stalled interactive sessions.)
"""

from __future__ import annotations

import os
import socket
import threading
import time

from sshpin.core import config
from sshpin.core.files import atomic_write, ensure_dir, read_small
from sshpin.core.names import DEFAULT_PORT, Query, bare_host, is_capsul_id, parse_port, valid_host
from sshpin.errors import NoKeysError, ProviderError, SshpinError, UsageError, say
from sshpin.lookup import lookup
from sshpin.providers import load_config, provider_for
from sshpin.store.knownhosts import host_field as _host_field
from sshpin.store.knownhosts import in_time as _in_time
from sshpin.store.knownhosts import vouched_lines
from sshpin.store.locks import FetchLock

CONNECT_TIMEOUT = 10.0
CHUNK = 1 << 20
KNOWN_HOSTS = "known_hosts"


def managed_known_hosts() -> str:
    return os.path.join(config.cache_dir(), KNOWN_HOSTS)


def parse(host: str, port: str) -> tuple[str, int]:
    try:
        number = parse_port(port)
    except UsageError as e:
        raise e.prefixed("proxy") from None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not valid_host(host):
        raise UsageError(f"proxy: {host[:60]!a} is not a host name or address")
    return host.lower(), number


def parse_alias(text: str, host: str) -> str:
    """ssh's ``%k`` (the HostKeyAlias, else the host as typed) as a host name, "" when it is
    none or names ``host`` itself: as the hook takes it, never an error."""
    alias = text.lower()
    return alias if alias != host and valid_host(alias) and ":" not in alias else ""


def name_for(host: str, port: int) -> str:
    """The name ssh looks the host up by in known_hosts files."""
    return host if port == 22 else f"[{host}]:{port}"


def target(host: str, port: int, alias: str = "") -> tuple[str, dict[str, list[str]]]:
    """(address to connect to, known_hosts lines by the name ssh looks them up by). Capsul
    ids and aliases are resolved through the provider; a capsul sshpin cannot find is an
    error. ``alias`` is ssh's ``%k``: resolved first, as the hook does (``Host capsul-x`` /
    ``HostName 203.0.113.7``); its answer is written for the host (the name ssh checks) and
    for the alias itself (the name ssh checks when it is a HostKeyAlias). Lines the provider
    vouches for carry their ``sshpin-until`` limit."""
    token = name_for(host, port)
    cfg = load_config(cache=config.cache_dir())
    bare = bare_host(host)  # ``capsul-x.`` is capsul-x; ssh checks the name as it has it
    named_by = provider_for(cfg, bare)
    named = is_capsul_id(bare) or (named_by is not None and bare in named_by.aliases)
    try:
        answer = lookup(Query(token, alias=alias))
    except SshpinError as e:
        if named:
            raise e.prefixed(f"proxy {host}") from None
        say(token, str(e), e.hint)
        return host, {name: [] for name in (token, alias) if name}
    by = alias if answer.by_alias else host
    provider = provider_for(cfg, bare_host(by), port)  # None on a port no provider vouches on
    lines = {token: vouched_lines(token, answer.pin, answer.entry, provider)}  # pins: no limit
    if alias:  # the alias's lines when it answered; else none: an old answer for it goes
        lines[alias] = (
            vouched_lines(alias, answer.pin, answer.entry, provider) if answer.by_alias else []
        )
    if not named:
        return host, lines
    entry = answer.entry
    if provider is None and port != DEFAULT_PORT:
        # another sshd on the capsul (a container's): the capsul's port-22 entry tells its
        # address; its keys are that sshd's, so none is vouched for this port
        try:
            entry = lookup(Query(host)).entry
        except SshpinError as e:
            raise e.prefixed(f"proxy {host}") from None
    if entry is None or not entry.address:
        raise NoKeysError(f"proxy {host}: the provider lists no address for it")
    return entry.address, lines


def record(lines: dict[str, list[str]], now: float | None = None) -> None:
    """Put each name's lines in the managed known_hosts file, replacing its old ones, and
    drop every line past its ``sshpin-until``: one atomic rewrite."""
    path = managed_known_hosts()
    ensure_dir(os.path.dirname(path))
    now = time.time() if now is None else now
    with FetchLock(path + ".lock", 5.0):
        raw = read_small(path, limit=16 << 20)
        old = raw.decode("utf-8", "replace").splitlines() if raw else []
        keep = [line for line in old if _host_field(line) not in lines and _in_time(line, now)]
        new = "".join(line + "\n" for line in keep + [x for v in lines.values() for x in v])
        if raw is None or new.encode() != raw:
            atomic_write(path, new.encode())


def connect(address: str, port: int) -> socket.socket:
    try:
        sock = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise ProviderError(f"proxy: connecting to {address} port {port} timed out") from None
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ProviderError(f"proxy: cannot connect to {address} port {port}: {why}") from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _pump(src: int, dst: int) -> None:
    """Move bytes from src to dst until EOF or an error on either side. ``os.read`` returns
    what is there (up to 1 MiB), so interactive sessions are not delayed by batching."""
    while True:
        try:
            data = os.read(src, CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]
        except OSError:
            return  # EPIPE, ECONNRESET...: that direction is over


def _widen(fd: int) -> None:
    """Grow a pipe's buffer from 64 KiB to 1 MiB (Linux), so ssh and the relay stall less
    often on each other during bulk copies. Not a pipe, or not allowed: left as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
    except (ImportError, AttributeError, OSError):
        pass


def relay(sock: socket.socket, stdin: int = 0, stdout: int = 1) -> None:
    """Relay until the server closes its side; ssh closing stdin half-closes the socket."""
    fd = sock.fileno()
    _widen(stdin)
    _widen(stdout)

    def upstream() -> None:
        _pump(stdin, fd)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    _pump(fd, stdout)
    os.close(stdout)  # ssh sees the end of the stream


def main(host_arg: str, port_arg: str, alias_arg: str = "") -> int:
    host, port = parse(host_arg, port_arg)
    address, lines = target(host, port, parse_alias(alias_arg, host))
    if any(lines.values()) or os.path.exists(managed_known_hosts()):
        try:
            record(lines)  # none: what the cache no longer vouches for goes
        except (OSError, SshpinError) as e:
            say("proxy", f"managed known_hosts not updated: {e}")
    sock = connect(address, port)
    relay(sock)
    return 0
