"""Host entries: what the hook prints for one host, with where and when it came from.

An entry is a small text file (``<provider>/hosts/<host>`` in the cache, ``pins/<host>`` under
the config dir) read with the strict parser below: a damaged entry is a miss, never a crash.
Standard library only: a cached hit reads one entry and nothing else.
"""

import posix

from sshpin.core import files
from sshpin.core.files import read_small
from sshpin.core.keys import HostKey, parse_line
from sshpin.errors import VerificationError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (hot path)
if TYPE_CHECKING:
    from typing import Final, Literal

    State = Literal["hit", "miss", "stale", "mismatch"]  # the cache's one answer (``ask``)

HIT: "Final" = "hit"
MISS: "Final" = "miss"
STALE: "Final" = "stale"
MISMATCH: "Final" = "mismatch"

ENTRY_MAGIC = "sshpin-host 1"
FUTURE_SKEW = 300.0  # a fetch time further in the future than this means the clock jumped back


class HostEntry:
    """What the hook prints for one host: the keys, and where and when they came from."""

    __slots__ = (
        "address",
        "capsul",
        "cas",
        "expires",
        "fetched_at",
        "generated",
        "host",
        "keys",
        "revoked",
        "rule",
        "signed",
        "source",
        "trust",
    )

    def __init__(
        self,
        host: str,
        capsul: str,
        rule: str,
        fetched_at: float,
        keys: "list[HostKey]",
        *,
        signed: bool = False,
        source: str = "",
        revoked: "list[HostKey] | None" = None,
        address: str = "",
        cas: "list[HostKey] | None" = None,
        expires: float = 0.0,
        trust: str = "",
        generated: float = 0.0,
    ) -> None:
        self.expires = expires  # the signed statement's own end of validity; 0: none stated
        self.trust = trust  # the trust context it was verified under (core/config.py)
        self.generated = generated  # the signed statement's generated_at; 0: none stated
        self.cas = cas or []  # certificate authorities: @cert-authority lines
        self.address = address  # the capsul's address, for ``sshpin proxy``
        self.revoked = revoked or []
        self.host = host
        self.capsul = capsul
        self.rule = rule
        self.fetched_at = fetched_at
        self.keys = keys
        self.signed = signed
        self.source = source

    def lines(self, token: str) -> list[str]:
        """The known_hosts lines for ``token`` (ssh's %H): the keys, the certificate
        authorities, then the ``@revoked`` keys."""
        out = [k.known_hosts_line(token) for k in self.keys]
        out += [k.known_hosts_line(token, "@cert-authority") for k in self.cas]
        return out + [k.known_hosts_line(token, "@revoked") for k in self.revoked]

    def has(self, blob: bytes | None) -> bool:
        """Is the server's key (``%K``) among the keys? None (an ORDER call) asks for none."""
        return blob is None or any(k.blob == blob for k in self.keys)

    def to_text(self) -> str:
        lines = [
            ENTRY_MAGIC,
            f"host {self.host}",
            f"capsul {self.capsul}",
            f"rule {self.rule}",
            f"fetched {self.fetched_at!r}",
            f"signed {int(self.signed)}",
            f"source {self.source}",
        ]
        if self.address:
            lines.append(f"address {self.address}")
        if self.expires:
            lines.append(f"expires {self.expires!r}")
        if self.generated:
            lines.append(f"generated {self.generated!r}")
        if self.trust:
            lines.append(f"trust {self.trust}")
        lines += [f"key {k.openssh()}" for k in self.keys]
        lines += [f"ca {k.openssh()}" for k in self.cas]
        lines += [f"revoked {k.openssh()}" for k in self.revoked]
        lines.append("end")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> "HostEntry | None":
        """Parse an entry; None for anything damaged (truncated, garbage, bad key)."""
        lines = text.split("\n")
        if len(lines) < 9 or lines[0] != ENTRY_MAGIC or lines[-2:] != ["end", ""]:
            return None
        fields: dict[str, str] = {}
        keys: list[HostKey] = []
        revoked: list[HostKey] = []
        cas: list[HostKey] = []
        try:
            for line in lines[1:-2]:
                name, _, value = line.partition(" ")
                if name == "key":
                    keys.append(parse_line(value))
                elif name == "revoked":
                    revoked.append(parse_line(value))
                elif name == "ca":
                    cas.append(parse_line(value))
                else:
                    fields[name] = value
            return cls(
                host=fields["host"],
                capsul=fields["capsul"],
                rule=fields["rule"],
                fetched_at=float(fields["fetched"]),
                keys=keys,
                signed=fields["signed"] == "1",
                source=fields["source"],
                revoked=revoked,
                address=fields.get("address", ""),
                cas=cas,
                expires=float(fields.get("expires", 0.0)),
                trust=fields.get("trust", ""),
                generated=float(fields.get("generated", 0.0)),
            )
        except (KeyError, ValueError, VerificationError):
            return None


