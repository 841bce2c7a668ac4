"""Host names as ssh hands them to us, and the ``hosts`` patterns that decide who vouches.

On the hook's hot path: no ``re`` (about 7 ms to import here); ``ipaddress`` is imported only
for CIDR patterns and IP literals.
"""

from sshpin.errors import UsageError

MAX_HOST = 253
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
CAPSUL_PREFIX = "capsul-"


def split_host(token: str) -> tuple[str, int | None]:
    """Split ssh's ``%H`` (``host``, ``[host]:port``) into a host as sshpin keys it
    (``bare_host``: lower case, one trailing dot dropped) and a port.

    Raises UsageError for anything ssh would not produce: a host we cannot safely use as a
    file name, a URL part or a known_hosts host field is refused here, before anything else.
    """
    port: int | None = None
    host = token
    if token.startswith("["):
        close = token.find("]:")
        if close <= 0:
            raise UsageError(f"malformed host {token[:80]!a}: expected [host]:port")
        try:
            port = parse_port(token[close + 2 :])
        except UsageError as e:
            raise UsageError(f"malformed host {token[:80]!a}: {e}") from None
        host = token[1:close]
    if not valid_host(host):
        raise UsageError(f"malformed host {token[:80]!a}")
    return bare_host(host), port


def parse_port(text: str) -> int:
    """A TCP port as ssh writes one (``%p``, ``[host]:port``): ASCII digits, no sign, space or
    leading zero, 1 to 65535. ``str.isdigit`` alone takes ``²`` (which ``int`` refuses) and
    ``١٢`` (which ``int`` reads as 12): UsageError for anything else, never another error."""
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit() and text[0] != "0"):
        raise UsageError(f"port {text[:20]!a} is not a TCP port (1 to 65535)")
    port = int(text)
    if port > 65535:
        raise UsageError(f"port {text!a} is not a TCP port (1 to 65535)")
    return port


def bare_host(host: str) -> str:
    """A valid host as sshpin keys it: lower case, without one trailing dot. ssh and DNS
    take ``Capsul-X``, ``CAPSUL-X.`` and ``capsul-x`` to the same machine (ssh lower-cases
    the name it connects to and keeps the dot), so all three are one host here."""
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


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


DEFAULT_PORT = 22


def port_name(host: str, port: int | None) -> str:
    """A host and port as ssh writes them in known_hosts: ``host`` for port 22, else
    ``[host]:port``. Pins are kept by this name: as in known_hosts, a bare name is port 22 only."""
    return host if port in (None, DEFAULT_PORT) else f"[{host}]:{port}"


class Query:
    """What sshpin is asked: the keys trusted for a host, maybe given the key it offered.

    ``token`` is ssh's ``%H`` exactly as given (the host field of every printed line); ``host``
    is its name without the port as ``bare_host`` keys it (lower case, no trailing dot),
    which is what providers resolve and cache by;
    ``port`` is the port (22 when ``%H`` has none) and ``name`` the two as known_hosts writes
    them (``host`` or ``[host]:port``), which pins are kept by.
    ``want`` is the server's key blob (``%K``), None when no key is offered (an ORDER call).
    ``alias`` is ssh's ``%k`` (the HostKeyAlias, else the host as typed), as ``bare_host``
    keys it, when it names another host than ``%H``: sshpin resolves by it first (lookup.py).
    ``port`` may be given when ``%H`` carries none although ssh connects to another port (ssh
    9.2's ORDER call hands a bare ``%H``; the hook then passes ``%p``).
    """

    __slots__ = ("alias", "host", "name", "port", "token", "want")

    def __init__(
        self, token: str, want: bytes | None = None, port: int | None = None, alias: str = ""
    ) -> None:
        host, given = split_host(token)
        if given is None:
            given = port
        self.host = host
        self.port = DEFAULT_PORT if given is None else given
        self.name = port_name(host, self.port)
        self.token = token
        self.want = want
        alias = bare_host(alias) if alias else ""
        self.alias = alias if alias != host else ""

    def as_alias(self) -> "Query":
        """The same question about the host ``%k`` names (lines keep ``%H``, ``token``)."""
        other = Query(self.token, self.want, self.port)
        other.host = self.alias
        other.name = port_name(self.alias, self.port)
        return other
