"""Only the user's own files decide trust, and nothing on the machine can hang the hook.

The hook runs as ssh runs it (``python -I -S launch.py known-hosts ...``, conftest.HOOK) from
a directory planted with a CA, a config and XDG dirs, with ``SSL_CERT_FILE``,
``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE`` and relative ``XDG_*`` set: none changes what is
printed. A FIFO at each file the hook reads, a ``token_command`` that never ends, a keyring
that never answers and a resolver that never answers: each call ends within its bound.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import HOOK, MUTE_KEYRING, SSHPIN, TLS, TOKEN, Keys, Pin
from tests.refserver import CapsulAPI, ReferenceServer

BOUND = 15.0  # above the hook's 12 s deadline; each fault's own bound is 5 or 10 s


def key_args(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


def run_hook(
    env: dict[str, str], *args: str, cwd: Path | None = None, hook: list[str] = HOOK
) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run([*hook, "known-hosts", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    return done, time.monotonic() - start


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[tuple[ReferenceServer, Path]]:
    """A provider whose certificate an attacker's own CA signed, serving a forged key."""
    ca = trustme.CA()
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_path = tmp_path / "attacker-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = ReferenceServer(CapsulAPI({TOKEN}), context).start()
    yield server, ca_path
    server.stop()


def poisoned_env(env: dict[str, str], attacker_ca: Path, tmp_path: Path) -> dict[str, str]:
    certs = tmp_path / "attacker-certs"
    certs.mkdir(exist_ok=True)
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(attacker_ca)],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    shutil.copy(attacker_ca, certs / f"{digest}.0")
    return {**env, "SSL_CERT_FILE": str(attacker_ca), "SSL_CERT_DIR": str(certs),
            "REQUESTS_CA_BUNDLE": str(attacker_ca), "CURL_CA_BUNDLE": str(attacker_ca),
            "XDG_CONFIG_HOME": "xdg-config", "XDG_CACHE_HOME": "xdg-cache"}  # fmt: skip


@pytest.mark.parametrize("ca_bundle", [True, False], ids=["ca_bundle", "system store"])
def test_environment_cannot_add_a_trust_anchor(
    pin: Pin, keys: Keys, attacker: tuple[ReferenceServer, Path], tmp_path: Path,
    ca_bundle: bool,
) -> None:  # fmt: skip
    """The configured URL's host:port answers with a certificate of the attacker's CA, which
    every CA variable names: refused, with ``ca_bundle`` and with the system store."""
    server, attacker_ca = attacker
    server.api.add("capsul-l", [keys.pub(keys.forged)])
    pin.api_url = server.api_url
    pin.write_config()
    if not ca_bundle:
        pin.config.write_text(pin.config.read_text().replace(f'ca_bundle = "{pin.ca_path}"\n', ""))
    env = poisoned_env(pin.env, attacker_ca, tmp_path)
    done, _ = run_hook(env, "HOSTNAME", "capsul-l", *key_args(keys, keys.forged))
    assert (done.returncode, done.stdout) == (0, "")
    assert "TLS verification failed: certificate verify failed" in done.stderr
    assert server.api.requests == 0  # no request was ever sent over that connection


