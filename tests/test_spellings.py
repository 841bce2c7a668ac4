"""Every spelling ssh takes to one host gets one treatment (issue 30, items 1 and 2).

Measured with OpenSSH 9.2 (``ssh -G``): a ``Host`` line compares its patterns with the name
exactly as typed (``Capsul-Abc`` escapes ``Host capsul-*``), while ``Match originalhost`` and
``Match host`` lower-case it; ssh lower-cases the name it connects to and keeps a trailing
dot (``ssh CAPSUL-ABC.`` connects to ``capsul-abc.``, which DNS takes to the same machine).
With the common ``StrictHostKeyChecking accept-new`` after sshpin's Include, a name that
escapes the snippet is trust on first use: a man in the middle is accepted and recorded.
The snippet here is always the one ``sshpin setup`` writes, and ssh, sshd and the provider
are real.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshpin.commands.demo import Sshd
from sshpin.commands.snippet import match_lines, render_snippet, ssh_patterns
from sshpin.core.config import parse_document
from sshpin.core.names import bare_host, hosts_match, valid_host
from sshpin.core.schema import host_pattern
from tests.conftest import HOOK_LINE, SSHPIN, Keys, Pin
from tests.refserver import ReferenceServer


def effective(config: Path, *args: str) -> dict[str, str]:
    done = subprocess.run(["ssh", "-G", "-F", str(config), *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=True)  # fmt: skip
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, value)
    return out


def strict(config: Path, *args: str) -> bool:
    seen = effective(config, *args)
    return seen.get("stricthostkeychecking") == "true" and seen.get("knownhostscommand") == "hook"


# ---- the conversion of hosts to Match lines, against ssh's own matching ----------------------

PATTERN = st.from_regex(r"!?[a-c][a-c.*?\-]{0,5}", fullmatch=True).filter(
    lambda p: valid_host(p.lstrip("!").replace("*", "a").replace("?", "a"))
)
TYPED = st.from_regex(r"[a-cA-C][a-cA-C.\-]{0,5}", fullmatch=True).filter(valid_host)


def snippet_for(tmp_path: Path, hosts: list[str]) -> Path:
    """A config of the Match lines for ``hosts`` (each block: a stand-in hook and strict
    checking), then the user's own ``accept-new`` for everything else."""
    lines = []
    for match in match_lines(ssh_patterns([host_pattern(h) for h in hosts])[0]):
        lines += [match, "    KnownHostsCommand hook", "    StrictHostKeyChecking yes"]
    lines += ["Host *", "    StrictHostKeyChecking accept-new"]
    path = tmp_path / "snippet"
    path.write_text("\n".join(lines) + "\n")
    return path


@settings(max_examples=60)
@given(st.lists(PATTERN, min_size=1, max_size=4), st.lists(TYPED, min_size=1, max_size=3))
def test_match_lines_hold_for_exactly_the_names_the_hook_takes(
    tmp_path_factory: pytest.TempPathFactory, hosts: list[str], names: list[str]
) -> None:
    """Both sides, with ssh's own matching: a name the hook treats as managed (any case, one
    trailing dot or none) gets the hook and strict checking; any other name does not. As the
    name typed (originalhost) and as the HostName ssh connects to (host)."""
    config = snippet_for(tmp_path_factory.mktemp("m"), hosts)
    patterns = [host_pattern(h) for h in hosts]
    for name in names:
        for spelling in (name, name + "." if not name.endswith(".") else name):
            managed = hosts_match(patterns, bare_host(spelling))
            assert strict(config, spelling) == managed, (hosts, spelling)
            given_name = strict(config, "-o", f"HostName={spelling}", "zz-unrelated")
            assert given_name == managed, (hosts, spelling, "HostName")


def test_match_lines_exact() -> None:
    assert match_lines(["capsul-*", "!capsul-old", "*.capsul.example"]) == [
        "Match originalhost !*.,capsul-*,!capsul-old,*.capsul.example",
        "Match originalhost capsul-*.,!capsul-old.,*.capsul.example.",
        "Match host !*.,capsul-*,!capsul-old,*.capsul.example",
        "Match host capsul-*.,!capsul-old.,*.capsul.example.",
    ]


