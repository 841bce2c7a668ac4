"""``type = "cert-authority"``: a CA vouches for host certificates of a few named hosts.

As container tools do: ``@cert-authority`` lines for the hosts in ``hosts`` (never all hosts),
``@revoked`` lines for keys the user revoked. Nothing is fetched or cached: the keys come from
the config (``ca_keys``) and from key files (``ca_key_files``), refused like the config when
others could have written them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sshpin.core.files import read_trusted
from sshpin.core.keys import SIGNING_KEY_TYPES, HostKey, parse_key_lines, parse_line
from sshpin.core.schema import key_lines, path_list, ports, string_list, too_broad
from sshpin.errors import ConfigError, VerificationError, log
from sshpin.providers.interface import Provider
from sshpin.store.entries import HostEntry

if TYPE_CHECKING:
    from sshpin.core.names import Query

RULE = "cert-authority"
MAX_CA_FILE = 65536


class CertAuthorityProvider(Provider):
    KEYS = frozenset({"ca_keys", "ca_key_files", "revoked_keys", "ports"})
    caches = False
    local = True

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        broad = too_broad(out["hosts"])
        if broad:
            raise ValueError(
                f"hosts: a certificate authority may not vouch for every host ({broad}); "
                "name the hosts or domains it signs for"
            )
        ports(table, out, None)  # a host certificate names its host, whatever the port
        ca_keys = string_list(table, "ca_keys")
        files = path_list(table, "ca_key_files")
        out["ca_keys"] = key_lines(ca_keys)
        out["revoked_keys"] = key_lines(string_list(table, "revoked_keys"))
        out["ca_key_files"] = files
        if not ca_keys and not files:
            raise ValueError("ca_keys or ca_key_files: a certificate authority needs its key")

    def answer(self, query: Query, fetch: bool) -> HostEntry:
        revoked = [parse_line(line, SIGNING_KEY_TYPES) for line in self.cfg.get("revoked_keys")]
        notes: list[str] = []
        cas = self.ca_keys(notes)
        for note in notes:
            log(query.token, note)
        return HostEntry(query.host, "", RULE, 0.0, [], source="config", revoked=revoked, cas=cas)

    def ca_keys(self, notes: list[str] | None = None) -> list[HostKey]:
        """Inline ``ca_keys``, then each of ``ca_key_files``.

        A line of a key type sshpin cannot use is skipped, with a note in ``notes`` naming the
        file, line and type (fewer CAs is safe: ssh then trusts fewer certificates); anything
        malformed is an error naming the file and line.
        """
        keys = [parse_line(line, SIGNING_KEY_TYPES) for line in self.cfg.get("ca_keys")]
        skipped: list[str] = []
        for path in self.cfg.get("ca_key_files"):
            found: list[str] = []
            try:
                keys += parse_key_lines(self._read(path), True, found, SIGNING_KEY_TYPES)
            except VerificationError as e:
                raise ConfigError(f"provider {self.name!r}: CA key file {path}: {e}") from None
            skipped += [f"CA key file {path}: {note}" for note in found]
        if notes is not None:
            notes += [f"provider {self.name!r}: {note}" for note in skipped]
        if not keys:
            why = f" ({skipped[0]})" if skipped else ""
            raise ConfigError(f"provider {self.name!r}: no usable CA key{why}")
        return keys

    def check(self) -> str:
        notes: list[str] = []
        count = len(self.ca_keys(notes))
        skipped = f"; {len(notes)} skipped, first: {notes[0]}" if notes else ""
        return f"{count} CA key(s) read{skipped}"

    def _read(self, path: str) -> str:
        """A CA key file, refused (like the config) if others could have written it, if it is
        not a regular file (a FIFO never blocks: opened non-blocking) or is too large."""
        try:
            raw, _ = read_trusted(path, "CA key file", MAX_CA_FILE)
        except ConfigError as e:
            raise e.prefixed(f"provider {self.name!r}") from None
        except OSError as e:
            raise ConfigError(
                f"provider {self.name!r}: cannot read CA key file {path}: {e.strerror}"
            ) from None
        return raw.decode("utf-8", "replace")
