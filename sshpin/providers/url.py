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
from sshpin.errors import NoKeysError, SshpinError, log, say
from sshpin.providers.interface import Provider, Row, unknown_key
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import HostEntry, fresh, usable
from sshpin.store.history import history_record
from sshpin.trust.keyfile import verify_key_file
from sshpin.trust.obtain import Fetch, obtain
from sshpin.trust.verify import BadSignature, floor_key

if TYPE_CHECKING:
    from sshpin.core.config import ProviderConfig
    from sshpin.core.names import Query
    from sshpin.store.history import HistoryRecord

MAX_FILE = 65536
MAX_SIG = 16384
RULE = "url"


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

    def refresh(self, host: str | None) -> list[HistoryRecord]:
        records: list[HistoryRecord] = []
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
        """The host's signed key file, verified by the trust core (trust/verify.py); a note
        in ``notes`` for each key line skipped."""
        from sshpin.trust import http

        url = self.url_for(host)
        what = f"provider {self.name!r}"
        s = http.session(str(self.cfg.get("ca_bundle") or ""))
        try:
            body = http.get(s, url, {}, MAX_FILE, what, allow_404=True)
            if body.status == 404:
                raise NoKeysError(f"{what}: no key file for {host} ({url}: HTTP 404)")
            sig = http.get(s, url + ".sig", {}, MAX_SIG, what, allow_404=True)
            if sig.status == 404:
                raise BadSignature(f"{what}: key file for {host} is not signed (no .sig)")
        finally:
            s.close()
        before = previous.generated if previous is not None else 0.0
        verified = verify_key_file(body.body, sig.body, host, url, self.name,
                                   list(self.cfg.get("signing_keys")),
                                   bool(self.cfg.get("allow_unbound")), now, self.store.floors(),
                                   before)  # fmt: skip
        if notes is not None:
            notes += verified.notes
        for warning in verified.warnings:
            say(host, warning)
        if verified.generated:
            try:
                self.store.record_newest(floor_key("host", host, verified.signer),
                                         verified.generated)  # fmt: skip
            except OSError:
                pass  # best effort: the cached entry still stops a rollback below it
        trust = str(self.cfg.get("trust") or "")
        return HostEntry(host, host, RULE, now, verified.keys, signed=True, source=url,
                         expires=verified.expires, trust=trust,
                         generated=verified.generated)  # fmt: skip


class HostFileFetch(Fetch[HostEntry]):
    """What a url provider fetches: one host's signed key file, cached as its entry."""

    def __init__(self, provider: UrlProvider, host: str) -> None:
        self.provider = provider
        self.host = host
        self.subject = host  # ssh's %H when the hook asks: see UrlProvider.answer
        self.changed: list[HistoryRecord] = []
        self.notes: list[str] = []  # key lines the fetched file had that sshpin skipped

    def read(self) -> HostEntry | None:
        entry = self.provider.store.read_host(self.host)
        if entry is None:
            return None
        if not usable(entry.signed, entry.trust, True, str(self.provider.cfg.get("trust"))):
            log(self.host, "cached keys were verified under another configuration; refetching")
            return None
        return entry

    def fetch(self, previous: HostEntry | None) -> HostEntry:
        self.notes = []
        return self.provider.fetch_host(self.host, time.time(), previous, self.notes)

    def write(self, item: HostEntry) -> None:
        self.provider.store.write_host(item)

    def changes(self, item: HostEntry, previous: HostEntry | None) -> list[HistoryRecord]:
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