@pytest.mark.parametrize(
    ("typed", "managed"),
    [("capsul-abc", True), ("Capsul-Abc", True), ("CAPSUL-ABC.", True), ("capsul-abc.", True),
     ("WEB.Capsul.Example.", True), ("web.capsul.example", True), ("10.1.2.3", True),
     ("capsul-old", False), ("CAPSUL-OLD.", False), ("Capsul-Old", False), ("other", False),
     ("other.", False), ("capsulx", False), ("capsul.example", False)],
)  # fmt: skip
def test_snippet_as_setup_renders_it(tmp_path: Path, typed: str, managed: bool) -> None:
    """The rendered snippet (render_snippet), read by ssh: every case and trailing-dot
    spelling of a managed name, a CIDR's glob included; no negated or unrelated one."""
    providers = parse_document({"provider": [{
        "name": "capsul", "type": "capsul", "api_url": "https://capsul.example/api",
        "hosts": ["capsul-*", "!Capsul-Old.", "*.capsul.example", "10.0.0.0/8"]}]},
        _validate)  # fmt: skip
    text = render_snippet(providers, "config.toml", ["/bin/sshpin"]).replace(
        "/bin/sshpin known-hosts %I %H %t %K %k %p", "hook"
    )
    assert "\nHost " not in text
    config = tmp_path / "ssh_config"
    config.write_text(text + "Host *\n    StrictHostKeyChecking accept-new\n")
    assert strict(config, typed) == managed


def _validate(table: dict[str, object]) -> dict[str, object]:
    from sshpin.providers import validate_table

    return validate_table(table)


def test_a_hosts_pattern_and_an_alias_are_kept_without_a_trailing_dot() -> None:
    providers = parse_document({"provider": [{
        "name": "c", "type": "capsul", "api_url": "https://capsul.example/api",
        "hosts": ["Web.Example.", "!Old.Example.", "10.0.0.0/8"],
        "aliases": {"Www.Example.": "capsul-x"}}]}, _validate)  # fmt: skip
    assert providers[0].hosts == ["web.example", "!old.example", "10.0.0.0/8"]
    assert providers[0].get("aliases") == {"www.example": "capsul-x"}  # keyed as the hook asks


# ---- real ssh, sshd and provider ---------------------------------------------------------------


