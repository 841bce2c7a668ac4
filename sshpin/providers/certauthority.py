"""``type = "cert-authority"``: a CA vouches for host certificates of a few named hosts.

As container tools do: ``@cert-authority`` lines for the hosts in ``hosts`` (never all hosts),
``@revoked`` lines for keys the user revoked. Nothing is fetched or cached: the keys come from
the config (``ca_keys``) and from key files (``ca_key_files``), refused like the config when
others could have written them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sshpin.core.config import check_file_safe, key_lines, string_list
from sshpin.core.keys import HostKey, parse_line
from sshpin.errors import ConfigError
from sshpin.providers.interface import Provider
from sshpin.store.entries import HostEntry

if TYPE_CHECKING:
    from sshpin.core.names import Query

RULE = "cert-authority"
MAX_CA_FILE = 65536


class CertAuthorityProvider(Provider):
    KEYS = frozenset({"ca_keys", "ca_key_files", "revoked_keys"})
    caches = False

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        if any(p.strip("!") in ("*", "*.*") for p in out["hosts"]):
            raise ValueError("hosts: a certificate authority may not vouch for every host ('*')")
        ca_keys = string_list(table, "ca_keys")
        files = [os.path.expanduser(f) for f in string_list(table, "ca_key_files")]
        out["ca_keys"] = key_lines(ca_keys)
        out["revoked_keys"] = key_lines(string_list(table, "revoked_keys"))
        out["ca_key_files"] = files
        if not ca_keys and not files:
            raise ValueError("ca_keys or ca_key_files: a certificate authority needs its key")

    def answer(self, query: Query, fetch: bool) -> HostEntry:
        revoked = [parse_line(line) for line in self.cfg.get("revoked_keys")]
        return HostEntry(query.host, "", RULE, 0.0, [], False, "config", revoked,
                         cas=self.ca_keys())  # fmt: skip

    def ca_keys(self) -> list[HostKey]:
        """Inline ``ca_keys``, then each of ``ca_key_files``."""
        keys = [parse_line(line) for line in self.cfg.get("ca_keys")]
        for path in self.cfg.get("ca_key_files"):
            for line in self._read(path).splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    keys.append(parse_line(line))
        return keys

    def check(self) -> str:
        return f"{len(self.ca_keys())} CA key(s) read"

    def _read(self, path: str) -> str:
        """A CA key file, refused (like the config) if others could have written it."""
        try:
            with open(path, "rb") as f:
                check_file_safe(path, os.fstat(f.fileno()), "CA key file")
                return f.read(MAX_CA_FILE).decode("utf-8", "replace")
        except OSError as e:
            raise ConfigError(
                f"provider {self.name!r}: cannot read CA key file {path}: {e.strerror}"
            ) from None
