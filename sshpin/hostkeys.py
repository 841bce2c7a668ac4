"""``sshpin known-hosts REASON HOST [TYPE KEY]``: the KnownHostsCommand hook (DESIGN.md 1).

Rules, from how ssh uses the hook:
- stdout carries only known_hosts lines, each rebuilt from parsed key bytes;
- an unmanaged host: nothing printed, exit 0, no network, no lock;
- a managed host with no authentic keys: one line on stderr, nothing printed, exit 0 (ssh then
  falls back to the user's own known_hosts; a non-zero exit would lock them out);
- exit 1 only for a malformed command line, a configuration bug to surface at once.

The cached path imports only cheap standard-library modules; ``refresh`` (and with it
requests, cryptography, keyring) is imported only when keys must be fetched.
"""

from __future__ import annotations

import os
import sys
import time

from sshpin import cache, config, pins
from sshpin.errors import (
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    SshpinError,
    UsageError,
    VerificationError,
)
from sshpin.keys import SIGNING_KEY_TYPES, HostKey, decode_base64, parse_key_lines, parse_line
from sshpin.resolve import hosts_match, split_host

REASONS = ("ORDER", "HOSTNAME", "ADDRESS")
USAGE = "usage: sshpin known-hosts REASON HOST [TYPE KEY]   (REASON: ORDER, HOSTNAME, ADDRESS)"
_verbose = False


def log(message: str) -> None:
    if _verbose:
        sys.stderr.write(f"sshpin: {message}\n")


def say(message: str) -> None:
    sys.stderr.write(f"sshpin: {message}\n")


class Request:
    """A parsed hook invocation."""

    __slots__ = ("host", "port", "reason", "token", "want")

    def __init__(self, reason: str, token: str, host: str, port: int | None, want: bytes | None):
        self.reason = reason
        self.token = token  # %H exactly as ssh gave it: the host field of every line we print
        self.host = host  # lower case, port stripped: what we resolve and cache by
        self.port = port
        self.want = want  # the key blob the server presented (%K), None for ORDER calls


def parse_args(args: list[str]) -> Request:
    """Strictly parse ssh's ``%I %H [%t %K]``; raise UsageError for anything else."""
    if len(args) not in (2, 4):
        raise UsageError(USAGE)
    reason, token = args[0], args[1]
    if reason not in REASONS:
        raise UsageError(f"unknown REASON {reason[:20]!a}: expected ORDER, HOSTNAME or ADDRESS")
    host, port = split_host(token)
    want: bytes | None = None
    if len(args) == 4 and (args[2], args[3]) != ("NONE", "NONE"):
        key_type, text = args[2], args[3]
        try:
            want = decode_base64(text)
        except ValueError:
            raise UsageError(f"KEY for {token} is not base64") from None
        embedded = want[4 : 4 + int.from_bytes(want[:4], "big")] if len(want) >= 4 else b""
        if embedded != key_type.encode("ascii", "replace"):
            raise UsageError(f"TYPE {key_type[:40]!a} does not match the KEY given")
        if key_type.endswith("-cert-v01@openssh.com"):
            want = None  # a host certificate: checked by ssh against @cert-authority lines
    return Request(reason, token, host, port, want)


def main(args: list[str], verbose: bool = False) -> int:
    global _verbose
    _verbose = verbose
    try:
        request = parse_args(args)
    except UsageError as e:
        say(f"known-hosts: {e}")
        return EXIT_USAGE
    try:
        lines = lookup(request)
    except SshpinError as e:
        say(f"{request.token}: {e}")
        return EXIT_OK
    except Exception as e:  # fail closed, never a traceback in the middle of ssh's output
        say(f"{request.token}: internal error ({type(e).__name__}); no keys vouched for")
        log(repr(e))
        return EXIT_OK
    if lines:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    return EXIT_OK


def lookup(request: Request) -> list[str]:
    """The known_hosts lines for a request: the host's pin first, then its provider's keys."""
    pin = pins.read(request.host)
    if pin is None:
        return _from_provider(request)
    lines = pin.lines(request.token)
    if request.want is not None and pin.has(request.want):
        log(f"{request.host}: pinned")
        return lines  # the key is vouched for: no provider needed
    try:
        more = _from_provider(request)
    except SshpinError as e:
        say(f"{request.token}: {e}; using the pin alone")
        return lines
    return lines + [line for line in more if line not in lines]


