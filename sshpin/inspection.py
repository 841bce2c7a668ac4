"""What is pinned, and why (DESIGN.md section 5): ``sshpin cache ...``, ``pin``, ``unpin`` and
``fingerprints``. Reads the cache the hook writes; never changes it except where asked to."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from sshpin import cache, config, pins
from sshpin.errors import NoKeysError, SshpinError, UsageError
from sshpin.keys import HostKey
from sshpin.resolve import hosts_match, split_host, valid_host


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def warn(message: str) -> None:
    sys.stderr.write(f"sshpin: {message}\n")


@dataclass
class Row:
    """One line of ``cache list``: a capsul a provider listed, or a pinned host."""

    provider: str
    source: str  # the provider's URL, or "pin"
    capsul: str
    names: list[str]
    addresses: list[str]
    keys: list[HostKey]
    fetched_at: float
    fresh_until: float | None
    stale_until: float | None
    signed: bool
    state: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "source": self.source,
            "capsul": self.capsul or None,
            "names": self.names,
            "addresses": self.addresses,
            "keys": [
                {"type": k.key_type, "bits": k.bits(), "sha256": k.sha256()} for k in self.keys
            ],
            "fetched_at": iso(self.fetched_at),
            "fresh_until": iso(self.fresh_until),
            "stale_until": iso(self.stale_until),
            "signed": self.signed,
            "state": self.state,
        }


def _state(row: Row, now: float) -> str:
    if row.source == "pin":
        return "pinned"
    if row.fetched_at > now + cache.FUTURE_SKEW:
        return "expired"  # fetched "in the future": the clock went back
    if row.fresh_until is not None and now < row.fresh_until:
        return "fresh"
    if row.stale_until is not None and now < row.stale_until:
        return "stale"
    return "expired"


def _cache_root() -> str:
    """The cache dir, refused (as the hook refuses it) if another user owns it or others may
    write to it: what such a cache says cannot be trusted, not even for display."""
    root = config.cache_dir()
    if os.path.lexists(root):
        cache.ensure_dir(root, create=False)
    return root


def _host_arg(text: str) -> str:
    try:
        host, _port = split_host(text)
    except SshpinError:
        raise UsageError(f"{text[:60]!a} is not a host name or address") from None
    if not valid_host(host):
        raise UsageError(f"{text[:60]!a} is not a host name or address")
    return host


def _load() -> config.Config | None:
    return config.load()


def _fetching(cfg: config.Config | None) -> list[config.ProviderConfig]:
    return [p for p in (cfg.providers if cfg else []) if p.type != "cert-authority"]


def rows(now: float) -> list[Row]:
    """Every cached capsul of every provider, and every pin. Damaged files: warned, skipped."""
    cfg = _load()
    root = _cache_root()
    out: list[Row] = []
    for p in _fetching(cfg):
        store = cache.ProviderCache(root, p.name)
        doc = store.read_document()
        if doc is None and os.path.exists(store.document_path):
            warn(f"cache: {store.document_path}: damaged, ignored (the next use refetches it)")
        by_capsul: dict[str, list[str]] = {}
        for host in store.hosts():
            peeked = store.peek_host(host)
            if peeked is None:
                warn(f"cache: {store.host_path(host)}: damaged, ignored")
            else:
                by_capsul.setdefault(peeked[1], []).append(peeked[0])
        listed = set()
        for c in doc.capsuls if doc else []:
            listed.add(c.id)
            names = [c.name] if c.name and c.name != c.id else []
            addresses = [a for a in (c.ipv4, c.ipv6) if a]
            names += [
                h
                for h in by_capsul.get(c.id, [])
                if h != c.id and h not in names and h not in addresses
            ]
            assert doc is not None
            out.append(
                Row(
                    p.name,
                    doc.source,
                    c.id,
                    names,
                    addresses,
                    list(c.keys),
                    doc.fetched_at,
                    doc.fetched_at + p.ttl,
                    doc.fetched_at + p.ttl + p.stale_if_error,
                    doc.signed,
                )
            )
        for capsul_id, group in sorted(by_capsul.items()):
            if capsul_id in listed:
                continue
            e = store.read_host(group[0])  # no document: what the hook would still serve
            if e is None:
                warn(f"cache: {store.host_path(group[0])}: damaged, ignored")
                continue
            out.append(
                Row(
                    p.name,
                    e.source,
                    capsul_id,
                    group,
                    [],
                    e.keys,
                    e.fetched_at,
                    e.fetched_at + p.ttl,
                    e.fetched_at + p.ttl + p.stale_if_error,
                    e.signed,
                )
            )
    for host in pins.hosts():
        try:
            pin = pins.read(host)
        except SshpinError as e:
            warn(str(e))
            continue
        if pin is not None:
            out.append(
                Row("pin", "pin", "", [host], [], pin.keys, pin.fetched_at, None, None, False)
            )
    for row in out:
        row.state = _state(row, now)
    return out


def print_table(out: TextIO, header: list[str], table: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def cmd_list(as_json: bool, out: TextIO) -> int:
    found = rows(time.time())
    if as_json:
        out.write(json.dumps([r.as_dict() for r in found], indent=2) + "\n")
        return 0
    if not found:
        out.write("nothing cached or pinned\n")
        return 0
    table: list[list[str]] = []
    for r in found:
        first = [
            r.provider, r.capsul or "-", ",".join(r.names + r.addresses) or "-",
            r.state, iso(r.fetched_at) or "-", iso(r.fresh_until) or "-",
            iso(r.stale_until) or "-", "yes" if r.signed else "no",
        ]  # fmt: skip
        for i, k in enumerate(r.keys or [None]):
            key = f"{k.type_label()} {k.sha256()}" if k else "(no usable key)"
            table.append((first if i == 0 else [""] * len(first)) + [key])
    header = ["PROVIDER", "CAPSUL", "NAMES", "STATE", "FETCHED", "FRESH UNTIL", "STALE UNTIL",
              "SIGNED", "KEY"]  # fmt: skip
    print_table(out, header, table)
    return 0


@dataclass
class Known:
    """What sshpin knows about one host, without the network."""

    host: str
    pin: cache.HostEntry | None
    provider: config.ProviderConfig | None
    entry: cache.HostEntry | None
    why: str


def known(host: str) -> Known:
    pin = pins.read(host)
    cfg = _load()
    provider = next((p for p in (cfg.providers if cfg else []) if hosts_match(p.hosts, host)), None)
    if provider is None:
        why = "pinned" if pin else "no provider's hosts match it, and it is not pinned"
        return Known(host, pin, None, None, why)
    if provider.type == "cert-authority":
        return Known(host, pin, provider, None, "a certificate authority vouches for it")
    store = cache.ProviderCache(_cache_root(), provider.name)
    entry = store.read_host(host)
    if entry is not None:
        return Known(host, pin, provider, entry, f"resolved by {entry.rule} to {entry.capsul}")
    doc = store.read_document()
    if doc is None:
        return Known(host, pin, provider, None, "managed, but nothing is cached yet")
    from sshpin.resolve import resolve

    try:
        found = resolve(doc, host, provider.aliases, False)  # no DNS: show what is known
    except NoKeysError as e:
        return Known(host, pin, provider, None, str(e))
    if found is None:
        return Known(host, pin, provider, None, "no cached capsul matches it (DNS not consulted)")
    capsul, rule = found
    entry = cache.HostEntry(host, capsul.id, rule, doc.fetched_at, list(capsul.keys),
                            doc.signed, doc.source)  # fmt: skip
    return Known(host, pin, provider, entry, f"resolved by {rule} to {capsul.id}")


def cmd_show(token: str, as_json: bool, out: TextIO) -> int:
    host = _host_arg(token)
    k = known(host)
    lines: list[str] = []
    if k.pin:
        lines += k.pin.lines(token)
    if k.provider is not None and k.provider.type == "cert-authority":
        from sshpin.hostkeys import ca_keys

        lines += [key.known_hosts_line(token, "@cert-authority") for key in ca_keys(k.provider)]
        lines += [f"@revoked {token} {line}" for line in k.provider.get("revoked_keys")]
    if k.entry is not None:
        lines += k.entry.lines(token)
    lines = list(dict.fromkeys(lines))
    now = time.time()
    info: dict[str, Any] = {
        "host": host,
        "provider": k.provider.name if k.provider else None,
        "why": k.why,
        "pinned_at": iso(k.pin.fetched_at) if k.pin else None,
        "capsul": k.entry.capsul if k.entry else None,
        "rule": k.entry.rule if k.entry else None,
        "source": k.entry.source if k.entry else None,
        "fetched_at": iso(k.entry.fetched_at) if k.entry else None,
        "fresh_until": None,
        "stale_until": None,
        "signed": k.entry.signed if k.entry else None,
        "known_hosts": lines,
    }
    if k.entry is not None and k.provider is not None:
        info["fresh_until"] = iso(k.entry.fetched_at + k.provider.ttl)
        info["stale_until"] = iso(k.entry.fetched_at + k.provider.ttl + k.provider.stale_if_error)
    if as_json:
        out.write(json.dumps(info, indent=2) + "\n")
    else:
        for name, value in info.items():
            if name != "known_hosts" and value is not None:
                out.write(f"{name.replace('_', ' ')}: {value}\n")
        out.write(f"known_hosts lines the hook prints for {token} "
                  f"(as of {iso(now)}, before any refetch):\n")  # fmt: skip
        out.write("".join(f"  {line}\n" for line in lines) or "  (none)\n")
    if not lines:
        raise NoKeysError(f"cache show {token}: no keys known: {k.why}")
    return 0


def cmd_refresh(token: str | None, out: TextIO) -> int:
    from sshpin.refresh import refetch

    cfg = _load()
    targets = _fetching(cfg)
    host = None
    if token is not None:
        host = _host_arg(token)
        targets = [p for p in targets if hosts_match(p.hosts, host)][:1]
        if not targets:
            if pins.read(host):
                out.write(f"{host}: pinned, and no provider vouches for it: nothing to fetch\n")
                return 0
            raise NoKeysError(f"cache refresh {token}: no provider's hosts match it")
    elif not targets:
        raise NoKeysError("cache refresh: no provider to fetch from is configured")
    failed: SshpinError | None = None
    for p in targets:
        store = cache.ProviderCache(_cache_root(), p.name)
        if p.type == "url":
            failed = _refresh_files(p, store, [host] if host else store.hosts(), out) or failed
            continue
        try:
            doc, changes = refetch(p, store, lambda m: None, lambda m: None)
        except SshpinError as e:
            warn(f"cache refresh: {e}")
            failed = e
            continue
        if host is not None:
            changes = [c for c in changes if _concerns(c, host, store)]
        for c in changes:
            out.write(_describe(c) + "\n")
        if not changes:
            what = f"{host}: " if host else ""
            out.write(f"{what}no key changes at provider {p.name!r} "
                      f"({len(doc.capsuls)} capsul(s))\n")  # fmt: skip
    if failed is not None:
        raise type(failed)("cache refresh: not every provider could be fetched") from None
    return 0


def _refresh_files(
    p: config.ProviderConfig, store: cache.ProviderCache, hosts: list[str], out: TextIO
) -> SshpinError | None:
    """Refetch each host's signed key file; report changes; the first error, if any."""
    from sshpin.hostkeys import Request
    from sshpin.refresh import obtain_file

    failed: SshpinError | None = None
    for host in hosts:
        entry = store.read_host(host)
        before = {k.sha256() for k in entry.keys} if entry else set()
        try:
            request = Request("ORDER", host, host, None, None)
            fresh = obtain_file(p, store, request, entry, time.time(), warn, lambda m: None, True)
        except SshpinError as e:
            warn(f"cache refresh: {e}")
            failed = e
            continue
        after = {k.sha256() for k in fresh.keys}
        if before == after:
            out.write(f"{host}: no key changes at provider {p.name!r}\n")
        else:
            changes = [f"+{fp}" for fp in sorted(after - before)]
            changes += [f"-{fp}" for fp in sorted(before - after)]
            out.write(f"{host}: changed: {' '.join(changes)}\n")
    return failed


