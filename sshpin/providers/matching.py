"""Which capsul of the account a host is (docs/architecture.md): id, alias, address, DNS.

First match wins; an address claimed by two capsuls is refused, never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sshpin.core.names import ip_literal, is_capsul_id
from sshpin.errors import NoKeysError

if TYPE_CHECKING:
    from sshpin.trust.document import Capsul


class Capsuls(Protocol):
    """Where capsuls are looked up: a whole ``Document`` or the cache's ``Listing`` index."""

    def by_id(self, capsul_id: str) -> Capsul | None: ...

    def by_address(self, address: str) -> list[Capsul]: ...


def lookup_term(host: str, aliases: dict[str, str], resolve_dns: bool) -> str | None:
    """What ``?host=`` asks the provider for: the capsul id (an alias's target), the address
    literal, or the first address DNS gives for a name (bounded, as ``resolve``); None when
    nothing could match."""
    if is_capsul_id(host):
        return host
    if host in aliases:
        return aliases[host]
    literal = ip_literal(host)
    if literal is not None or not resolve_dns:
        return literal
    found = _resolved(host, "the ?host= term")
    addresses = sorted(found or (), key=lambda a: (":" in a, a))
    return addresses[0] if addresses else None


DNS_TIMEOUT = 5.0  # glibc's own retries can take far longer, or never end with a mute resolver


def resolve(
    doc: Capsuls, host: str, aliases: dict[str, str], resolve_dns: bool
) -> tuple[Capsul, str] | None:
    """Which capsul of the account is this host, and by which rule.

    Returns (capsul, rule) or None. Raises NoKeysError when the answer is ambiguous (two
    capsuls claiming one address): we never guess which key to trust.
    """
    if is_capsul_id(host):
        return _by_id(doc, host, "capsul id")
    if host in aliases:
        return _by_id(doc, aliases[host], "alias")
    literal = ip_literal(host)
    if literal is not None:
        found = _by_address(doc, {literal})
        return (found, "address") if found else None
    if not resolve_dns:
        return None
    canonical = _resolved(host, "resolve_dns")
    if canonical is None:
        return None
    found = _by_address(doc, canonical)
    if found is None:
        return None
    if len(canonical) > 1 and not canonical <= {found.ipv4, found.ipv6}:
        raise NoKeysError(f"{host} resolves to addresses of more than one machine")
    return found, "dns"


def _resolved(host: str, why: str) -> set[str] | None:
    """The addresses DNS gives for ``host`` (canonical literals), within DNS_TIMEOUT: the one
    name lookup of matching. None when the name does not exist (no capsul is known by it);
    NoKeysError when DNS gives no answer at all (no resolver, none in time)."""
    import socket

    from sshpin.core import connection
    from sshpin.core.bounded import TimedOut, call, doing

    mute = NoKeysError(
        f"cannot resolve {host} (no answer within {DNS_TIMEOUT:g} s): DNS is needed to match "
        "it to a capsul"
    )
    if connection.noted(f"\0mute dns {host}"):
        raise mute  # an earlier call of this ssh connection waited for it: not again
    doing(f"resolving {host} ({why})")
    try:
        infos = call(lambda: socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP), DNS_TIMEOUT)
    except TimedOut:
        connection.note(f"\0mute dns {host}")
        raise mute from None
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return None  # the name does not exist: no capsul is known by it
        # no answer at all (no resolver reachable, no network): say so, not "not a capsul"
        raise NoKeysError(
            f"cannot resolve {host} ({e.strerror}): DNS is needed to match it to a capsul"
        ) from None
    except (OSError, UnicodeError):
        return None
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return {a for a in (ip_literal(x) for x in addresses) if a}


def _by_id(doc: Capsuls, capsul_id: str, rule: str) -> tuple[Capsul, str] | None:
    capsul = doc.by_id(capsul_id)
    return (capsul, rule) if capsul is not None else None


def _by_address(doc: Capsuls, addresses: set[str]) -> Capsul | None:
    by_id = {c.id: c for a in sorted(addresses) for c in doc.by_address(a)}
    found = list(by_id.values())
    if len(found) > 1:
        ids = ", ".join(c.id for c in found[:4])
        raise NoKeysError(f"address claimed by more than one capsul ({ids}): refusing to guess")
    return found[0] if found else None
