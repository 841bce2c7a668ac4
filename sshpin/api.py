"""sshpin's Python API: the host keys sshpin vouches for, for SSH clients that do not run the
hook (paramiko, asyncssh, your own). Stable from 0.1 on, with semantic versioning: what is in
``__all__`` keeps its meaning until the next major version (docs/api.md).

One question, one code path: ``vouched(host, port, offered=key)`` asks ``lookup.lookup`` exactly
as the hook does (pins, the provider whose ``hosts`` match, the cache and its freshness rule,
signatures, and a refetch when the offered key is not among the cached ones), and returns a
frozen ``Vouched``. A managed host with no authentic keys raises ``NoAuthenticKeys``; a host no
provider or pin covers is ``managed = False``, left to the caller's own policy.

Imports neither paramiko nor asyncssh (sshpin/integrations/ do, each for its library).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sshpin.core.keys import HostKey
from sshpin.core.names import Query, valid_host
from sshpin.errors import NoKeysError, ProviderError, SshpinError, UsageError, to_logging
from sshpin.lookup import lookup

__all__ = [
    "DEFAULT_PORT",
    "InvalidHost",
    "NoAuthenticKeys",
    "PublicKey",
    "SshpinError",
    "Vouched",
    "known_hosts_name",
    "vouched",
]

DEFAULT_PORT = 22
_CERT_SUFFIX = b"-cert-v01@openssh.com"


class InvalidHost(UsageError):
    """The host or port is not one ssh would connect to (nothing is looked up)."""


class NoAuthenticKeys(NoKeysError):
    """sshpin manages the host but has no authentic keys for it now (provider unreachable
    past the stale limit, capsul not in the account, bad signature...). ``host`` and ``port``
    say which; the message says why and the hint what to do. Refuse the connection."""

    def __init__(self, message: str, hint: str = "", host: str = "", port: int = 0) -> None:
        super().__init__(message, hint)
        self.host = host
        self.port = port

    def prefixed(self, subject: str) -> NoAuthenticKeys:
        return NoAuthenticKeys(f"{subject}: {self.message}", self.hint, self.host, self.port)


@dataclass(frozen=True)
class PublicKey:
    """A validated SSH public key: its type name and its wire-format blob."""

    key_type: str
    blob: bytes

    @property
    def base64(self) -> str:
        return HostKey(self.key_type, self.blob).base64

    def openssh(self) -> str:
        """``type base64``, as in a ``.pub`` file (no comment)."""
        return HostKey(self.key_type, self.blob).openssh()

    def sha256(self) -> str:
        """The fingerprint as ssh shows it: ``SHA256:...``."""
        return HostKey(self.key_type, self.blob).sha256()


@dataclass(frozen=True)
class Vouched:
    """What sshpin vouches for, for one host and port.

    ``keys``: the host keys to accept; ``ca_keys``: certificate authorities trusted to sign
    the host's certificates (``@cert-authority``); ``revoked``: keys to refuse whatever else
    says (``@revoked``). ``lines``: exactly the known_hosts lines the hook prints for the
    host, host field ``name``. ``managed`` is False when no pin and no provider covers the
    host: sshpin says nothing about it, and the caller's own policy decides.
    """

    host: str
    port: int
    name: str
    managed: bool
    keys: tuple[PublicKey, ...] = ()
    ca_keys: tuple[PublicKey, ...] = ()
    revoked: tuple[PublicKey, ...] = ()
    lines: tuple[str, ...] = ()
    provider: str = ""
    pinned: bool = False
    why: str = ""

    def is_revoked(self, blob: bytes) -> bool:
        return any(k.blob == blob for k in self.revoked)

    def trusts(self, blob: bytes) -> bool:
        """Is ``blob`` (a server's public key, wire format) one sshpin vouches for?"""
        return not self.is_revoked(blob) and any(k.blob == blob for k in self.keys)


def known_hosts_name(host: str, port: int = DEFAULT_PORT) -> str:
    """The name ssh looks a host up by in known_hosts: ``host``, or ``[host]:port``."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def vouched(host: str, port: int = DEFAULT_PORT, offered: bytes | None = None) -> Vouched:
    """The keys, CA keys and revoked keys sshpin vouches for, for ``host`` at ``port``.

    ``offered``: the server's public key blob, when known. Pass it: when it is not among the
    cached keys, sshpin refetches (at most once per 30 s per host), so a rebuilt server's new
    key is accepted as soon as the provider lists it. May fetch from the provider (bounded by
    its timeouts); a cached answer is one small file read.

    Raises ``InvalidHost`` for a malformed host or port, ``NoAuthenticKeys`` when a managed
    host has no authentic keys, and (rarely) another ``SshpinError`` for a broken config.
    """
    to_logging()  # a program's stderr is its own: sshpin's lines go to logging
    name, host, port = _name(host, port)
    want = offered
    if want is not None and _key_type(want).endswith(_CERT_SUFFIX):
        want = None  # a host certificate: checked against the CA keys, not the host keys
    try:
        answer = lookup(Query(name, want))
    except (NoKeysError, ProviderError) as e:  # a broken config (ConfigError) is raised as is
        raise NoAuthenticKeys(f"{name}: {e.message}", e.hint, host, port) from e
    sources = [s for s in (answer.pin, answer.entry) if s is not None]
    if not sources:
        if answer.provider:
            raise NoAuthenticKeys(f"{name}: {answer.why}", "sshpin cache refresh", host, port)
        return Vouched(host, port, name, managed=False, why=answer.why)
    revoked = _unique(k for s in sources for k in s.revoked)
    keys = tuple(k for k in _unique(k for s in sources for k in s.keys) if k not in revoked)
    cas = tuple(k for k in _unique(k for s in sources for k in s.cas) if k not in revoked)
    if not keys and not cas:
        raise NoAuthenticKeys(
            f"{name}: {answer.why}, but no usable key",
            "compare with the provider's records",
            host,
            port,
        )
    return Vouched(
        host,
        port,
        name,
        managed=True,
        keys=keys,
        ca_keys=cas,
        revoked=revoked,
        lines=tuple(answer.lines(name)),
        provider=answer.provider,
        pinned=answer.pin is not None,
        why=answer.why,
    )


def _name(host: str, port: int) -> tuple[str, str, int]:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidHost(f"port {port!r} is not a TCP port")
    if not isinstance(host, str) or not valid_host(host):
        raise InvalidHost(f"{str(host)[:60]!a} is not a host name or address")
    host = host.lower()
    return known_hosts_name(host, port), host, port


def _key_type(blob: bytes) -> bytes:
    n = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    return blob[4 : 4 + n]


def _unique(keys: Iterable[HostKey]) -> tuple[PublicKey, ...]:
    out: list[PublicKey] = []
    for k in keys:
        key = PublicKey(k.key_type, k.blob)
        if key not in out:
            out.append(key)
    return tuple(out)