def _concerns(record: dict[str, Any], host: str, store: cache.ProviderCache | None) -> bool:
    if host in (record.get("capsul"), record.get("name")) or host in record.get("addresses", []):
        return True
    if store is not None:
        entry = store.read_host(host)
        return entry is not None and entry.capsul == record.get("capsul")
    return False


def _describe(r: dict[str, Any]) -> str:
    changes = [f"+{fp}" for fp in r.get("added", [])] + [f"-{fp}" for fp in r.get("removed", [])]
    name = f" ({r['name']})" if r.get("name") and r.get("name") != r.get("capsul") else ""
    return f"{r.get('time')}  {r.get('event')}  {r.get('capsul')}{name}  " + " ".join(changes)


def cmd_clear(token: str | None, out: TextIO) -> int:
    root = _cache_root()
    count = 0
    names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    provider_dirs = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if token is not None:
        host = _host_arg(token)
        for name in provider_dirs:
            store = cache.ProviderCache(root, name)
            count += store.drop_host(host)
            try:
                os.unlink(os.path.join(store.dir, "mismatch", host))
            except FileNotFoundError:
                pass
        out.write(f"cleared {count} cached entr{'y' if count == 1 else 'ies'} for {host}"
                  " (pins and history kept)\n")  # fmt: skip
        return 0
    for name in provider_dirs:
        store = cache.ProviderCache(root, name)
        count += store.drop_document()
        for host in store.hosts():
            count += store.drop_host(host)
        marks = os.path.join(store.dir, "mismatch")
        for mark in os.listdir(marks) if os.path.isdir(marks) else []:
            os.unlink(os.path.join(marks, mark))
    try:
        os.unlink(os.path.join(root, "config.marshal"))
    except FileNotFoundError:
        pass
    out.write(f"cleared {count} cached file(s) (pins and history kept)\n")
    return 0


