"""paramiko: accept a server's host key only when sshpin vouches for it (docs/api.md).

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(SshpinPolicy())
    client.connect("capsul-as9w8djads", username="root")

``SshpinPolicy`` is asked by paramiko for any host whose key the client's own ``HostKeys``
do not hold: for a host sshpin manages it accepts the offered key only when sshpin vouches for
it (offering it, so a rebuilt server's new key is refetched), and otherwise raises
``HostKeyRefused``; any other host goes to ``fallback`` (paramiko's ``RejectPolicy`` unless
given). ``fill_host_keys`` puts the vouched keys into a ``paramiko.HostKeys`` instead.

What paramiko cannot do: it does not verify host certificates, so ``@cert-authority`` keys are
of no use to it (a host sshpin vouches for only through a CA is refused, saying so), and it
keeps one key per host and key type in a ``HostKeys``. ``@revoked`` keys are always refused.
"""

from __future__ import annotations

import paramiko

from sshpin.api import DEFAULT_PORT, NoAuthenticKeys, Vouched, vouched
from sshpin.core.keys import HostKey
from sshpin.core.names import split_host
from sshpin.errors import SshpinError, say

__all__ = ["HostKeyRefused", "SshpinPolicy", "fill_host_keys"]

REFRESH_HINT = "compare with the provider's records; 'sshpin cache refresh' after a rebuild"


class HostKeyRefused(SshpinError, paramiko.SSHException):
    """The server's key is not one sshpin vouches for (or is revoked): do not connect.
    Also a ``paramiko.SSHException``, as paramiko's own ``RejectPolicy`` raises."""


class SshpinPolicy(paramiko.MissingHostKeyPolicy):
    """Accept a managed host's key only when sshpin vouches for it; leave others to
    ``fallback`` (default ``paramiko.RejectPolicy()``)."""

    def __init__(self, fallback: paramiko.MissingHostKeyPolicy | None = None) -> None:
        self.fallback = fallback if fallback is not None else paramiko.RejectPolicy()

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        blob = key.asbytes()
        shown = HostKey(key.get_name(), blob).sha256()
        try:
            host, port = split_host(hostname)  # paramiko's name: host, or [host]:port
            answer = vouched(host, port or DEFAULT_PORT, offered=blob)
        except NoAuthenticKeys as e:
            raise HostKeyRefused(f"{e.message}; the server's key {shown} refused", e.hint) from e
        except SshpinError as e:  # a name or config sshpin cannot judge: fail closed
            raise HostKeyRefused(f"{hostname[:80]}: {e.message}", e.hint) from e
        if not answer.managed:
            return self.fallback.missing_host_key(client, hostname, key)
        if answer.trusts(blob):
            return None
        raise HostKeyRefused(_why_not(answer, blob, shown), REFRESH_HINT)


def _why_not(answer: Vouched, blob: bytes, shown: str) -> str:
    by = f"provider {answer.provider!r}" if answer.provider else "your pin"
    if answer.is_revoked(blob):
        return f"{answer.name}: the server's key {shown} is revoked by {by}"
    if not answer.keys:
        return (
            f"{answer.name}: {by} vouches only for certificate authorities, and paramiko "
            f"does not verify host certificates; the server's key {shown} refused"
        )
    return f"{answer.name}: the server's key {shown} is not one {by} vouches for"


def fill_host_keys(host_keys: paramiko.HostKeys, host: str, port: int = DEFAULT_PORT) -> Vouched:
    """Replace ``host_keys``' entries for the host with the keys sshpin vouches for (no
    certificate authorities, no revoked key), and return what sshpin said. An unmanaged host
    is left as it is. Raises ``NoAuthenticKeys`` when a managed host has none."""
    answer = vouched(host, port)
    if not answer.managed:
        return answer
    while host_keys.lookup(answer.name) is not None:  # one entry per call: every old one goes
        del host_keys[answer.name]
    added = 0
    for k in answer.keys:
        try:
            pkey = paramiko.PKey.from_type_string(k.key_type, k.blob)
        except paramiko.SSHException:  # a key type this paramiko does not know
            say(answer.name, f"paramiko cannot use the {k.key_type} key {k.sha256()}; skipped")
            continue
        host_keys.add(answer.name, k.key_type, pkey)
        added += 1
    if not added:
        raise NoAuthenticKeys(
            f"{answer.name}: no key sshpin vouches for is one paramiko can check"
            + (" (paramiko does not verify host certificates)" if answer.ca_keys else ""),
            "connect with OpenSSH through sshpin's hook",
            answer.host,
            answer.port,
        )
    return answer
