"""Command line: argument parsing and dispatch, every command module imported lazily.

``known-hosts`` is dispatched before argparse is imported (argparse costs about 8 ms of
imports here, close to the whole budget of a cached hit).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    import argparse

HOOK_HELP = """\
usage: sshpin [-v] known-hosts REASON HOST [TYPE KEY]

The OpenSSH KnownHostsCommand hook. In ssh_config:
    KnownHostsCommand /path/to/sshpin known-hosts %I %H %t %K

Prints known_hosts lines with the authentic keys of HOST when a configured provider vouches
for it, nothing for any other host. Exits 0 except for a malformed command line (1).
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    verbose = False
    if args[:1] == ["-v"]:
        verbose, args = True, args[1:]
    if args[:1] == ["known-hosts"]:
        if args[1:2] in (["-h"], ["--help"]):
            sys.stdout.write(HOOK_HELP)
            return 0
        from sshpin.hostkeys import main as hook

        return hook(args[1:], verbose)
    return _run(args, verbose)


def _run(args: list[str], verbose: bool) -> int:
    from sshpin.errors import SshpinError

    parser = build_parser()
    ns = parser.parse_args(args)
    ns.verbose = ns.verbose or verbose
    if not getattr(ns, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(ns.func(ns))
    except SshpinError as e:
        sys.stderr.write(f"sshpin: {e}\n")
        return e.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("sshpin: interrupted\n")
        return 130


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from sshpin import __version__

    parser = argparse.ArgumentParser(
        prog="sshpin",
        description="Authentic host keys for stock OpenSSH: no trust on first use.",
        epilog="Exit status: 0 ok, 1 usage or config error, 2 no authentic keys, "
        "3 provider or network error. See sshpin(1) and sshpin.conf(5).",
    )
    parser.add_argument("--version", action="version", version=f"sshpin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser(
        "known-hosts",
        help="the KnownHostsCommand hook: print authentic known_hosts lines",
        description="Run by ssh as: KnownHostsCommand sshpin known-hosts %%I %%H %%t %%K",
    )
    p.add_argument("reason", metavar="REASON", help="ORDER, HOSTNAME or ADDRESS (%%I)")
    p.add_argument("host", metavar="HOST", help="the host being checked (%%H)")
    p.add_argument("key_type", metavar="TYPE", nargs="?", help="the server key's type (%%t)")
    p.add_argument("key", metavar="KEY", nargs="?", help="the server key, base64 (%%K)")

    p = sub.add_parser(
        "demo",
        help="show sshpin at work on a throwaway sshd and a built-in local provider",
        description="Starts the reference capsul provider and a throwaway sshd on 127.0.0.1, "
        "connects with real ssh through the hook, and shows what is refused and cached.",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(ns: argparse.Namespace) -> int:
    from sshpin.demo import run

    return run(verbose=ns.verbose)
