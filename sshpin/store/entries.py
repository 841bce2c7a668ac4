"""Host entries: what the hook prints for one host, with where and when it came from.

An entry is a small text file (``<provider>/hosts/<host>`` in the cache, ``pins/<host>`` under
the config dir) read with the strict parser below: a damaged entry is a miss, never a crash.
Standard library only: a cached hit reads one entry and nothing else.
"""

from __future__ import annotations

from sshpin.core.keys import HostKey, parse_line
from sshpin.errors import VerificationError

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
        keys: list[HostKey],
        signed: bool = False,
        source: str = "",
        revoked: list[HostKey] | None = None,
        address: str = "",
        cas: list[HostKey] | None = None,
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
    def from_text(cls, text: str) -> HostEntry | None:
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