def cmd_history(token: str | None, as_json: bool, out: TextIO) -> int:
    records = cache.read_history(_cache_root())
    if token is not None:
        host = _host_arg(token)
        records = [r for r in records if _concerns(r, host, None) or _cached_as(host, r)]
    if as_json:
        out.write(json.dumps(records, indent=2) + "\n")
    elif not records:
        out.write("no key changes recorded\n")
    else:
        for r in records:
            out.write(f"{_describe(r)}  [{r.get('provider')}: {r.get('source')}]\n")
    return 0


def _cached_as(host: str, record: dict[str, Any]) -> bool:
    provider = record.get("provider")
    if not isinstance(provider, str) or provider == "pin":
        return False
    try:
        entry = cache.ProviderCache(_cache_root(), provider).read_host(host)
    except (OSError, ValueError):
        return False
    return entry is not None and entry.capsul == record.get("capsul")


def cmd_pin(token: str, stdin: TextIO, out: TextIO) -> int:
    from sshpin.fingerprint import keygen_line, randomart

    host = _host_arg(token)
    text = stdin.read(pins.MAX_INPUT + 1)
    if len(text) > pins.MAX_INPUT:
        raise UsageError(f"pin {host}: more than 64 KiB on standard input")
    notes: list[str] = []
    keys = pins.parse_pasted(text, host, notes)
    for note in notes:
        warn(note)
    now = time.time()
    for key in keys:
        out.write(keygen_line(key, host) + "\n" + randomart(key) + "\n")
    old, backup = pins.write(host, keys, now)
    before = {k.sha256() for k in old.keys} if old else set()
    after = {k.sha256() for k in keys}
    if old is not None and before == after:
        out.write(f"{host}: already pinned to these keys\n")
        return 0
    event = "pinned" if old is None else "pin-changed"
    _history(cache.history_record(now, "pin", host, host, [], event, before, after, "pin"))
    out.write(f"{host}: pinned {len(keys)} key(s) in {pins.pins_dir()}")
    out.write(f" (previous pin kept in {backup})\n" if backup else "\n")
    _snippet(out)
    return 0


