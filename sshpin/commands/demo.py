"""``sshpin demo``: the whole story on this machine, with real ssh and a throwaway sshd.

Also home of the throwaway sshd and the local TLS material that the tests reuse.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from sshpin.commands.snippet import hook_command, match_lines
from sshpin.errors import ConfigError

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/libexec/sshd", "/sbin/sshd")


def find_sshd() -> str:
    found = shutil.which("sshd") or next((p for p in SSHD_PATHS if os.access(p, os.X_OK)), None)
    if not found:
        raise ConfigError(
            "demo: OpenSSH's server (sshd) is not installed: install it "
            "(Debian/Ubuntu: apt-get install openssh-server; Fedora: dnf install openssh-server)"
        )
    return found


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"demo: {name} not found: install OpenSSH's client tools")
    return found


def keygen(path: str, key_type: str = "ed25519", comment: str = "sshpin-demo") -> str:
    """A new key pair at ``path``; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    with open(path + ".pub") as f:
        return f.read().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """A throwaway sshd on 127.0.0.1: its own config, host keys, and authorized key."""

    def __init__(
        self,
        workdir: str,
        host_keys: list[str],
        authorized: str,
        port: int = 0,
        extra: list[str] | None = None,
    ) -> None:
        self.extra = extra or []
        self.workdir = workdir
        self.host_keys = host_keys
        self.authorized = authorized
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sshd:
        os.makedirs(self.workdir, exist_ok=True)
        config = os.path.join(self.workdir, "sshd_config")
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            *(f"HostKey {k}" for k in self.host_keys),
            f"AuthorizedKeysFile {self.authorized}",
            f"PidFile {os.path.join(self.workdir, 'sshd.pid')}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "MaxStartups 200:30:300",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            *self.extra,
        ]
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        log = open(os.path.join(self.workdir, "sshd.log"), "ab")  # noqa: SIM115 - owned by proc
        self.proc = subprocess.Popen(
            [find_sshd(), "-D", "-e", "-f", config],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited at start: see {self.workdir}/sshd.log")
            try:  # ready when a connection gets sshd's banner, not merely accepted
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, host_keys: list[str], extra: list[str] | None = None) -> None:
        self.stop()
        self.host_keys = host_keys
        self.extra = extra if extra is not None else self.extra
        self.start()


