"""``type = "url"``: signed host-key files in object storage (docs/provider-api.md).

For a host, ``url`` (with ``{host}`` = the host without its port, URL-quoted) holds public key
lines as in ``/etc/ssh/ssh_host_*_key.pub``, and ``{url}.sig`` an armored SSHSIG of that file
made by ``ssh-keygen -Y sign -n sshpin-hostkeys`` with one of ``signing_keys``. Unlike the
capsul API there is no account-wide document: each host's file is fetched and cached on its
own, as the host entry itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sshpin.core.config import freshness, https_url, key_lines, string, string_list
from sshpin.errors import NoKeysError, SshpinError, VerificationError, log, say
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, age
from sshpin.store.history import history_record
from sshpin.trust.obtain import Fetch, obtain

if TYPE_CHECKING:
    from sshpin.core.config import ProviderConfig
    from sshpin.core.keys import HostKey
    from sshpin.core.names import Query

MAX_FILE = 65536
MAX_SIG = 16384
RULE = "url"


class UrlProvider(Provider):
    KEYS = frozenset({"url", "signing_keys", "ca_bundle", "ttl", "stale_if_error"})

    def __init__(self, cfg: ProviderConfig, root: str) -> None:
        super().__init__(cfg, root)
        self.store = ProviderCache(root, cfg.name)

    @staticmethod
    def validate(table: dict[str, Any], out: dict[str, Any]) -> None:
        import os

        freshness(table, out)
        out["signing_keys"] = key_lines(string_list(table, "signing_keys"))
        ca_bundle = string(table, "ca_bundle", "")
        out["ca_bundle"] = os.path.expanduser(ca_bundle) if ca_bundle else ""
        url = https_url(string(table, "url"), "url")
        if "{host}" not in url:
            raise ValueError("url: must contain {host}")
        out["url"] = url
        if not out["signing_keys"]:
            raise ValueError('signing_keys: required for type = "url" (files are signed)')

    def url_for(self, host: str) -> str:
        return str(self.cfg.get("url")).replace("{host}", quote(host, safe=""))

    def answer(self, query: Query, fetch: bool) -> HostEntry | None:
        files = HostFileFetch(self, query.host)
        files.subject = query.token
        entry = files.read()
        if not fetch:
            return entry
        fresh = entry is not None and age(entry.fetched_at, time.time()) < self.cfg.ttl
        if fresh and entry is not None and entry.has(query.want):
            return entry
        entry = obtain(files, self.store, self.cfg, mismatch=query.host if fresh else None)
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

    def fetch_host(self, host: str, now: float, notes: list[str] | None = None) -> HostEntry:
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
            sshsig.verify(sshsig.unarmor(text), body.body, allowed)
        except VerificationError as e:
            raise VerificationError(f"{what}: signature of {url} refused: {e}") from None
        keys = parse_key_file(body.body, f"{what}: {url}", notes)
        return HostEntry(host, host, RULE, now, keys, True, url)


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
        return entry if entry is not None and entry.signed else None

    def fetch(self, previous: HostEntry | None) -> HostEntry:
        self.notes = []
        return self.provider.fetch_host(self.host, time.time(), self.notes)

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
