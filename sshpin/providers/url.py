"""``type = "url"``: signed host-key files in object storage (docs/provider-api.md).

For a host, ``url`` (with ``{host}`` = the host without its port, URL-quoted) holds public key
lines as in ``/etc/ssh/ssh_host_*_key.pub``, and ``{url}.sig`` an armored SSHSIG of that file
made by ``ssh-keygen -Y sign -n sshpin-hostkeys`` with one of ``signing_keys``. Unlike the
capsul API there is no account-wide document: each host's file is fetched and cached on its
own, as the host entry itself.

The file's first line binds it to a host and a time, inside what is signed::

    # sshpin-hostkeys v1 host=web1 generated_at=2026-11-22T10:00:00Z expires=2026-12-22T10:00:00Z

so one host's file served for another (mix-and-match), an old file after a rotation
(rollback), one kept past its expiry (freeze) and one from the future (fast-forward) are all
refused. A file without it is refused unless the provider sets ``allow_unbound = true``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sshpin.core.schema import (
    fetching,
    flag,
    https_url,
    string,
    trust_context,
)
from sshpin.errors import NoKeysError, SshpinError, VerificationError, log, say
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, fresh
from sshpin.store.history import history_record
from sshpin.trust.obtain import Fetch, obtain

if TYPE_CHECKING:
    from sshpin.core.config import ProviderConfig
    from sshpin.core.keys import HostKey
    from sshpin.core.names import Query

MAX_FILE = 65536
MAX_SIG = 16384
RULE = "url"
HEADER = "# sshpin-hostkeys v1 "
MAX_AGE = 30 * 86400  # as for capsul documents: nothing signed holds longer than this
SKEW = 300.0


class UrlProvider(Provider):
    KEYS = frozenset(
        {"url", "signing_keys", "ca_bundle", "ttl", "stale_if_error", "allow_unbound", "ports"}
    )

    def __init__(self, cfg: ProviderConfig, root: str) -> None:
        super().__init__(cfg, root)
        self.store = ProviderCache(root, cfg.name)

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        fetching(table, out)  # ttl, stale_if_error, ports, signing_keys, ca_bundle
        url = https_url(string(table, "url"), "url")
        if "{host}" not in url:
            raise ValueError("url: must contain {host}")
        out["url"] = url
        if not out["signing_keys"]:
            raise ValueError('signing_keys: required for type = "url" (files are signed)')
        out["allow_unbound"] = flag(table, "allow_unbound")
        out["trust"] = trust_context("url", out["signing_keys"], url, out["ca_bundle"],
                                     out["allow_unbound"])  # fmt: skip

    def url_for(self, host: str) -> str:
        return str(self.cfg.get("url")).replace("{host}", quote(host, safe=""))

    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        files = HostFileFetch(self, query.host)
        files.subject = query.token
        entry = files.read()
        if not fetch:
            return entry
        now = time.time()
        current = entry is not None and fresh(entry.fetched_at, entry.expires, self.cfg.ttl, now)
        if current and entry is not None and entry.has(query.want):
            return entry
        entry = obtain(files, self.store, self.cfg, mismatch=query.host if current else None)
        if not entry.has(query.want):
            unknown_key(query, entry, self.name, "in its signed key file")
        return entry

    def rows(self) -> list[Row]:
        out = []
        for host in self.store.hosts():
            entry = self.store.read_host(host)
            if entry is not None:
                out.append(Row(self.name, "", [host], [], entry))
        return out

    def refresh(self, host: str | None) -> list[dict[str, object]]:
        records: list[dict[str, object]] = []
        failed: SshpinError | None = None
        for name in [host] if host else self.store.hosts():
            files = HostFileFetch(self, name)
            try:
                obtain(files, self.store, self.cfg, force=True)
            except SshpinError as e:
                failed = e
                continue
            for note in files.notes if not files.changed else []:
                say(name, note)  # asked for: said even when nothing changed
            records += files.changed
        if failed is not None:
            raise failed
        return records

    def fetch_host(
        self,
        host: str,
        now: float,
        previous: HostEntry | None = None,
        notes: list[str] | None = None,
    ) -> HostEntry:
        """The host's signed key file; a note in ``notes`` for each key line skipped."""
        from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line
        from sshpin.trust import http, sshsig

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
            signer = sshsig.verify(sshsig.unarmor(text), body.body, allowed).sha256()
        except VerificationError as e:
            raise VerificationError(f"{what}: signature of {url} refused: {e}") from None
        keys = parse_key_file(body.body, f"{what}: {url}", notes)
        generated, expires = self._check_binding(host, body.body, signer, previous, now)
        if generated:
            try:
                self.store.record_newest(f"host {host} {signer}", generated)
            except OSError:
                pass  # best effort: the cached entry still stops a rollback below it
        trust = str(self.cfg.get("trust") or "")
        return HostEntry(host, host, RULE, now, keys, True, url, expires=expires, trust=trust,
                         generated=generated)  # fmt: skip

    def _check_binding(
        self, host: str, data: bytes, signer: str, previous: HostEntry | None, now: float
    ) -> tuple[float, float]:
        """The signed header: for this host, within its time, not older than one accepted.
        Returns (generated_at, expires); (0, 0) for an unbound file the user opted into."""
        what = f"provider {self.name!r}: key file for {host}"
        header = parse_header(data, what)
        if header is None:
            weakness = "another host's file or an old one could be served in its place"
            if not self.cfg.get("allow_unbound"):
                raise VerificationError(
                    f"{what}: refused as unbound: it names no host and time (no "
                    f"'{HEADER.strip()}' first line); {weakness}",
                    "have the operator sign files with the header, or set allow_unbound = true",
                )
            say(host, f"warning: {what} names no host and time (allow_unbound = true): "
                f"{weakness}")  # fmt: skip
            return 0.0, 0.0
        named, generated, expires = header
        if named != host:
            raise VerificationError(
                f"{what}: refused as mix-and-match: the signed file is for host {named[:80]!r}"
            )
        if generated > now + SKEW:
            raise VerificationError(
                f"{what}: refused as fast-forward: generated at {_iso(generated)}, in the future"
            )
        if now >= expires:
            raise VerificationError(f"{what}: refused as a freeze: it expired at {_iso(expires)}")
        if expires > generated + MAX_AGE:
            raise VerificationError(
                f"{what}: refused as endless data: valid until {_iso(expires)}, more than 30 "
                "days after it was generated"
            )
        floor = self.store.newest(f"host {host} {signer}")
        if previous is not None and previous.generated:
            floor = max(floor, previous.generated)
        if generated < floor:
            raise VerificationError(
                f"{what}: generated at {_iso(generated)}, older than one already accepted "
                f"({_iso(floor)}): refused as a rollback"
            )
        return generated, expires