@dataclass
class User:
    pin: Pin
    config: Path  # the user's own ~/.ssh/config, with sshpin's Include at its top
    known_hosts: Path
    real: Sshd
    forged: Sshd

    def ssh(self, name: str, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", str(self.config), "-p", str(port), *extra, name, "echo", "in"]
        return subprocess.run(argv, env=self.pin.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip

    def snippet(self) -> str:
        return (self.pin.dir / "ssh_config").read_text()


def user_config(tmp_path: Path, keys: Keys, known_hosts: Path, head: str = "") -> Path:
    """A user's own ssh config: trust on first use for everything (accept-new), and names
    DNS cannot resolve sent to 127.0.0.1 (ssh then hands the hook %H=127.0.0.1 and %k=the
    name typed). ``sshpin setup`` puts its Include above it."""
    config = tmp_path / "user_ssh_config"
    config.write_text(
        head + "Host *\n"
        "    StrictHostKeyChecking accept-new\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        f"    IdentityFile {keys.client}\n"
        "    IdentitiesOnly yes\n"
        "    BatchMode yes\n"
        "    User root\n"
        "    LogLevel ERROR\n"
        "    ConnectTimeout 10\n"
    )
    return config


@pytest.fixture
def user(
    pin: Pin, provider: ReferenceServer, keys: Keys, sshd: Sshd, tmp_path: Path
) -> Iterator[User]:
    """The capsul capsul-test1 (its sshd on 127.0.0.1), a man in the middle's sshd with
    another key, both on ports the provider vouches for, and ``sshpin setup`` run."""
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1", name="test1")
    forged = Sshd(str(tmp_path / "forged"), [keys.forged], str(tmp_path / "authorized_keys"))
    forged.start()
    pin.ports = f"[22, {sshd.port}, {forged.port}]"
    pin.write_config(hosts='["capsul-*"]', extra="resolve_dns = false\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = user_config(tmp_path, keys, known_hosts, "Host *\n    HostName 127.0.0.1\n")
    done = pin.run("setup", "--ssh-config", str(config))
    assert done.returncode == 0, done.stderr
    yield User(pin, config, known_hosts, sshd, forged)
    forged.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "typed", ["capsul-test1", "Capsul-Test1", "CAPSUL-TEST1.", "capsul-test1."]
)
def test_every_spelling_refuses_a_man_in_the_middle(user: User, keys: Keys, typed: str) -> None:
    refused = user.ssh(typed, user.forged.port)
    assert refused.returncode == 255, (typed, refused.stdout, refused.stderr)
    assert "Host key verification failed" in refused.stderr
    forged_key = keys.pub(keys.forged).split()[1]
    assert forged_key not in user.known_hosts.read_text()  # accept-new recorded nothing
    done = user.ssh(typed, user.real.port)
    assert done.returncode == 0, (typed, done.stderr)
    assert done.stdout == "in\n"
    assert user.known_hosts.read_text() == ""  # the hook vouched: nothing for TOFU to record


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["Capsul-Test1", "CAPSUL-TEST1."])
def test_a_host_key_alias_in_any_spelling_is_the_capsul(user: User, keys: Keys, alias: str) -> None:
    """``HostKeyAlias`` in capitals or with a trailing dot (ssh gives the hook its lower-case
    form, dot kept, as %H and %k): the capsul's keys, a forged key refused."""
    opts = ["-o", f"HostKeyAlias={alias}"]
    refused = user.ssh("capsul-test1", user.forged.port, *opts)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    done = user.ssh("capsul-test1", user.real.port, *opts)
    assert done.returncode == 0, done.stderr
    assert user.known_hosts.read_text() == ""


@pytest.mark.slow
def test_sshpin_ssh_is_strict_for_every_spelling(
    pin: Pin, provider: ReferenceServer, keys: Keys, sshd: Sshd, tmp_path: Path
) -> None:
    """``sshpin ssh`` (no config edit) decides strictness from ``ssh -G``: a case or
    trailing-dot spelling of a managed name is strict too, and a forged key is refused."""
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1", name="test1")
    pin.cover(sshd.port)
    aliases = 'aliases = { "web.capsul.example" = "capsul-test1" }\n'
    pin.write_config(hosts='["*.capsul.example"]', extra="resolve_dns = false\n" + aliases)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = user_config(tmp_path, keys, known_hosts, "Host *\n    HostName 127.0.0.1\n")

    def wrapped(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SSHPIN, "ssh", "-F", str(config), "-p", str(sshd.port), *args],
                              env=pin.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip

    for typed in ("web.capsul.example", "WEB.Capsul.Example", "Web.Capsul.Example."):
        seen = wrapped("-G", typed)
        assert "stricthostkeychecking true" in seen.stdout.splitlines(), typed
    assert "stricthostkeychecking accept-new" in wrapped("-G", "other.example.").stdout
    sshd.restart([keys.forged])
    refused = wrapped("Web.Capsul.Example.", "true")
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    assert known_hosts.read_text() == ""
    sshd.restart([keys.host])
    done = wrapped("WEB.Capsul.Example.", "echo", "in")
    assert done.returncode == 0 and done.stdout == "in\n", done.stderr


@pytest.mark.slow
def forged_refused_real_accepted(
    sshd: Sshd, keys: Keys, known_hosts: Path,
    connect: Callable[[], subprocess.CompletedProcess[str]],
) -> None:  # fmt: skip
    """A forged sshd is refused with nothing recorded; the real one is reached."""
    sshd.restart([keys.forged])
    refused = connect()
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    assert known_hosts.read_text() == ""
    sshd.restart([keys.host])
    accepted = connect()
    assert accepted.returncode == 0 and accepted.stdout == "in\n", accepted.stderr


def test_a_port_pin_reaches_the_snippet_and_refuses_a_forged_sshd(
    pin: Pin, keys: Keys, sshd: Sshd, tmp_path: Path
) -> None:
    """``sshpin pin '[host]:port'`` (README, sshpin(1)): a Match line for its host, so ssh
    asks the hook, which serves the pin on that port; a forged sshd there is refused."""
    pin.write_config(hosts='["capsul-*"]')  # no provider covers 127.0.0.1
    name = f"[127.0.0.1]:{sshd.port}"
    pinned = pin.run("pin", name, stdin=keys.pub(keys.host) + "\n")
    assert pinned.returncode == 0, pinned.stderr
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = user_config(tmp_path, keys, known_hosts)
    done = pin.run("setup", "--ssh-config", str(config))
    assert done.returncode == 0, done.stderr

    def connect() -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", str(config), "-p", str(sshd.port), "127.0.0.1", "echo", "in"]
        return subprocess.run(argv, env=pin.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip

    forged_refused_real_accepted(sshd, keys, known_hosts, connect)
    assert known_hosts.read_text() == ""  # the pin vouched, nothing recorded on first use
    assert "not named as a host" not in done.stderr
    snippet = (pin.dir / "ssh_config").read_text()
    assert "Match originalhost !*.,127.0.0.1\n" in snippet
    assert "Match originalhost 127.0.0.1.\n" in snippet
    listed = pin.run("cache", "list")  # the pin is listed, as any other pin
    assert listed.returncode == 0 and name in listed.stdout, listed.stdout


def snippet_check(pin: Pin, config: Path) -> dict[str, dict[str, object]]:
    import json

    done = pin.run("doctor", "--json", "--offline", "--ssh-config", str(config))
    return {c["check"]: c for c in json.loads(done.stdout)["checks"]}


def test_doctor_checks_the_snippet_with_setups_builder(
    pin: Pin, keys: Keys, tmp_path: Path
) -> None:
    """A port pin is in the snippet doctor expects; a snippet without it, or an old one of
    Host lines, is out of date, and ``sshpin setup`` rewrites it."""
    pin.write_config(hosts='["capsul-*"]')
    assert pin.run("pin", "[127.0.0.1]:2222", stdin=keys.pub(keys.host) + "\n").returncode == 0
    config = user_config(tmp_path, keys, tmp_path / "known_hosts")
    assert pin.run("setup", "--ssh-config", str(config)).returncode == 0
    snippet = pin.dir / "ssh_config"
    written = snippet.read_text()
    assert "127.0.0.1" in written.split("# hosts pinned with 'sshpin pin'")[1]
    checks = snippet_check(pin, config)
    assert checks["snippet"]["ok"] is True, checks["snippet"]
    assert checks["ssh capsul"]["ok"] is True, checks["ssh capsul"]
    assert "CAPSUL-X." in str(checks["ssh capsul"]["detail"])

    # the snippet without the port pin's blocks: out of date
    snippet.write_text(written.split("\n# hosts pinned with 'sshpin pin'")[0].rstrip() + "\n")
    checks = snippet_check(pin, config)
    assert checks["snippet"]["ok"] is False and checks["snippet"]["fix"] == "sshpin setup"
    assert "out of date" in str(checks["snippet"]["detail"])

    # an old snippet (Host lines, as setup wrote them before): out of date, and the capitals
    # spelling of the provider's sample host is seen to escape it
    hook = HOOK_LINE
    old = [
        "# Written by 'sshpin setup' from an older sshpin", "",
        "Host capsul-*", f"    KnownHostsCommand {hook}", "    StrictHostKeyChecking yes", "",
        "Host 127.0.0.1", f"    KnownHostsCommand {hook}", "    StrictHostKeyChecking yes",
    ]  # fmt: skip
    snippet.write_text("\n".join(old) + "\n")
    checks = snippet_check(pin, config)
    assert checks["snippet"]["ok"] is False
    assert checks["ssh capsul"]["ok"] is False
    assert "ssh -G CAPSUL-X.: knownhostscommand none" in str(checks["ssh capsul"]["detail"])
    done = pin.run("setup", "--ssh-config", str(config))
    assert done.returncode == 0 and f"wrote {snippet}" in done.stdout, done.stdout
    assert snippet.read_text() == written
    checks = snippet_check(pin, config)
    assert checks["snippet"]["ok"] is True and checks["ssh capsul"]["ok"] is True


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["Capsul-Test1", "CAPSUL-TEST1."])
def test_legacy_mode_takes_every_spelling_to_the_proxy(
    pin: Pin, provider: ReferenceServer, keys: Keys, sshd: Sshd, tmp_path: Path, typed: str
) -> None:
    """``setup --legacy`` (ProxyCommand, for OpenSSH before 8.5) writes the same Match lines:
    a capitals or trailing-dot spelling runs ``sshpin proxy``, whose managed known_hosts
    refuses a man in the middle that the user's accept-new would have recorded."""
    provider.api.add("capsul-test1", [keys.pub(keys.host)], ipv4="127.0.0.1", name="test1")
    pin.write_config(hosts='["capsul-*"]')
    pin.cover(sshd.port)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = user_config(tmp_path, keys, known_hosts, "Host *\n    HostName 127.0.0.1\n")
    done = pin.run("setup", "--legacy", "--ssh-config", str(config))
    assert done.returncode == 0, done.stderr

    def connect() -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", str(config), "-p", str(sshd.port), typed, "echo", "in"]
        return subprocess.run(argv, env=pin.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip

    forged_refused_real_accepted(sshd, keys, known_hosts, connect)
    assert known_hosts.read_text() == ""
