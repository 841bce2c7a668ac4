"""``type = "url"``: signed host-key files in object storage (DESIGN.md section 4).

For a host, ``url`` (with ``{host}`` = the host without its port, URL-quoted) holds public key
lines as in ``/etc/ssh/ssh_host_*_key.pub``, and ``{url}.sig`` an armored SSHSIG of that file
made by ``ssh-keygen -Y sign -n sshpin-hostkeys`` with one of ``signing_keys``. Unlike the
capsul API there is no account-wide document: each host's file is fetched and cached on its
own, as the host entry itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from sshpin import http
from sshpin.cache import HostEntry
from sshpin.errors import NoKeysError, VerificationError

if TYPE_CHECKING:
    from sshpin.config import ProviderConfig
    from sshpin.keys import HostKey

MAX_FILE = 65536
MAX_SIG = 16384
RULE = "url"


class HostFileProvider:
    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def url_for(self, host: str) -> str:
        return str(self.cfg.get("url")).replace("{host}", quote(host, safe=""))

    def fetch_host(self, host: str, now: float, notes: list[str] | None = None) -> HostEntry:
        """The host's signed key file; a note in ``notes`` for each key line skipped."""
        from sshpin import sshsig
        from sshpin.keys import SIGNING_KEY_TYPES, parse_line

        url = self.url_for(host)
        what = f"provider {self.name!r}"
        s = http.session(str(self.cfg.get("ca_bundle") or ""))
        try:
            body = http.get(s, url, {}, MAX_FILE, what, allow_404=True)
            if body.status == 404:
                raise NoKeysError(f"{what}: no key file for {host} ({url}: HTTP 404)")
            sig = http.get(s, url + ".sig", {}, MAX_SIG, what, allow_404=True)
            if sig.status == 404:
                raise VerificationError(f"{what}: key file for {host} is not signed (no .sig)")
        finally:
            s.close()
        try:
            text = sig.body.decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError(f"{what}: {url}.sig is not an armored signature") from None
        allowed = [parse_line(line, SIGNING_KEY_TYPES) for line in self.cfg.get("signing_keys")]
        try:
            sshsig.verify(sshsig.unarmor(text), body.body, allowed)
        except VerificationError as e:
            raise VerificationError(f"{what}: signature of {url} refused: {e}") from None
        keys = parse_key_file(body.body, f"{what}: {url}", notes)
        return HostEntry(host, host, RULE, now, keys, True, url)


def parse_key_file(data: bytes, where: str, notes: list[str] | None = None) -> list[HostKey]:
    """Public key lines; comments and blank lines skipped; lines of a type sshpin does not
    serve (DSA, certificates, security keys, types newer than sshpin...) skipped, each with a
    note in ``notes`` naming the line and type; anything malformed refuses the whole file."""
    from sshpin.keys import parse_key_lines

    found: list[str] = []
    try:
        keys = parse_key_lines(data.decode("utf-8"), skip_unsupported=True, notes=found)
    except UnicodeDecodeError:
        raise VerificationError(f"{where}: not UTF-8 text") from None
    except VerificationError as e:
        raise VerificationError(f"{where}: {e}") from None
    if notes is not None:
        notes += [f"{where}: {note}" for note in found]
    if not keys:
        why = f" ({found[0]})" if found else ""
        raise NoKeysError(f"{where}: no usable host key in the file{why}")
    return keys
