"""The user's pins as a provider: keys pasted from a provider's page (``sshpin pin``).

Not a config type: pins are consulted for every host before any configured provider, and a
pin holding the server's key answers alone (store/pins.py keeps them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sshpin.errors import SshpinError, say
from sshpin.providers.interface import Provider, Row
from sshpin.store import pins

if TYPE_CHECKING:
    from sshpin.core.names import Query
    from sshpin.store.entries import HostEntry


class PinProvider(Provider):
    caches = False

    def __init__(self) -> None:
        pass  # no config table, no cache: pins live under the config dir

    @property
    def name(self) -> str:
        return "pin"

    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        return pins.read(query.host)

    def rows(self) -> list[Row]:
        out = []
        for host in pins.hosts():
            try:
                entry = pins.read(host)
            except SshpinError as e:
                say("pin", str(e), e.hint)
                continue
            if entry is not None:
                out.append(Row("pin", "", [host], [], entry))
        return out