def _from_provider(request: Request) -> list[str]:
    root = config.cache_dir()
    try:
        cache.ensure_dir(root)
    except OSError as e:
        raise ConfigError(f"cache dir {root}: {e.strerror or e}") from None
    cfg = config.load(cache=root)
    if cfg is None:
        log(f"no config file ({config.config_path()}): {request.host} is not managed")
        return []
    provider = next((p for p in cfg.providers if hosts_match(p.hosts, request.host)), None)
    if provider is None:
        log(f"{request.host}: no provider's hosts match: not managed")
        return []
    if provider.type == "cert-authority":
        notes: list[str] = []
        authorities = ca_keys(provider, notes)
        for note in notes:
            log(note)
        lines = [k.known_hosts_line(request.token, "@cert-authority") for k in authorities]
        revoked = [parse_line(line, SIGNING_KEY_TYPES) for line in provider.get("revoked_keys")]
        return lines + [k.known_hosts_line(request.token, "@revoked") for k in revoked]
    store = cache.ProviderCache(root, provider.name)
    entry = store.read_host(request.host)
    now = time.time()
    if entry is not None and provider.get("signing_keys") and not entry.signed:
        entry = None  # signing_keys were added since: unsigned keys are not good enough now
    by_document = provider.type != "url"  # a url provider's entry is its own fetched file
    if (
        entry is not None
        and _fresh(entry, store, provider.ttl, now, by_document)
        and entry.has(request.want)
    ):
        log(f"{request.host}: cached ({entry.capsul}, {entry.rule})")
        return entry.lines(request.token)
    full_environment()
    if not by_document:
        from sshpin.refresh import obtain_file

        return obtain_file(provider, store, request, entry, now, say, log).lines(request.token)
    from sshpin.refresh import _usable, obtain

    try:
        return obtain(provider, store, request, entry, now, say, log).lines(request.token)
    except SshpinError as e:
        # No keys to vouch for; a revocation the provider published still stands.
        doc = _usable(provider, store.read_document())
        if doc is None or not doc.revoked:
            raise
        say(f"{request.token}: {e}")
        return [k.known_hosts_line(request.token, "@revoked") for k in doc.revoked]


def full_environment() -> None:
    """Make site-packages importable before the slow path imports requests and friends.

    The hook is started with ``-I -S`` (see launch.py): fast, but without site-packages.
    """
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def _fresh(
    entry: cache.HostEntry,
    store: cache.ProviderCache,
    ttl: float,
    now: float,
    by_document: bool = True,
) -> bool:
    if cache.age(entry.fetched_at, now) >= ttl:
        return False
    if not by_document:
        return True
    try:
        # The document is rewritten (its mtime set to its fetch time) on every fetch; an
        # entry derived from an older document may list keys the provider has since dropped.
        return os.stat(store.document_path).st_mtime <= entry.fetched_at + 0.001
    except OSError:
        return False


def ca_keys(provider: config.ProviderConfig, notes: list[str] | None = None) -> list[HostKey]:
    """A cert-authority provider's keys: inline ``ca_keys`` then each of ``ca_key_files``.

    A line of a key type sshpin cannot use is skipped, with a note in ``notes`` naming the
    file, line and type (fewer CAs is safe: ssh then trusts fewer certificates); anything
    malformed is an error naming the file and line.
    """
    keys = [parse_line(line, SIGNING_KEY_TYPES) for line in provider.get("ca_keys")]
    skipped: list[str] = []
    for path in provider.get("ca_key_files"):
        found: list[str] = []
        try:
            text = _read_ca_file(provider.name, path)
            keys += parse_key_lines(text, True, found, SIGNING_KEY_TYPES)
        except VerificationError as e:
            raise ConfigError(f"provider {provider.name!r}: CA key file {path}: {e}") from None
        skipped += [f"CA key file {path}: {note}" for note in found]
    if notes is not None:
        notes += [f"provider {provider.name!r}: {note}" for note in skipped]
    if not keys:
        why = f" ({skipped[0]})" if skipped else ""
        raise ConfigError(f"provider {provider.name!r}: no usable CA key{why}")
    return keys


def _read_ca_file(provider: str, path: str) -> str:
    """A CA key file, refused (like the config) if others could have written it."""
    try:
        with open(path, "rb") as f:
            config.check_file_safe(path, os.fstat(f.fileno()), "CA key file")
            return f.read(65536).decode("utf-8", "replace")
    except OSError as e:
        raise ConfigError(
            f"provider {provider!r}: cannot read CA key file {path}: {e.strerror}"
        ) from None
