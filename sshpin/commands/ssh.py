"""``sshpin ssh ARGS...`` and ``sshpin-ssh``: ssh with the hook injected, and no config edit."""

from __future__ import annotations

import os
import shutil
import sys

from sshpin.commands.setup import hook_command, hook_line
from sshpin.errors import EXIT_OK, EXIT_USAGE, say

HELP = """\
usage: sshpin ssh [SSH-ARGUMENTS...]
       sshpin-ssh [SSH-ARGUMENTS...]

Runs OpenSSH's ssh with sshpin's hook and strict host key checking given first with -o, so
they win over any other setting, and with no edit of ~/.ssh/config:
    ssh -o 'KnownHostsCommand=/path/to/sshpin known-hosts %I %H %t %K %k %p' \\
        -o StrictHostKeyChecking=yes SSH-ARGUMENTS...
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
    argv = [
        ssh,
        "-o",
        f"KnownHostsCommand={hook_line(hook_command())}",
        "-o",
        "StrictHostKeyChecking=yes",
        *args,
    ]
    try:
        os.execv(ssh, argv)  # noqa: S606 - argv, no shell: the user's ssh arguments verbatim
    except OSError as e:
        say("ssh", f"cannot run {ssh}: {e.strerror}")
    return EXIT_USAGE
