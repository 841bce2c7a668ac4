"""Pinning for SSH libraries that do not run OpenSSH's KnownHostsCommand, from sshpin's API
(sshpin/api.py): ``sshpin.integrations.paramiko`` and ``sshpin.integrations.asyncssh``, each
importing its library, which the extras ``sshpin[paramiko]`` and ``sshpin[asyncssh]`` install.
Nothing on the hook's path imports this package."""
