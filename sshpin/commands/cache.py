"""``sshpin cache list|show|refresh|clear|history``: what is pinned, where it came from, since
when. Reads the cache the hook writes; changes it only where asked to (refresh, clear)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from sshpin.core import config
from sshpin.core.files import ensure_dir
from sshpin.core.names import Query
from sshpin.core.times import rfc3339
from sshpin.errors import EXIT_OK, NoKeysError, SshpinError, UsageError, say, terminal
from sshpin.lookup import lookup
from sshpin.providers import for_config, load_config, provider_for
from sshpin.providers.interface import Row
from sshpin.providers.pinned import PinProvider
from sshpin.store.cachedir import ProviderCache
from sshpin.store.entries import FUTURE_SKEW
from sshpin.store.history import read_history


def iso(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def cache_root() -> str:
    """The cache dir, refused (as the hook refuses it) if another user owns it or others may
    write to it: what such a cache says cannot be trusted, not even for display."""
    root = config.cache_dir()
    if os.path.lexists(root):
        ensure_dir(root, create=False)
    return root


def host_arg(text: str) -> Query:
    """A HOST argument as ssh writes it (``host`` or ``[host]:port``)."""
    try:
        return Query(text)
    except SshpinError:
        raise UsageError(f"{text[:60]!a} is not a host name or address") from None


def _caching(cfg: config.Config | None, root: str) -> list[Any]:
    providers = [for_config(p, root) for p in (cfg.providers if cfg else [])]
    return [p for p in providers if p.caches]


def rows() -> list[tuple[Row, dict[str, Any]]]:
    """Every cached capsul or host of every provider, and every pin, with its limits."""
    cfg = load_config()
    root = cache_root()
    now = time.time()
    out: list[tuple[Row, dict[str, Any]]] = []
    for provider in _caching(cfg, root):
        for row in provider.rows():
            fetched = row.entry.fetched_at
            fresh = fetched + provider.cfg.ttl
            stale = fresh + provider.cfg.stale_if_error
            row.state = _state(fetched, fresh, stale, now)
            out.append((row, {"fresh_until": iso(fresh), "stale_until": iso(stale)}))
    for row in PinProvider().rows():
        row.state = "pinned"
        out.append((row, {"fresh_until": None, "stale_until": None}))
    return out


def _state(fetched: float, fresh_until: float, stale_until: float, now: float) -> str:
    if fetched > now + FUTURE_SKEW:
        return "expired"  # fetched "in the future": the clock went back
    if now < fresh_until:
        return "fresh"
    return "stale" if now < stale_until else "expired"


def as_dict(row: Row, limits: dict[str, Any]) -> dict[str, Any]:
    e = row.entry
    return {
        "provider": row.provider,
        "source": e.source,
        "capsul": row.capsul or None,
        "names": row.names,
        "addresses": row.addresses,
        "keys": [{"type": k.key_type, "bits": k.bits(), "sha256": k.sha256()} for k in e.keys],
        "fetched_at": iso(e.fetched_at),
        **limits,
        "signed": e.signed,
        "state": row.state,
    }


def print_table(out: TextIO, header: list[str], table: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def cmd_list(as_json: bool, out: TextIO) -> int:
    found = rows()
    if as_json:
        out.write(json.dumps([as_dict(r, lim) for r, lim in found], indent=2) + "\n")
        return EXIT_OK
    if not found:
        out.write("nothing cached or pinned\n")
        return EXIT_OK
    table: list[list[str]] = []
    for r, lim in found:
        e = r.entry
        first = [
            r.provider, r.capsul or "-", ",".join(r.names + r.addresses) or "-",
            r.state, iso(e.fetched_at) or "-", lim["fresh_until"] or "-",
            lim["stale_until"] or "-", "yes" if e.signed else "no",
        ]  # fmt: skip
        for i, k in enumerate(e.keys or [None]):
            key = f"{k.type_label()} {k.sha256()}" if k else "(no usable key)"
            table.append((first if i == 0 else [""] * len(first)) + [key])
    header = ["PROVIDER", "CAPSUL", "NAMES", "STATE", "FETCHED", "FRESH UNTIL", "STALE UNTIL",
              "SIGNED", "KEY"]  # fmt: skip
    print_table(out, header, table)
    return EXIT_OK


def cmd_show(token: str, as_json: bool, out: TextIO) -> int:
    """Exactly what the hook would print now, before any refetch: the same lookup, no network."""
    query = host_arg(token)
    cache_root()
    answer = lookup(query, fetch=False)
    lines = answer.lines(token)
    e = answer.entry
    cfg = provider_for(load_config(), query.host, query.port)
    info: dict[str, Any] = {
        "host": query.host,
        "port": query.port,
        "provider": answer.provider or None,
        "ports": config.ports_text(cfg.ports) if cfg is not None else None,
        "why": answer.why,
        "pinned_at": iso(answer.pin.fetched_at) if answer.pin else None,
        "capsul": e.capsul or None if e else None,
        "rule": e.rule if e else None,
        "source": e.source if e else None,
        "fetched_at": iso(e.fetched_at) if e and e.fetched_at else None,
        "fresh_until": None,
        "stale_until": None,
        "signed": e.signed if e else None,
        "known_hosts": lines,
    }
    if e is not None and e.fetched_at and cfg is not None and "ttl_seconds" in cfg.data:
        info["fresh_until"] = iso(e.fetched_at + cfg.ttl)
        info["stale_until"] = iso(e.fetched_at + cfg.ttl + cfg.stale_if_error)
    if as_json:
        out.write(json.dumps(info, indent=2) + "\n")
    else:
        for name, value in info.items():
            if name != "known_hosts" and value is not None:
                out.write(f"{name.replace('_', ' ')}: {value}\n")
        out.write(f"known_hosts lines the hook prints for {token} "
                  f"(as of {iso(time.time())}, before any refetch):\n")  # fmt: skip
        out.write("".join(f"  {line}\n" for line in lines) or "  (none)\n")
    if not lines:
        raise NoKeysError(f"cache show {token}: no keys known: {answer.why}")
    return EXIT_OK


def cmd_refresh(token: str | None, out: TextIO) -> int:
    from sshpin.store import pins

    cfg = load_config()
    root = cache_root()
    targets = _caching(cfg, root)
    host = None
    if token is not None:
        query = host_arg(token)
        host = query.host
        chosen = provider_for(cfg, host, query.port)
        targets = [p for p in targets if chosen is not None and p.name == chosen.name]
        if not targets:
            if pins.read(query.name):
                out.write(f"{host}: pinned, and no provider vouches for it: nothing to fetch\n")
                return EXIT_OK
            raise NoKeysError(f"cache refresh {token}: no provider's hosts match it")
    elif not targets:
        raise NoKeysError("cache refresh: no provider to fetch from is configured")
    failed: SshpinError | None = None
    for p in targets:
        p.all_pages = host is None  # --all: every page of a paged listing
        p.progress = _progress(p.name) if host is None and sys.stderr.isatty() else None
        try:
            try:
                changes = p.refresh(host)
            finally:
                if p.progress is not None:
                    terminal("\n")
            if host is not None and p.answer(Query(host), fetch=False) is None:
                raise NoKeysError(f"{host}: provider {p.name!r} lists no such host")
        except SshpinError as e:
            if host is not None:  # one provider, one host: its error is the answer
                raise e.prefixed("cache refresh") from None
            say("cache refresh", str(e), e.hint)
            failed = e
            continue
        if host is not None:
            changes = [c for c in changes if _concerns(c, host, ProviderCache(root, p.name))]
        for c in changes:
            out.write(describe(c) + "\n")
        if not changes:
            what = f"{host}: " if host else ""
            out.write(f"{what}no key changes at provider {p.name!r}\n")
    if failed is not None:
        raise type(failed)("cache refresh: not every provider could be fetched") from None
    return EXIT_OK


def _progress(name: str) -> Callable[[int, int], None]:
    """Pages and capsuls fetched so far, on one rewritten stderr line (a terminal only)."""

    def show(pages: int, capsuls: int) -> None:
        terminal(f"\rsshpin: cache refresh: provider {name!r}: page {pages}, {capsuls} capsuls "
                 "verified")  # fmt: skip

    return show


def _concerns(record: dict[str, Any], host: str, store: ProviderCache | None) -> bool:
    if host in (record.get("capsul"), record.get("name")) or host in record.get("addresses", []):
        return True
    if store is not None:
        entry = store.read_host(host)
        return entry is not None and entry.capsul == record.get("capsul")
    return False


def describe(r: dict[str, Any]) -> str:
    changes = [f"+{fp}" for fp in r.get("added", [])] + [f"-{fp}" for fp in r.get("removed", [])]
    name = f" ({r['name']})" if r.get("name") and r.get("name") != r.get("capsul") else ""
    return f"{r.get('time')}  {r.get('event')}  {r.get('capsul')}{name}  " + " ".join(changes)


def cmd_clear(token: str | None, out: TextIO) -> int:
    root = cache_root()
    count = 0
    names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    provider_dirs = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if token is not None:
        host = host_arg(token).host
        for name in provider_dirs:
            store = ProviderCache(root, name)
            count += store.drop_host(host)
            try:
                os.unlink(os.path.join(store.dir, "mismatch", host))
            except FileNotFoundError:
                pass
        out.write(f"cleared {count} cached entr{'y' if count == 1 else 'ies'} for {host}"
                  " (pins and history kept)\n")  # fmt: skip
        return EXIT_OK
    for name in provider_dirs:
        store = ProviderCache(root, name)
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
    return EXIT_OK


def cmd_history(token: str | None, as_json: bool, out: TextIO) -> int:
    root = cache_root()
    records = read_history(root)
    if token is not None:
        host = host_arg(token).host
        records = [r for r in records if _concerns(r, host, None) or _cached_as(root, host, r)]
    if as_json:
        out.write(json.dumps(records, indent=2) + "\n")
    elif not records:
        out.write("no key changes recorded\n")
    else:
        for r in records:
            out.write(f"{describe(r)}  [{r.get('provider')}: {r.get('source')}]\n")
    return EXIT_OK


def _cached_as(root: str, host: str, record: dict[str, Any]) -> bool:
    provider = record.get("provider")
    if not isinstance(provider, str) or provider == "pin":
        return False
    try:
        entry = ProviderCache(root, provider).read_host(host)
    except (OSError, ValueError):
        return False
    return entry is not None and entry.capsul == record.get("capsul")
