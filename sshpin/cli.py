"""Command line: argument parsing and dispatch, every command module imported lazily.

``known-hosts`` is dispatched before argparse is imported (argparse costs about 8 ms of
imports here, close to the whole budget of a cached hit).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn


def main(argv: list[str] | None = None) -> int:
    from sshpin.errors import set_verbose

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["-v"]:
        set_verbose(True)
        args = args[1:]
    if args[:1] == ["known-hosts"]:  # every ssh connection: no argparse, nothing but the hook
        from sshpin.hook import main as hook

        return hook(args[1:])
    if args[:1] == ["ssh"]:  # ssh's own options must reach ssh untouched by argparse
        return ssh_main(args[1:])
    if args[:1] == ["proxy"] and args[1:2] not in (["-h"], ["--help"]):
        return _proxy(args[1:])  # run by ssh on every connection: no argparse
    if args[:1] == ["complete"]:  # hidden: names for the shell completion scripts
        from sshpin.commands.complete import main as complete

        return complete(args[1:])
    return _run(args)


def _proxy(args: list[str]) -> int:
    from sshpin.errors import EXIT_USAGE, SshpinError, report, say

    if len(args) not in (2, 3):
        say("proxy", "usage: sshpin proxy HOST PORT [ALIAS]   (ProxyCommand ... %h %p %k)")
        return EXIT_USAGE
    from sshpin.commands.proxy import main as proxy

    try:
        return proxy(*args)
    except SshpinError as e:
        return report(e)


def ssh_main(argv: list[str] | None = None) -> int:
    """``sshpin ssh`` and the ``sshpin-ssh`` program (for ``scp -S``, which takes no arguments)."""
    from sshpin.commands.ssh import run

    return run(sys.argv[1:] if argv is None else argv)


def _run(args: list[str]) -> int:
    import os

    from sshpin.errors import (
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_USAGE,
        SshpinError,
        report,
        say,
        set_verbose,
    )
    from sshpin.lookup import full_environment

    full_environment()  # when started through launch.py: the commands need site-packages

    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.verbose:
        set_verbose(True)
    if not getattr(ns, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(ns.func(ns))
    except SshpinError as e:
        return report(e)
    except KeyboardInterrupt:
        say("", "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (sshpin cache list | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from sshpin import __version__

    class Parser(argparse.ArgumentParser):
        """argparse exits 2 on a usage error; for sshpin 2 means "no authentic keys"."""

        def error(self, message: str) -> NoReturn:
            self.print_usage(sys.stderr)
            from sshpin.errors import say

            command = self.prog.removeprefix("sshpin").strip()
            say(command, message)
            raise SystemExit(1)

    parser = Parser(
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
        "ssh",
        help="run ssh with sshpin's hook and strict checking injected (no config edit)",
        description="Everything after 'ssh' goes to OpenSSH's ssh unchanged. "
        "See: sshpin ssh --help",
        add_help=False,
    )
    p.add_argument("ssh_args", metavar="SSH-ARGUMENTS", nargs="*")

    p = sub.add_parser(
        "proxy",
        help="ProxyCommand: resolve a capsul id to its address, pin its keys, relay bytes",
        description="Run by ssh as: ProxyCommand sshpin proxy %h %p %k. Resolves capsul ids "
        "and aliases through the provider, writes the host's authentic keys to sshpin's "
        "managed known_hosts file, connects, and relays until the server closes.",
    )
    p.add_argument("host", metavar="HOST", help="the host to connect to (%%h)")
    p.add_argument("port", metavar="PORT", help="the port (%%p)")
    p.add_argument(
        "alias",
        metavar="ALIAS",
        nargs="?",
        help="the HostKeyAlias, else the host as typed (%%k): resolved first",
    )

    p = sub.add_parser(
        "setup",
        help="hand the configured hosts to sshpin in ~/.ssh/config (idempotent, with backups)",
        description="Writes the ssh snippet next to the config and one Include line at the top "
        "of the ssh config; with --provider, first adds a capsul provider to the config. "
        "Running it again changes nothing; every changed file is backed up first.",
    )
    p.add_argument("--provider", metavar="NAME", help="add (or keep) a capsul provider NAME")
    p.add_argument("--api-url", metavar="URL", help="the provider's API base URL (https://)")
    p.add_argument(
        "--hosts",
        metavar="PATTERN",
        nargs="+",
        action="extend",
        help="hosts the new provider vouches for (default: capsul-*); repeated, they add up",
    )
    p.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="the CA certificates (PEM) the new provider's TLS certificate chains to, for a "
        "private provider (default: the system's)",
    )
    p.add_argument(
        "--ssh-config",
        metavar="FILE",
        help="the ssh config to add the Include to (default: ~/.ssh/config)",
    )
    p.add_argument(
        "--undo",
        action="store_true",
        help="remove what setup added: the Include, the snippet, unedited provider tables",
    )
    p.add_argument(
        "--legacy",
        action="store_true",
        help="for OpenSSH before 8.5: ProxyCommand and a managed known_hosts file",
    )
    p.set_defaults(func=_cmd_setup)

    p = sub.add_parser(
        "doctor",
        help="check OpenSSH, the config, the Include, each provider and the cache",
        description="One line per check with ok or FAIL and the fix. Exits 0 only when "
        "every check passes.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--ssh-config", metavar="FILE", help="the ssh config to check")
    p.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the providers (CA key files are still read)",
    )
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser(
        "login",
        help="store a provider's API token in the OS keyring, after checking it",
        description="Reads the token with no echo on a terminal, else one line of standard "
        "input; checks it against the provider; stores it in the OS keyring.",
    )
    p.add_argument("name", metavar="NAME", help="the provider's name in the config")
    p.set_defaults(func=_cmd_login)

    p = sub.add_parser(
        "logout",
        help="remove a provider's API token from the OS keyring",
        description="Removes the token 'sshpin login NAME' stored. Exits 0 if none was stored.",
    )
    p.add_argument("name", metavar="NAME", help="the provider's name in the config")
    p.set_defaults(func=_cmd_logout)

    p = sub.add_parser(
        "cache",
        help="see and manage what is cached: list, show, refresh, clear, history",
        description="Inspect and manage the cache of provider keys. Pins and history are "
        "user data: 'cache clear' never removes them.",
    )
    cache_sub = p.add_subparsers(title="cache commands", metavar="ACTION")
    p.set_defaults(func=lambda ns: _missing_action("cache"))
    q = cache_sub.add_parser(
        "list",
        help="one row per cached capsul and pinned host",
        description="Provider, capsul, names and addresses, state, fetch time, fresh and "
        "stale limits, signature, and each key's SHA256 fingerprint.",
    )
    q.add_argument("--json", action="store_true", help="print JSON (fields in sshpin(1))")
    q.set_defaults(func=lambda ns: _inspect("list", ns))
    q = cache_sub.add_parser(
        "show",
        help="everything known about one host, and the lines the hook prints for it",
        description="Which pin or provider vouches for HOST, how it was resolved, when it "
        "was fetched, and exactly the known_hosts lines the hook prints. No network.",
    )
    q.add_argument("host", metavar="HOST")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=lambda ns: _inspect("show", ns))
    q = cache_sub.add_parser(
        "refresh",
        help="fetch now from the provider of HOST (or every provider) and report changes",
        description="Fetches now, stores the result, records and reports key changes. The "
        "listing is built aside and swapped in at once: ssh never waits on a refresh.",
    )
    _host_or_all(q)
    q.set_defaults(func=lambda ns: _inspect("refresh", ns))
    q = cache_sub.add_parser(
        "clear",
        help="drop the cached entries of HOST (or all); never pins, never history",
        description="Drops cached entries; the next ssh connection fetches again.",
    )
    _host_or_all(q)
    q.set_defaults(func=lambda ns: _inspect("clear", ns))
    q = cache_sub.add_parser(
        "history",
        help="every recorded change of a key set (of HOST, if given)",
        description="The append-only record of key-set changes: time, event, capsul, "
        "added (+) and removed (-) fingerprints, provider and source.",
    )
    q.add_argument("host", metavar="HOST", nargs="?")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=lambda ns: _inspect("history", ns))

    p = sub.add_parser(
        "pin",
        help="pin HOST to keys pasted on stdin (.pub or known_hosts lines)",
        description="Reads HOST's public host keys from standard input (at a terminal, it "
        "asks for them: paste, then Ctrl-D), shows each key's "
        "fingerprint and visual host key (as ssh-keygen -lv), and stores them. The hook then "
        "vouches for them like a provider's keys.",
    )
    p.add_argument("host", metavar="HOST")
    p.set_defaults(func=lambda ns: _inspect("pin", ns))
    p = sub.add_parser(
        "unpin",
        help="remove HOST's pin (a backup is kept)",
        description="Removes the pin; a copy is kept in the pins directory's .backup.",
    )
    p.add_argument("host", metavar="HOST")
    p.set_defaults(func=lambda ns: _inspect("unpin", ns))
    p = sub.add_parser(
        "fingerprints",
        help="the fingerprints of HOST's authentic keys, as ssh-keygen -l prints them",
        description="Prints, for the keys the hook vouches for, what ssh-keygen -l -f prints "
        "for the same known_hosts lines; fetches if needed.",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--md5", action="store_true", help="MD5 fingerprints (as ssh-keygen -E md5)")
    p.set_defaults(func=lambda ns: _inspect("fingerprints", ns))

    p = sub.add_parser(
        "provider",
        help="for providers' engineers: check a live provider against the API spec",
        description="Checks a provider as sshpin would use it, one line per check with what "
        "to fix. The token comes from SSHPIN_TOKEN or one line of standard input, never from "
        "the command line.",
    )
    provider_sub = p.add_subparsers(title="provider commands", metavar="ACTION")
    p.set_defaults(func=lambda ns: _missing_action("provider"))
    q = provider_sub.add_parser(
        "check",
        help="check URL (the API base) or, with --url, one host's signed key file",
        description="Checks auth, status, Content-Type, size, the JSON schema, every key, "
        "the signature, the bindings and times, ETag/304, ?host=, paging and speed. A failed "
        "MUST of docs/provider-api.md prints FAIL and exits 3; a failed SHOULD (ETag/304, the "
        "?host= filter, speed) prints warn and exits 0, unless --strict.",
    )
    q.add_argument("target", metavar="URL|HOST", help="the API base URL; with --url, the HOST")
    q.add_argument("--url", metavar="TEMPLATE", help="a type = url template with {host}")
    q.add_argument("--signing-key", metavar="KEY", action="append", default=[],
                   help="a signing key (.pub line) to check signatures; repeatable")  # fmt: skip
    q.add_argument("--signing-key-file", metavar="FILE", action="append", default=[],
                   help="a .pub file holding a signing key; repeatable")  # fmt: skip
    q.add_argument("--ca-bundle", metavar="FILE", default="", help="an extra CA file")
    q.add_argument("--public", action="store_true", help="the listing is public on purpose")
    q.add_argument("--json", action="store_true", help="print the checks as JSON, with levels")
    q.add_argument("--strict", action="store_true", help="a failed SHOULD fails too (exit 3)")
    q.set_defaults(func=_cmd_provider_check)

    p = sub.add_parser(
        "publish",
        help="for operators: write signed host keys as static files (no service needed)",
        description="From --keys-dir DIR (DIR/<host>/ssh_host_*_key.pub) or --inventory FILE, "
        "writes OUT/capsuls (the v1 document) with capsuls.sig, and OUT/hostkeys/<host>.pub "
        "with .sig, signed with ssh-keygen -Y sign; OUT is replaced whole, never half-signed.",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--keys-dir", metavar="DIR", help="<host>/ssh_host_*_key.pub files")
    group.add_argument("--inventory", metavar="FILE", help="an inventory JSON (see sshpin(1))")
    p.add_argument("--account", metavar="NAME", help="the account the document names")
    p.add_argument("--api-url", metavar="URL", help="the API base URL the document binds to")
    p.add_argument("--out", metavar="DIR", required=True, help="the directory to write")
    p.add_argument("--sign-key", metavar="FILE", required=True,
                   help="a private key file, or a .pub whose key is in ssh-agent")  # fmt: skip
    p.add_argument("--days", metavar="N", type=int, default=7,
                   help="days until the statements expire (1-30, default 7)")  # fmt: skip
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser(
        "export",
        help="write a known_hosts file for HOST... (or every cached host) for other clients",
        description="Writes FILE atomically with the known_hosts lines sshpin vouches for "
        "(keys, @cert-authority and @revoked lines), for clients that read a file instead of "
        "running the hook. Every run rewrites it whole: lines the cache no longer vouches for "
        "are dropped. Run it from a timer, or with --watch.",
    )
    p.add_argument("hosts", metavar="HOST", nargs="*", help="host or [host]:port, as ssh writes it")
    p.add_argument("--all", action="store_true", help="every cached host and pin")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="the file to write")
    p.add_argument(
        "--watch",
        metavar="SECONDS",
        type=float,
        help="keep running: rewrite every SECONDS (sooner when a line's limit comes first)",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "demo",
        help="show sshpin at work on a throwaway sshd and a built-in local provider",
        description="Starts the reference capsul provider and a throwaway sshd on 127.0.0.1, "
        "connects with real ssh through the hook, and shows what is refused and cached.",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_provider_check(ns: argparse.Namespace) -> int:
    from sshpin.commands.provider import cmd_check

    return cmd_check(ns.target, ns.url, ns.signing_key, ns.signing_key_file, ns.ca_bundle,
                     ns.public, ns.json, ns.strict)  # fmt: skip


def _cmd_publish(ns: argparse.Namespace) -> int:
    from sshpin.commands.provider import cmd_publish

    return cmd_publish(ns.keys_dir, ns.inventory, ns.account, ns.api_url, ns.out, ns.sign_key,
                       ns.days)  # fmt: skip


def _cmd_export(ns: argparse.Namespace) -> int:
    from sshpin.commands.export import cmd_export

    return cmd_export(ns.hosts, ns.all, ns.output, ns.watch, sys.stdout)


def _cmd_demo(ns: argparse.Namespace) -> int:
    from sshpin.commands.demo import run

    return run()


def _ssh_config(ns: argparse.Namespace) -> tuple[str, bool]:
    from sshpin.commands.snippet import default_ssh_config

    return (ns.ssh_config, True) if ns.ssh_config else (default_ssh_config(), False)


def _cmd_setup(ns: argparse.Namespace) -> int:
    from sshpin.commands.setup import cmd_setup

    path, _ = _ssh_config(ns)
    return cmd_setup(path, ns.undo, ns.provider, ns.api_url, ns.hosts, ns.legacy, ns.ca_bundle,
                     sys.stdout)  # fmt: skip


def _cmd_doctor(ns: argparse.Namespace) -> int:
    from sshpin.commands.doctor import cmd_doctor

    path, explicit = _ssh_config(ns)
    return cmd_doctor(path, explicit, ns.offline, ns.json, sys.stdout)


def _cmd_login(ns: argparse.Namespace) -> int:
    from sshpin.commands.login import cmd_login

    return cmd_login(ns.name)


def _cmd_logout(ns: argparse.Namespace) -> int:
    from sshpin.commands.login import cmd_logout

    return cmd_logout(ns.name)


def _host_or_all(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("host", metavar="HOST", nargs="?")
    group.add_argument("--all", action="store_true", help="every cached host")


def _missing_action(command: str) -> int:
    from sshpin.errors import UsageError

    actions = {"cache": "list, show, refresh, clear or history", "provider": "check"}
    raise UsageError(f"{command}: give an action: {actions[command]}")


def _inspect(action: str, ns: argparse.Namespace) -> int:
    from sshpin.commands import cache

    out = sys.stdout
    if action == "list":
        return cache.cmd_list(ns.json, out)
    if action == "show":
        return cache.cmd_show(ns.host, ns.json, out)
    if action == "refresh":
        return cache.cmd_refresh(ns.host, out)
    if action == "clear":
        return cache.cmd_clear(ns.host, out)
    if action == "history":
        return cache.cmd_history(ns.host, ns.json, out)
    if action == "pin":
        from sshpin.commands.pin import cmd_pin

        return cmd_pin(ns.host, sys.stdin, out)
    if action == "unpin":
        from sshpin.commands.pin import cmd_unpin

        return cmd_unpin(ns.host, out)
    from sshpin.commands.fingerprints import cmd_fingerprints

    return cmd_fingerprints(ns.host, ns.md5, out)