def make_tls(workdir: str, host: str = "127.0.0.1") -> tuple[Any, str]:
    """A throwaway CA and a server certificate for ``host``: (server SSLContext, CA PEM path)."""
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sshpin demo CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(workdir, "provider-ca.pem")
    leaf_path = os.path.join(workdir, "provider.pem")
    with open(ca_path, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(leaf_path, "wb") as f:
        f.write(
            leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf_path)
    return context, ca_path


def ssh_argv(ssh_config: str, identity: str, port: int, known_hosts: str, *rest: str) -> list[str]:
    return [
        find_tool("ssh"),
        "-F",
        ssh_config,
        "-i",
        identity,
        "-p",
        str(port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        *rest,
    ]


def write_ssh_config(path: str, hook: list[str], patterns: str) -> None:
    """An ssh_config that, like ``sshpin setup`` writes, hands managed hosts to the hook:
    the snippet's Match lines (any case, a trailing dot or none) for ``patterns``."""
    blocks = "".join(
        f"{match}\n"
        f"    KnownHostsCommand {' '.join(hook)} known-hosts %I %H %t %K %k %p\n"
        "    StrictHostKeyChecking yes\n"
        for match in match_lines(patterns.split())
    )
    with open(path, "w") as f:
        f.write(
            blocks + "Host *\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    BatchMode yes\n"
            "    IdentitiesOnly yes\n"
            "    User root\n"
            "    LogLevel ERROR\n"
            "    ConnectTimeout 10\n"
        )


def run(verbose: bool = False) -> int:
    from sshpin.provider_side.refserver import CapsulAPI, ReferenceServer
    from sshpin.store.cachedir import ProviderCache

    find_sshd()
    for tool in ("ssh", "ssh-keygen"):
        find_tool(tool)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="sshpin-demo-") as d:
        os.chmod(d, 0o700)
        out.write(f"sshpin demo: working in {d} (removed at the end)\n\n")
        capsul_key = keygen(os.path.join(d, "capsul_host_ed25519"), comment="capsul host key")
        keygen(os.path.join(d, "forged_host_ed25519"), comment="attacker's key")
        client_key = keygen(os.path.join(d, "client_ed25519"), comment="demo user")
        authorized = os.path.join(d, "authorized_keys")
        with open(authorized, "w") as f:
            f.write(client_key + "\n")
        context, ca_path = make_tls(d)
        token = os.urandom(16).hex()
        api = CapsulAPI({token}, account="demo@example.org")
        api.add("capsul-demo1", [capsul_key], ipv4="127.0.0.1", name="demo")
        server = ReferenceServer(api, context).start()
        cache_dir = os.path.join(d, "cache")
        config_path = os.path.join(d, "config.toml")
        sshd = Sshd(os.path.join(d, "sshd"), [os.path.join(d, "capsul_host_ed25519")], authorized)
        with open(config_path, "w") as f:
            f.write(
                "[[provider]]\n"
                'name = "demo"\n'
                'type = "capsul"\n'
                f'api_url = "{server.api_url}"\n'
                'hosts = ["127.0.0.1", "capsul-*"]\n'
                f'ca_bundle = "{ca_path}"\n'
                f"ports = [{sshd.port}]  # the capsul's sshd (a demo cannot listen on 22)\n"
            )
        os.environ.update(
            SSHPIN_CONFIG=config_path, SSHPIN_CACHE_DIR=cache_dir, SSHPIN_TOKEN_DEMO=token
        )
        ssh_config = os.path.join(d, "ssh_config")
        write_ssh_config(ssh_config, hook_command(), "127.0.0.1 capsul-*")
        known_hosts = os.path.join(d, "known_hosts")
        open(known_hosts, "w").close()
        try:
            sshd.start()
            argv = ssh_argv(ssh_config, os.path.join(d, "client_ed25519"), sshd.port, known_hosts)
            out.write(
                f"A capsul (a throwaway sshd on 127.0.0.1:{sshd.port}) and its provider's API "
                f"({server.api_url}) are up.\nThe user's known_hosts is empty and "
                "StrictHostKeyChecking is yes: without sshpin, ssh would refuse.\n\n"
            )
            out.write("1. First connection, no prompt:\n")
            first = _ssh(out, argv, "echo hello from the capsul")
            out.write("\n2. A man in the middle answers with another key:\n")
            sshd.restart([os.path.join(d, "forged_host_ed25519")])
            second = _ssh(out, argv, "echo this must not run")
            out.write("\n3. What sshpin has pinned:\n")
            store = ProviderCache(cache_dir, "demo")
            for host in store.hosts():
                entry = store.read_host(host)
                if entry is None:
                    continue
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.fetched_at))
                out.write(
                    f"   {host}: {entry.capsul} (matched by {entry.rule}), fetched {when} "
                    f"from {entry.source}\n"
                )
                for key in entry.keys:
                    out.write(f"      {key.key_type} {key.sha256()}\n")
            out.write(
                f"\nThe provider answered {api.count()} request(s) in all. "
                f"Known_hosts is still {os.path.getsize(known_hosts)} bytes: nothing was "
                "trusted on first use.\n"
            )
            ok = first.returncode == 0 and second.returncode != 0
            out.write("\ndemo: " + ("OK\n" if ok else "UNEXPECTED RESULT, see above\n"))
            return 0 if ok else 2
        finally:
            sshd.stop()
            server.stop()


def _ssh(out: Any, argv: list[str], command: str) -> subprocess.CompletedProcess[str]:
    """Run ssh to the demo capsul and show what the user would see: the command as it is run
    (ssh by name when it is the one on PATH), then its output."""
    import shlex
    import shutil

    run = [*argv, "127.0.0.1", command]
    name = os.path.basename(argv[0])
    shown = [name if shutil.which(name) == argv[0] else argv[0], *run[1:]]
    out.write(f"   $ {shlex.join(shown)}\n")
    done = subprocess.run(
        run,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    _show(out, done)
    return done


def _show(out: Any, done: subprocess.CompletedProcess[str]) -> None:
    for line in done.stdout.splitlines():
        out.write(f"   {line}\n")
    for line in done.stderr.splitlines():
        out.write(f"   (stderr) {line}\n")
    verdict = "connected" if done.returncode == 0 else "REFUSED"
    out.write(f"   -> exit status {done.returncode}: {verdict}\n")
