"""``sshpin complete providers|hosts|pins``: names for the shell completion scripts.

Hidden (not in ``--help``): run by contrib/completion/sshpin.bash and _sshpin on every TAB. It
reads local files only (the compiled config, the cache's host entries, the pins directory),
never the network, and prints one name per line. A broken config, a missing directory or any
other trouble completes nothing rather than printing an error into the user's command line.
"""

from __future__ import annotations

import os
import sys

from sshpin.errors import EXIT_OK, EXIT_USAGE, say

WHAT = ("providers", "hosts", "pins")


def providers() -> list[str]:
    from sshpin.providers import load_config

    cfg = load_config()
    return [p.name for p in cfg.providers] if cfg is not None else []


def _listdir(path: str) -> list[str]:
    try:
        return [n for n in os.listdir(path) if not n.startswith(".")]
    except OSError:
        return []


def pins() -> list[str]:
    from sshpin.store.pins import pins_dir

    return _listdir(pins_dir())


def hosts() -> list[str]:
    """Every cached host (``<cache>/<provider>/hosts/<host>``) and every pinned host."""
    from sshpin.core.config import cache_dir

    root = cache_dir()
    found = set(pins())
    for provider in _listdir(root):
        found.update(_listdir(os.path.join(root, provider, "hosts")))
    return sorted(found)


def main(args: list[str]) -> int:
    if len(args) != 1 or args[0] not in WHAT:
        say("complete", f"usage: sshpin complete {'|'.join(WHAT)}")
        return EXIT_USAGE
    try:
        names = {"providers": providers, "hosts": hosts, "pins": pins}[args[0]]()
    except Exception:  # a TAB press must never print a traceback
        return EXIT_OK
    sys.stdout.write("".join(n + "\n" for n in sorted(names) if n.isprintable() and " " not in n))
    return EXIT_OK