def age(fetched_at: float, now: float) -> float:
    """Seconds since a fetch; a fetch "from the future" (the clock went back) counts as old."""
    if fetched_at > now + FUTURE_SKEW:
        return float("inf")
    return max(0.0, now - fetched_at)


def fresh(fetched_at: float, expires: float, ttl: float, now: float) -> bool:
    """Within ``ttl`` of its fetch and before its own ``expires``: served without a fetch."""
    return servable(fetched_at, expires, ttl, 0.0, now)


def servable(
    fetched_at: float, expires: float, ttl: float, stale_if_error: float, now: float
) -> bool:
    """The one freshness rule of every path that serves cached keys (cached hit, lock timeout,
    failed fetch, ProxyCommand's managed file): never past the statement's own ``expires``,
    never past ``ttl + stale_if_error`` since it was fetched."""
    if expires and now >= expires:
        return False
    return age(fetched_at, now) < ttl + stale_if_error


def usable(signed: bool, trust: str, signed_only: bool, current: str) -> bool:
    """The one cache-usability rule, for an entry and a document alike: what is cached counts
    only when it was verified under today's trust context (``current``: signing keys, URL,
    CA bundle, account, the aliases and DNS rule that decide which capsul a name is), and
    signed where signatures are required now (``signed_only``)."""
    return (signed or not signed_only) and trust == current


def entry_path(root: str, provider: str, host: str) -> str:
    """``<cache>/<provider>/hosts/<host>`` (store/cachedir.py has the whole layout)."""
    return files.join(root, provider, "hosts", host)


def document_path(root: str, provider: str) -> str:
    return files.join(root, provider, "document.json")


def document_mtime(root: str, provider: str) -> float | None:
    """The cached document's fetch time; None when there is none, as ``read_small`` reads
    it: a link, a FIFO or a directory there is no document."""
    try:
        st = posix.lstat(document_path(root, provider))
    except OSError:
        return None
    return st.st_mtime if files.is_file(st.st_mode) else None


def read_entry(path: str) -> "HostEntry | None":
    """An entry file, strictly parsed; None when missing or damaged (a miss, never a crash)."""
    raw = read_small(path)
    if raw is None:
        return None
    try:
        return HostEntry.from_text(raw.decode("ascii"))
    except UnicodeDecodeError:
        return None


def ask(
    root: str,
    provider: str,
    host: str,
    ttl: float,
    want: bytes | None,
    now: float,
    signed_only: bool,
    trust: str,
) -> "tuple[State, HostEntry | None]":
    """The cache's one answer for a host, with the entry it read (if any). Here, not in
    store/cachedir.py, so that a cached hit loads nothing else:

    - HIT: fresh, current with the provider's document, and it holds the server's key;
    - MISMATCH: fresh and current, but the server's key (``want``) is not among its keys;
    - STALE: past ``ttl`` or its signed ``expires``, or older than the provider's cached
      document: usable only if a fetch fails, within the one freshness rule (``servable``);
    - MISS: nothing cached for the host, or an entry verified under another trust context
      (``trust``: signing keys, URL, CA bundle, account, or the aliases and DNS rule that
      decide which capsul a name is, changed since) or unsigned while signatures are
      required now.
    """
    entry = read_entry(entry_path(root, provider, host))
    if entry is None:
        return MISS, None
    if not usable(entry.signed, entry.trust, signed_only, trust):
        return MISS, None  # unsigned, or verified under another configuration: no evidence
    if not fresh(entry.fetched_at, entry.expires, ttl, now):
        return STALE, entry
    # The document is rewritten (its mtime set to its fetch time) on every fetch: an entry
    # derived from an older one may list keys the provider has since dropped.
    mtime = document_mtime(root, provider)
    if mtime is not None and mtime > entry.fetched_at + 0.001:
        return STALE, entry
    return (HIT if entry.has(want) else MISMATCH), entry
