"""The lookup: given a host (and the key its server offered), the lines the user trusts, and why.

One code path for the hook, ``sshpin proxy``, ``cache show``, ``fingerprints`` and ``doctor``:

1. the user's pin for the host (a pin holding the offered key answers alone);
2. the first provider whose ``hosts`` cover the host; none: the host is not managed;
3. the cache's one answer for that provider (store/cachedir.py ``ask``): a hit is printed as it
   is, with nothing imported beyond the standard library;
4. otherwise the provider answers (providers/), fetching through trust/obtain.py when allowed,
   in a thread that the hook's deadline abandons wherever it waits (core/bounded.py).

The cached path imports only cheap standard-library modules; the providers registry (and with
it requests, cryptography, keyring where a fetch needs them) is imported only past a hit.
"""

import sys
import time

from sshpin.core import config
from sshpin.core.files import ensure_dir
from sshpin.core.names import Query
from sshpin.errors import ConfigError, SshpinError, log, say
from sshpin.store.entries import HIT, HostEntry, ask

__all__ = ["Answer", "Query", "lookup"]


class Answer:
    """What sshpin vouches for, for one host: the pin and the provider's entry, and why."""

    __slots__ = ("by_alias", "entry", "pin", "provider", "why")

    def __init__(
        self,
        why: str,
        pin: "HostEntry | None" = None,
        provider: str = "",
        entry: "HostEntry | None" = None,
    ) -> None:
        self.why = why
        self.pin = pin
        self.provider = provider  # the name of the provider that vouches, "" for none
        self.entry = entry
        self.by_alias = False  # answered for the host ``%k`` names, not for ``%H``

    def lines(self, token: str, offered: bytes | None = None) -> list[str]:
        """The known_hosts lines, host field ``token``: the pin's, then the provider's, then
        ``@revoked`` for ``offered`` (``%K``) when ``refuses`` it (core/offered.py)."""
        out = self.pin.lines(token) if self.pin else []
        if self.entry is not None:
            out += [line for line in self.entry.lines(token) if line not in out]
        if offered is not None and self.refuses(offered):
            from sshpin.core.offered import revoked_line

            out += revoked_line(offered, token, out)
        return out

    def refuses(self, offered: bytes) -> bool:
        """Do the pin or the provider vouch for plain keys of the host, not ``offered``?"""
        # Then ssh is told it is revoked: the provider's word (or the pin's) outranks a stale
        # line in the user's own known_hosts, which ssh would otherwise accept. Certificate
        # authorities alone vouch for no plain key (a CA says nothing of another sshd at the
        # name); nothing vouched, nothing refused.
        keys = (self.pin.keys if self.pin else []) + (self.entry.keys if self.entry else [])
        for key in keys:
            if key.blob == offered:
                return False
        return bool(keys)


def lookup(query: "Query", fetch: bool = True) -> "Answer":
    """The answer for ``query``. Without ``fetch``, from the cache alone (``cache show``).

    The host ``%k`` names (``query.alias``: the HostKeyAlias, or the name typed, as in ``Host
    capsul-x`` / ``HostName 203.0.113.7``) first: when a pin or a provider covers it, its
    answer stands, errors included. Otherwise the host of ``%H``.

    Raises SshpinError when a managed host has no authentic keys (and no pin to fall back on).
    """
    if query.alias:
        answer = _lookup(query.as_alias(), fetch)
        if answer.provider or answer.pin is not None:
            answer.by_alias = True
            return answer
    return _lookup(query, fetch)


def _lookup(query: "Query", fetch: bool) -> "Answer":
    pin = _pin(query.name)
    if pin is not None and query.want is not None and pin.has(query.want):
        log(query.token, "pinned")
        return Answer("pinned", pin)
    try:
        answer = _from_provider(query, fetch)
    except SshpinError as e:
        if pin is None:
            raise
        say(query.token, f"{e}; using the pin alone", e.hint)
        return Answer("pinned", pin)
    answer.pin = pin
    if pin is not None and answer.entry is None:
        answer.why = "pinned"
    return answer


def _pin(name: str) -> "HostEntry | None":
    """The user's pin for ``name``. The pin store is loaded only when a pins directory exists:
    most users pin nothing, and this runs on every ssh connection."""
    from sshpin.core import files

    if not files.isdir(files.join(config.config_dir(), "pins")):
        return None
    from sshpin.store import pins

    return pins.read(name)


def _from_provider(query: "Query", fetch: bool) -> "Answer":
    root = config.cache_dir()
    cached: str | None = root  # where the compiled config copy lives; None: no cache dir yet
    try:
        ensure_dir(root, create=fetch)
    except FileNotFoundError:
        cached = None  # nothing cached yet, and nothing to create without a fetch
    except OSError as e:
        raise ConfigError(f"cache dir {root}: {e.strerror or e}") from None
    cfg = _load_config(cached)
    if cfg is None:
        return Answer(f"no config file ({config.config_path()}): not managed")
    port = query.port
    provider, why, named = cfg.choose(query.host, port)
    if provider is None and named:
        log(query.token, f"{why}: not managed, left to your own known_hosts")
        return Answer(f"{why}: not managed, and it is not pinned")
    if provider is None:
        return Answer(f"{why}, and it is not pinned")
    trust = provider.get("trust")  # None for types that cache nothing: no entry is theirs
    if trust is not None:  # (one left by another type of the same name is not evidence)
        signed_only = bool(provider.get("signing_keys"))
        state, entry = ask(root, provider.name, query.host, provider.ttl, query.want,
                           time.time(), signed_only, trust)  # fmt: skip
        if state == HIT and entry is not None:
            log(query.token, f"cached ({entry.capsul}, {entry.rule})")
            return Answer(_why(entry), None, provider.name, entry)
    if fetch:
        full_environment()
    from sshpin.core.bounded import past_the_hit
    from sshpin.providers import for_config

    def answer(allowed: bool) -> "HostEntry | None":  # past the hit: bounded however it waits
        return for_config(provider, root).answer(query, allowed)

    entry = past_the_hit(answer, fetch, query.token)
    why = _why(entry) if entry is not None else "managed, but nothing is cached yet"
    return Answer(why, None, provider.name, entry)


def _why(entry: "HostEntry") -> str:
    if not entry.capsul:
        return f"vouched for by {entry.rule}"
    return f"resolved by {entry.rule} to {entry.capsul}"


def _load_config(root: str | None) -> "config.Config | None":
    """The compiled copy on a hit; the providers registry validates only a changed file."""
    return config.load(_validate, cache=root)


def _validate(table: dict[str, object]) -> dict[str, object]:
    from sshpin.providers import validate_table

    return validate_table(table)


def full_environment() -> None:
    """Make site-packages importable before the slow path imports requests and friends.

    The hook is started with ``-I -S`` (see launch.py): fast, but without site-packages.
    """
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