def _snippet(out: TextIO) -> None:
    """Keep the ssh snippet's block of pinned hosts in step (ssh must ask the hook for them)."""
    from sshpin.sshconfig import refresh_snippet, snippet_path

    try:
        changed = refresh_snippet()
    except SshpinError as e:
        warn(f"ssh snippet not updated: {e}")
        return
    if changed:
        out.write(f"updated {changed}\n")
    elif not os.path.exists(snippet_path()):
        out.write("note: run 'sshpin setup' so that ssh asks sshpin for this host's keys\n")


def _history(record: dict[str, object]) -> None:
    try:
        cache.append_history(_cache_root(), [record])
    except (OSError, SshpinError) as e:
        warn(f"history not written: {e}")


def cmd_unpin(token: str, out: TextIO) -> int:
    host = _host_arg(token)
    try:
        old = pins.read(host)
    except SshpinError:
        old = None
    backup = pins.remove(host)
    if backup is None:
        raise NoKeysError(f"unpin {host}: {host} is not pinned")
    removed = {k.sha256() for k in old.keys} if old else set()
    _history(cache.history_record(time.time(), "pin", host, host, [], "unpinned", removed,
                                  set(), "pin"))  # fmt: skip
    out.write(f"{host}: unpinned (the pin is kept in {backup})\n")
    _snippet(out)
    return 0


def cmd_fingerprints(token: str, md5: bool, out: TextIO) -> int:
    """As ``ssh-keygen -l [-E md5] -f`` over the known_hosts lines the hook prints for HOST."""
    from sshpin.fingerprint import keygen_line
    from sshpin.hostkeys import Request, lookup

    host = _host_arg(token)
    _, port = split_host(token)
    try:
        lines = lookup(Request("ORDER", token, host, port, None))
    except SshpinError as e:
        raise type(e)(f"fingerprints {token}: {e}") from None
    if not lines:
        raise NoKeysError(f"fingerprints {token}: no provider or pin vouches for {host}")
    from sshpin.keys import KEY_TYPES, SIGNING_KEY_TYPES, parse_line

    for line in lines:
        marker = line.startswith("@")
        parts = line.split(" ")
        key = parse_line(" ".join(parts[-2:]), SIGNING_KEY_TYPES if marker else KEY_TYPES)
        comment = " ".join(parts[:2]) if marker else parts[0]
        out.write(keygen_line(key, comment, md5) + "\n")
    return 0
