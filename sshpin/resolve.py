"""Host names as ssh hands them to us, the ``hosts`` patterns, and host → capsul resolution.

The first half (host tokens and pattern matching) runs on the hook's hot path, so it uses no
``re`` (about 7 ms to import here) and imports ``ipaddress`` only for CIDR patterns.
"""

from __future__ import annotations

from sshpin.errors import UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from sshpin.document import Capsul, Document

MAX_HOST = 253
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
CAPSUL_PREFIX = "capsul-"


def split_host(token: str) -> tuple[str, int | None]:
    """Split ssh's ``%H`` (``host``, ``[host]:port``) into a lower-cased host and port.

    Raises UsageError for anything ssh would not produce: a host we cannot safely use as a
    file name, a URL part or a known_hosts host field is refused here, before anything else.
    """
    port: int | None = None
    host = token
    if token.startswith("["):
        close = token.find("]:")
        digits = token[close + 2 :] if close > 0 else ""
        if not digits.isdigit() or not digits.isascii() or len(digits) > 5:
            raise UsageError(f"malformed host {token[:80]!a}: expected [host]:port")
        port = int(digits)
        if not 0 < port < 65536:
            raise UsageError(f"malformed host {token[:80]!a}: port out of range")
        host = token[1:close]
    if not valid_host(host):
        raise UsageError(f"malformed host {token[:80]!a}")
    return host.lower(), port


def valid_host(host: str) -> bool:
    """A DNS name, IPv4 or IPv6 literal (with zone), or capsul id: safe everywhere we use it."""
    return (
        0 < len(host) <= MAX_HOST
        and _HOST_CHARS.issuperset(host)
        and host[0] not in ".-%"
        and ".." not in host
    )


def is_capsul_id(host: str) -> bool:
    rest = host[len(CAPSUL_PREFIX) :]
    return host.startswith(CAPSUL_PREFIX) and 0 < len(rest) <= 64 and _ID_CHARS.issuperset(rest)


def glob_match(pattern: str, text: str) -> bool:
    """ssh's wildcard match (``*`` any run, ``?`` one character); both already lower case."""
    p = t = 0
    star_p = star_t = -1
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_t = p, t
            p += 1
        elif star_p >= 0:
            p = star_p + 1
            star_t += 1
            t = star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _cidr_match(pattern: str, host: str) -> bool:
    import ipaddress

    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    network = ipaddress.ip_network(pattern, strict=False)
    return addr.version == network.version and addr in network


def hosts_match(patterns: list[str], host: str) -> bool:
    """Does a provider's ``hosts`` list cover this host (lower case, no port)?

    As in ssh_config: any matching ``!pattern`` excludes the host, otherwise any matching
    positive pattern includes it. A pattern with ``/`` is a CIDR network.
    """
    matched = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        hit = _cidr_match(pattern, host) if "/" in pattern else glob_match(pattern, host)
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def ip_literal(host: str) -> str | None:
    """The canonical text of an IP literal host, or None for a name."""
    if ":" not in host and not host.replace(".", "").isdigit():
        return None  # cheap test first: most names never reach ipaddress
    import ipaddress

    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


def resolve(
    doc: Document, host: str, aliases: dict[str, str], resolve_dns: bool
) -> tuple[Capsul, str] | None:
    """DESIGN.md section 2: which capsul of the account is this host, and by which rule.

    Returns (capsul, rule) or None. Raises NoKeysError when the answer is ambiguous (two
    capsuls claiming one address): we never guess which key to trust.
    """
    from sshpin.errors import NoKeysError

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
    import socket

    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
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
    canonical = {a for a in (ip_literal(x) for x in addresses) if a}
    found = _by_address(doc, canonical)
    if found is None:
        return None
    if len(canonical) > 1 and not canonical <= {found.ipv4, found.ipv6}:
        raise NoKeysError(f"{host} resolves to addresses of more than one machine")
    return found, "dns"


def _by_id(doc: Document, capsul_id: str, rule: str) -> tuple[Capsul, str] | None:
    for capsul in doc.capsuls:
        if capsul.id == capsul_id:
            return capsul, rule
    return None


def _by_address(doc: Document, addresses: set[str]) -> Capsul | None:
    from sshpin.errors import NoKeysError

    found = [c for c in doc.capsuls if {c.ipv4, c.ipv6} & addresses]
    if len(found) > 1:
        ids = ", ".join(c.id for c in found[:4])
        raise NoKeysError(f"address claimed by more than one capsul ({ids}): refusing to guess")
    return found[0] if found else None
