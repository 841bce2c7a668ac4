"""``sshpin ssh ARGS...`` and ``sshpin-ssh``: ssh with the hook injected, and no config edit."""

from __future__ import annotations

import os
import shutil
import sys

from sshpin.commands.snippet import hook_command, hook_line
from sshpin.errors import EXIT_OK, EXIT_USAGE, say

HELP = """\
usage: sshpin ssh [SSH-ARGUMENTS...]
       sshpin-ssh [SSH-ARGUMENTS...]

Runs OpenSSH's ssh with sshpin's hook given first with -o, so that it wins over any other
setting, and with no edit of ~/.ssh/config:
    ssh -o 'KnownHostsCommand=/path/to/sshpin known-hosts %I %H %t %K %k %p' \\
        -o StrictHostKeyChecking=yes SSH-ARGUMENTS...
StrictHostKeyChecking=yes is given only when sshpin vouches for the host (a provider's hosts
and ports, or a pin, cover it, as ssh -G SSH-ARGUMENTS resolves it); any other host is left to
your ssh config, as plain ssh would (ask, accept-new, ...).
For other tools:  rsync -e 'sshpin ssh' ...   scp -S sshpin-ssh ...   sftp -S sshpin-ssh ...
                  GIT_SSH_COMMAND='sshpin ssh' git ...
"""


def run(args: list[str]) -> int:
    if args[:1] == ["--help"]:
        sys.stdout.write(HELP)
        return EXIT_OK
    ssh = shutil.which("ssh")
    if not ssh:
        say("ssh", "OpenSSH's ssh is not on PATH", "install openssh-client")
        return EXIT_USAGE
    strict = ["-o", "StrictHostKeyChecking=yes"] if managed(ssh, args) else []
    argv = [ssh, "-o", f"KnownHostsCommand={hook_line(hook_command())}", *strict, *args]
    try:
        os.execv(ssh, argv)  # noqa: S606 - argv, no shell: the user's ssh arguments verbatim
    except OSError as e:
        say("ssh", f"cannot run {ssh}: {e.strerror}")
    return EXIT_USAGE


def managed(ssh: str, args: list[str]) -> bool:
    """Does sshpin vouch for the host these ssh arguments connect to? ssh itself says which
    host that is (``ssh -G``: the user's config applied), and the hook's own rule decides: a
    provider whose ``hosts`` and ``ports`` cover it, or a pin, for the names the hook is
    given (the HostKeyAlias, bare or ``[host]:port``; else the host as typed, then the
    HostName). Fails closed: when ssh -G, a name or the config cannot tell, the host counts
    as managed (strict)."""
    import subprocess

    from sshpin.core.names import parse_port, port_name, split_host
    from sshpin.errors import SshpinError, UsageError
    from sshpin.providers import load_config, provider_for
    from sshpin.store import pins

    try:
        done = subprocess.run(
            [ssh, "-G", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return True
    seen: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, value)
    try:
        port = parse_port(seen.get("port", ""))
    except UsageError:
        return True  # ssh will say what is wrong with its arguments; strict meanwhile
    if done.returncode != 0 or "host" not in seen:
        return True
    alias = seen.get("hostkeyalias", "")
    names = [alias] if alias else [seen["host"], seen.get("hostname", "")]
    bare = {port, 22} if alias else {port}  # a bare alias: 22 or the port, as the hook
    try:
        cfg = load_config()
        for name in filter(None, names):
            host, given = split_host(name)  # UsageError: no name the hook could take
            for p in {given} if given is not None else bare:
                if provider_for(cfg, host, p) or pins.read(port_name(host, p)) is not None:
                    return True
    except SshpinError:
        return True
    return False