class HostFileFetch(Fetch[HostEntry]):
    """What a url provider fetches: one host's signed key file, cached as its entry."""

    def __init__(self, provider: UrlProvider, host: str) -> None:
        self.provider = provider
        self.host = host
        self.subject = host  # ssh's %H when the hook asks: see UrlProvider.answer
        self.changed: list[dict[str, object]] = []
        self.notes: list[str] = []  # key lines the fetched file had that sshpin skipped

    def read(self) -> HostEntry | None:
        entry = self.provider.store.read_host(self.host)
        if entry is None or not entry.signed:
            return None
        if entry.trust != self.provider.cfg.get("trust"):
            log(self.host, "cached keys were verified under another configuration; refetching")
            return None
        return entry

    def fetch(self, previous: HostEntry | None) -> HostEntry:
        self.notes = []
        return self.provider.fetch_host(self.host, time.time(), previous, self.notes)

    def write(self, item: HostEntry) -> None:
        self.provider.store.write_host(item)

    def changes(self, item: HostEntry, previous: HostEntry | None) -> list[dict[str, object]]:
        before = {k.sha256() for k in previous.keys} if previous is not None else set()
        after = {k.sha256() for k in item.keys}
        for note in self.notes:  # shown when the keys are new or changed, not at every refetch
            (log if before == after else say)(self.subject, note)
        if before == after:
            return []
        event = "first-seen" if previous is None else "changed"
        self.changed = [history_record(item.fetched_at, self.provider.name, item.host, item.host,
                                       [], event, before, after, item.source)]  # fmt: skip
        return self.changed


def parse_key_file(data: bytes, where: str, notes: list[str] | None = None) -> list[HostKey]:
    """Public key lines; comments and blank lines skipped; lines of a type sshpin does not
    serve (DSA, certificates, security keys, types newer than sshpin...) skipped, each with a
    note in ``notes`` naming the line and type; anything malformed refuses the whole file."""
    from sshpin.core.keys import parse_key_lines

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


def parse_header(data: bytes, where: str) -> tuple[str, float, float] | None:
    """The first line ``# sshpin-hostkeys v1 host=H generated_at=T expires=T`` as (host,
    generated_at, expires); None when the file has no such line. A line that starts like the
    header but is malformed refuses the file (it is not silently treated as unbound)."""
    from sshpin.trust.document import parse_timestamp

    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.startswith(b"# sshpin-hostkeys "):
        return None
    if not first.startswith(HEADER.encode()):
        raise VerificationError(f"{where}: header line of an unknown version (not v1)")
    try:
        fields = first.decode("ascii").split(" ")[3:]
    except UnicodeDecodeError:
        raise VerificationError(f"{where}: header line is not ASCII") from None
    pairs = [f.partition("=") for f in fields]
    names = [name for name, _, _ in pairs]
    if names != ["host", "generated_at", "expires"] or any(not v for _, _, v in pairs):
        raise VerificationError(
            f"{where}: header line must be '{HEADER}host=<host> generated_at=<RFC 3339> "
            "expires=<RFC 3339>'"
        )
    host = pairs[0][2].lower()
    return host, parse_timestamp(pairs[1][2]), parse_timestamp(pairs[2][2], "expires")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
