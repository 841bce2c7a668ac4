"""asyncssh: trust a server's host key only when sshpin vouches for it (docs/api.md).

    async with asyncssh.connect(host, known_hosts=known_hosts, client_factory=SshpinClient):

``known_hosts`` is the callable asyncssh accepts in place of a known_hosts file: asyncssh calls
it with ``(host, addr, port)`` (port None for 22) before the key exchange, and it returns the
host keys, CA keys and revoked keys sshpin vouches for. A host sshpin does not manage gets what
``fallback`` holds for it: by default the user's ``~/.ssh/known_hosts``, as asyncssh itself
would read (``KnownHosts(fallback=...)`` for another source).

``SshpinClient`` (an ``asyncssh.SSHClient``; subclass it for your own callbacks) is what makes
a rebuilt server's new key work: asyncssh asks it about a key the list above does not hold, and
it asks sshpin again, offering that key, so sshpin refetches from the provider; the key is
accepted only if the provider now vouches for it. Without it such a key is refused.

Both run on the event loop's thread: a cached answer is one small file read, a fetch blocks
for at most the provider's timeouts. asyncssh offers only the key types of the vouched keys,
so a rebuild that changes the key type needs ``server_host_key_algs="default"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import asyncssh
from asyncssh.known_hosts import KnownHostsArg

from sshpin.api import DEFAULT_PORT, PublicKey, Vouched, vouched
from sshpin.errors import SshpinError, say

__all__ = ["KnownHosts", "SshpinClient", "known_hosts", "trusted"]


def _user_known_hosts() -> str | bytes:
    """What asyncssh reads when given no known_hosts: ~/.ssh/known_hosts, if readable."""
    path = os.path.expanduser(os.path.join("~", ".ssh", "known_hosts"))
    return path if os.path.isfile(path) and os.access(path, os.R_OK) else b""


class KnownHosts:
    """The ``known_hosts`` callable: sshpin's keys for managed hosts, ``fallback``'s for the
    rest (any known_hosts argument asyncssh takes, except None; default: asyncssh's own)."""

    def __init__(self, fallback: KnownHostsArg = ()) -> None:
        if fallback is None:
            raise TypeError("fallback=None would turn host key checking off: give a file")
        self.fallback = fallback

    def __call__(self, host: str, addr: str, port: int | None) -> Sequence[Any]:
        try:
            answer = vouched(host, port or DEFAULT_PORT)
        except SshpinError as e:
            say(host, f"{e.message}; no host key trusted", e.hint)
            return ([], [], [])  # managed (or unjudgeable): refuse every key, fail closed
        if not answer.managed:
            fallback = self.fallback if self.fallback != () else _user_known_hosts()
            return asyncssh.match_known_hosts(fallback, host, addr, port)
        return trusted(answer)


known_hosts = KnownHosts()


class SshpinClient(asyncssh.SSHClient):
    """Accepts a key the ``known_hosts`` answer did not hold only if sshpin, offered that key
    (and so refetching), now vouches for it; unmanaged hosts keep asyncssh's answer."""

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        try:
            answer = vouched(host, port or DEFAULT_PORT, offered=key.public_data)
        except SshpinError as e:
            say(host, f"{e.message}; the server's key refused", e.hint)
            return False
        if not answer.managed:
            return super().validate_host_public_key(host, addr, port, key)
        return answer.trusts(key.public_data)


def _keys(keys: Sequence[PublicKey]) -> list[asyncssh.SSHKey]:
    return [asyncssh.import_public_key(k.openssh()) for k in keys]


def trusted(answer: Vouched) -> tuple[list[asyncssh.SSHKey], ...]:
    """The (host keys, CA keys, revoked keys) of an answer, as asyncssh keys."""
    return (_keys(answer.keys), _keys(answer.ca_keys), _keys(answer.revoked))