def test_planted_working_directory_changes_nothing(
    pin: Pin, provider: ReferenceServer, keys: Keys, attacker: tuple[ReferenceServer, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """A relative ca_bundle is the config dir's file; a cloned repository holding a CA, a
    config and XDG dirs, with the variables naming them, does not change the printed lines."""
    server, attacker_ca = attacker
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    server.api.add("capsul-l", [keys.pub(keys.forged)])
    home = pin.dir
    confdir = home / ".config" / "sshpin"
    confdir.mkdir(parents=True, mode=0o700)
    shutil.copy(pin.ca_path, confdir / "ca.pem")
    (confdir / "config.toml").write_text(
        f'[[provider]]\nname = "capsul"\ntype = "capsul"\napi_url = "{provider.api_url}"\n'
        'hosts = ["capsul-*"]\nca_bundle = "ca.pem"\n'
    )
    (confdir / "config.toml").chmod(0o600)
    env = {k: v for k, v in pin.env.items() if k not in ("SSHPIN_CONFIG", "SSHPIN_CACHE_DIR")}
    clean = tmp_path / "clean"
    clean.mkdir()
    expected, _ = run_hook(env, "HOSTNAME", "capsul-l", *key_args(keys, keys.host), cwd=clean)
    assert expected.stdout.split()[1:] == key_args(keys, keys.host), expected.stderr
    # the repository: the attacker's CA under the bundle's relative name, a config and XDG
    # dirs naming the attacker's server, and its own cache dir with a planted compiled config
    repo = tmp_path / "repo"
    for sub in ("xdg-config/sshpin", "xdg-cache/sshpin", "pins"):
        (repo / sub).mkdir(parents=True, mode=0o700)
    shutil.copy(attacker_ca, repo / "ca.pem")
    (repo / "xdg-config/sshpin/config.toml").write_text(
        f'[[provider]]\nname = "capsul"\ntype = "capsul"\napi_url = "{server.api_url}"\n'
        'hosts = ["capsul-*"]\nca_bundle = "ca.pem"\n'
    )
    (repo / "xdg-config/sshpin/config.toml").chmod(0o600)
    poisoned = poisoned_env(env, attacker_ca, tmp_path)
    for relative in ({}, {"SSHPIN_CONFIG": "xdg-config/sshpin/config.toml",
                          "SSHPIN_CACHE_DIR": "xdg-cache/sshpin"}):  # fmt: skip
        shutil.rmtree(home / ".cache" / "sshpin")  # a cold cache: the fetch path, TLS included
        done, _ = run_hook({**poisoned, **relative}, "HOSTNAME", "capsul-l",
                           *key_args(keys, keys.host), cwd=repo)  # fmt: skip
        assert (done.stdout, done.returncode) == (expected.stdout, 0), done.stderr
    assert server.api.requests == 0
    assert not any((repo / "xdg-cache/sshpin").iterdir())


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        path.unlink()
    os.mkfifo(path, 0o600)


@pytest.mark.parametrize(
    "where", ["host entry", "document", "config.marshal", "config.toml", "pin", "ca_bundle"]
)
def test_a_fifo_at_any_file_the_hook_reads_never_blocks(
    pin: Pin, provider: ReferenceServer, keys: Keys, where: str
) -> None:
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    args = ("HOSTNAME", "capsul-l", *key_args(keys, keys.host))
    assert run_hook(pin.env, *args)[0].stdout  # cache filled
    if where == "ca_bundle":
        ca = pin.dir / "ca.pem"
        _fifo(ca)
        pin.ca_path = str(ca)
        pin.write_config()
        shutil.rmtree(pin.cache)
    paths = {"host entry": pin.cache / "capsul" / "hosts" / "capsul-l",
             "document": pin.cache / "capsul" / "document.json",
             "config.marshal": pin.cache / "config.marshal", "config.toml": pin.config,
             "pin": pin.dir / "pins" / "capsul-l"}  # fmt: skip
    if where in paths:
        _fifo(paths[where])
    done, took = run_hook(pin.env, *args)
    assert took < BOUND, (took, done.stderr)
    assert done.returncode == 0
    if where == "config.toml":
        assert done.stdout == ""
        assert "not a regular file" in done.stderr
    elif where == "ca_bundle":
        assert done.stdout == ""
        assert f"ca_bundle {pin.ca_path}: not a regular file" in done.stderr
    else:  # a miss or a refetch: the authentic keys, still
        assert done.stdout.split()[1:] == key_args(keys, keys.host), done.stderr


def test_a_fifo_as_a_ca_key_file_never_blocks(pin: Pin, keys: Keys) -> None:
    fifo = pin.dir / "ca.pub"
    _fifo(fifo)
    pin.config.write_text(
        '[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["*.example.org"]\n'
        'ca_key_files = ["ca.pub"]\n'  # relative: the config file's directory
    )
    done, took = run_hook(pin.env, "HOSTNAME", "web.example.org")
    assert took < BOUND
    assert (done.returncode, done.stdout) == (0, "")
    assert f"CA key file {fifo}: not a regular file" in done.stderr


@pytest.mark.parametrize("template", ["sleep {n}", "sh -c 'sleep {n}; echo late'"])
def test_a_token_command_that_never_ends_is_stopped(
    pin: Pin, provider: ReferenceServer, keys: Keys, template: str
) -> None:
    """A token command that never ends, and one whose child keeps the pipe open: stopped at
    10 s with its whole process group. The sleep's length is unique to this run, so that no
    other test (or suite) running at the same time is mistaken for a leftover."""
    seconds = f"600.{os.getpid()}{time.monotonic_ns() % 10**6}"
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    pin.write_config(extra=f'token_command = "{template.format(n=seconds)}"\n')
    env = {k: v for k, v in pin.env.items() if k != "SSHPIN_TOKEN_CAPSUL"}
    done, took = run_hook(env, "HOSTNAME", "capsul-l", *key_args(keys, keys.host))
    assert took < BOUND, took
    assert (done.returncode, done.stdout) == (0, "")
    assert "gave no token within 10 s (it was stopped)" in done.stderr
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-af", f"sleep {seconds}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout  # the whole process group was killed


def test_a_token_command_that_floods_its_output_is_stopped(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """``yes`` prints forever, fast: the hook reads at most 64 KiB of it, stops the command
    and says so in one line, well before the 10 s deadline; memory stays small."""
    marker = f"7f3a-flood-{os.getpid()}-{time.monotonic_ns()}"  # unique to this run
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    pin.write_config(extra=f'token_command = "yes {marker}"\n')
    env = {k: v for k, v in pin.env.items() if k != "SSHPIN_TOKEN_CAPSUL"}
    done, took = run_hook(env, "HOSTNAME", "capsul-l", *key_args(keys, keys.host))
    assert took < 5, took  # the cap, not the deadline, ended it
    assert (done.returncode, done.stdout) == (0, "")
    assert "token_command 'yes' printed more than 64 KiB (it was stopped)" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "7f3a-flood" not in done.stderr
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-af", f"^yes {marker}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_a_keyring_that_never_answers(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    """PYTHON_KEYRING_BACKEND names a backend whose get_password never returns. The console
    script (site, PYTHONPATH honoured) so that the test module can be imported at all."""
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    (tmp_path / "mutekeyring.py").write_text(MUTE_KEYRING)
    env = {k: v for k, v in pin.env.items() if k != "SSHPIN_TOKEN_CAPSUL"}
    env.update(PYTHONPATH=str(tmp_path), PYTHON_KEYRING_BACKEND="mutekeyring.Mute")
    done, took = run_hook(env, "HOSTNAME", "capsul-l", *key_args(keys, keys.host),
                          hook=[SSHPIN])  # fmt: skip
    assert took < BOUND, took
    assert (done.returncode, done.stdout) == (0, "")
    assert "no usable OS keyring (no answer within 5 s)" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
    reason="needs root, unshare and ip",
)
def test_a_resolver_that_never_answers(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    """In a network namespace, resolv.conf names a UDP socket on 127.0.0.1 that reads every
    query and answers none (glibc would wait timeout x attempts: 150 s here)."""
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-dns", [keys.pub(keys.host)], ipv4="192.0.2.7", name="dns")
    pin.write_config(hosts='["capsul-*", "*.example.org"]')
    assert run_hook(pin.env, "ORDER", "capsul-dns")[0].stdout  # the document is cached
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:5\n")
    mute = ("import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.bind(('127.0.0.1',53));s.settimeout(90);open(__import__('sys').argv[1],'w').close();"
            "[s.recv(512) for _ in iter(int,1)]")  # fmt: skip
    ready = tmp_path / "ready"
    script = (f"mount --bind {conf} /etc/resolv.conf && ip link set lo up || exit 9; "
              f"{HOOK[0]} -c \"{mute}\" {ready} </dev/null >/dev/null 2>&1 & mute=$!; "
              f"while [ ! -e {ready} ]; do sleep 0.1; done; "
              '"$@"; rc=$?; kill $mute; exit $rc')  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(["unshare", "--mount", "--net", "sh", "-c", script, "-", *HOOK,
                           "known-hosts", "ORDER", "web1.example.org"], env=pin.env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    took = time.monotonic() - start
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert done.stderr == (
        "sshpin: web1.example.org: cannot resolve web1.example.org (no answer within 5 s): "
        "DNS is needed to match it to a capsul\n"
    )
    assert took < BOUND, took


def test_the_hook_deadline_prints_nothing_and_one_line(
    pin: Pin, provider: ReferenceServer, keys: Keys, tls: TLS
) -> None:
    """Past the hard deadline (here shortened by running hook.main in a child with 2 s) while
    the provider is still answering: nothing on stdout, one line, exit 0."""
    provider.api.add("capsul-l", [keys.pub(keys.host)])
    provider.api.delay = 6.0
    code = ("import sys; from sshpin import hook; "
            "sys.exit(hook.main(sys.argv[1:], deadline=2.0))")  # fmt: skip
    start = time.monotonic()
    done = subprocess.run([HOOK[0], "-c", code, "HOSTNAME", "capsul-l",
                           *key_args(keys, keys.host)], env=pin.env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    took = time.monotonic() - start
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "sshpin: capsul-l: no answer within 2 s, while waiting for provider 'capsul' at "
        "127.0.0.1 (name lookup, connection, TLS, answer): no keys vouched for\n"
    )
    assert took < 5, took


def test_a_stderr_nobody_reads_does_not_hold_the_hook(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    """ssh's stderr a full pipe (a reader that stalls, a paused terminal): the one line the
    hook has to say cannot keep it past its last timer; nothing is printed on stdout."""
    import fcntl

    provider.api.add("capsul-l", [keys.pub(keys.host)])
    provider.api.status_override = 503  # an error to say, after the answer
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass  # full
    fcntl.fcntl(write_end, fcntl.F_SETFL, 0)
    try:
        start = time.monotonic()
        done = subprocess.run([*HOOK, "known-hosts", "HOSTNAME", "capsul-l",
                               *key_args(keys, keys.host)], env=pin.env, stdout=subprocess.PIPE,
                              stderr=write_end, stdin=subprocess.DEVNULL, timeout=30)  # fmt: skip
        took = time.monotonic() - start
    finally:
        os.close(write_end)
        os.close(read_end)
    assert (done.returncode, done.stdout) == (0, b"")
    assert took < 8, took
