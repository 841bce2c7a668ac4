"""The known_hosts files sshpin writes for clients that read a file rather than run the hook:
ProxyCommand mode's managed file (commands/proxy.py) and ``sshpin export`` (commands/export.py).

They share one freshness rule, the cache's own (``entries.servable``): every line a provider
vouches for ends with the comment ``sshpin-until=<time>``, the earliest of the statement's
``expires`` and ``fetched + ttl + stale_if_error``. A rewrite drops every line past its limit,
and a host the cache no longer vouches for (its lookup failed) loses its lines. Pins are the
user's own: their lines carry no limit.
"""

from __future__ import annotations

from sshpin.core.config import ProviderConfig
from sshpin.store.entries import HostEntry

UNTIL = "sshpin-until="


def limit(entry: HostEntry, provider: ProviderConfig) -> float:
    """Until when the cache serves ``entry``: the limit ``entries.servable`` applies."""
    until = entry.fetched_at + provider.ttl + provider.stale_if_error
    if entry.expires:
        until = min(until, entry.expires)
    return until


def vouched_lines(
    token: str, pin: HostEntry | None, entry: HostEntry | None, provider: ProviderConfig | None
) -> list[str]:
    """The lines for host field ``token``: the pin's (no limit), then the provider's, each
    with its ``sshpin-until`` limit (``entry`` is ignored without the provider vouching)."""
    lines = pin.lines(token) if pin else []
    if entry is not None and provider is not None:
        tail = f" {UNTIL}{int(limit(entry, provider))}"
        lines += [line + tail for line in entry.lines(token) if line not in lines]
    return lines


def in_time(line: str, now: float) -> bool:
    """Is a written line within its limit? Lines without one (pins, older sshpin) stay."""
    last = line.rsplit(" ", 1)[-1]
    if not last.startswith(UNTIL):
        return True
    try:
        return now < int(last[len(UNTIL) :])
    except ValueError:
        return False


def host_field(line: str) -> str:
    """The host field of a known_hosts line (after an ``@marker``)."""
    fields = line.split()
    if fields and fields[0].startswith("@"):
        fields = fields[1:]
    return fields[0] if fields else ""
