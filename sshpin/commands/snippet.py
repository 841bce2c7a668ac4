"""The ssh side of sshpin, as text: the hook's command line, the snippet of ``Match`` blocks
(``match_lines``: every spelling of a host ssh takes to the same machine), and the ``Include``
line at the top of ~/.ssh/config, read and edited. One module, used through these public names
by setup, doctor, ``sshpin ssh``, demo and pin.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import sys
import sysconfig

from sshpin.core.config import ProviderConfig, config_dir, config_path, parse_file, ports_text
from sshpin.core.files import atomic_write
from sshpin.errors import ConfigError
from sshpin.errors import say as warn
from sshpin.providers import validate_table

HOOK_ARGS = "known-hosts %I %H %t %K %k %p"
INCLUDE_MARK = "# sshpin: pinned host keys; 'sshpin setup --undo' removes this line and the next"
SNIPPET_HEAD = "# Written by 'sshpin setup' from"
LEGACY_MARK = (
    "# Legacy mode (sshpin setup --legacy), for OpenSSH before 8.5: sshpin runs as the\n"
    "# ProxyCommand and keeps the hosts' authentic keys in its own known_hosts file."
)


def sshpin_command() -> list[str]:
    """How ssh should run this very sshpin: absolute paths, as ssh does not search PATH.

    The console script's path is kept as invoked, not resolved through symlinks, so a pipx
    upgrade (which replaces the target) keeps working.
    """
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(script) in ("sshpin", "sshpin-ssh"):
        sibling = os.path.join(os.path.dirname(script), "sshpin")
        if os.access(sibling, os.X_OK):
            return [sibling]
    installed = os.path.join(sysconfig.get_path("scripts"), "sshpin")
    if os.access(installed, os.X_OK):
        return [installed]
    return [sys.executable, "-m", "sshpin"]


def hook_command() -> list[str]:
    """How ssh should run the hook: this interpreter on launch.py with ``-I -S`` (see there:
    about a third of the console script's start-up cost, and immune to PYTHON* variables)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    launcher = os.path.join(package, "launch.py")
    if sys.executable and os.path.isabs(sys.executable) and os.path.exists(launcher):
        return [sys.executable, "-I", "-S", launcher]
    return sshpin_command()


def _ssh_word(word: str, tokens: bool = True) -> str:
    """One word of an ssh_config line: ``%`` doubled where ssh expands tokens, quoted if it
    holds spaces. Quotes and backslashes cannot be written safely, so they are refused."""
    if any(c in word for c in "\"'\\") or any(ord(c) < 32 for c in word):
        raise ConfigError(f"cannot name {word!r} in ssh_config: quotes or control characters")
    if tokens:
        word = word.replace("%", "%%")
    return f'"{word}"' if " " in word or "\t" in word else word


def hook_line(command: list[str]) -> str:
    return " ".join(_ssh_word(w) for w in command) + " " + HOOK_ARGS


def real_home() -> str:
    """The home directory ssh uses: the password database's, not $HOME (ssh ignores $HOME)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def default_ssh_config() -> str:
    return os.path.join(real_home(), ".ssh", "config")


def snippet_path() -> str:
    return os.path.join(config_dir(), "ssh_config")


def ssh_patterns(hosts: list[str]) -> tuple[list[str], list[str]]:
    """A provider's ``hosts`` as ssh host patterns, and those ssh cannot express.

    Globs and ``!`` negations mean the same in both. An IPv4 network on an octet boundary
    becomes a glob (``203.0.113.0/24`` is ``203.0.113.*``); other networks have no ssh form.
    """
    out: list[str] = []
    skipped: list[str] = []
    for raw in hosts:
        negated = raw.startswith("!")
        bare = raw[1:] if negated else raw
        if "/" in bare:
            import ipaddress

            net = ipaddress.ip_network(bare, strict=False)
            if net.version != 4 or net.prefixlen % 8 or net.prefixlen == 0:
                skipped.append(raw)
                continue
            octets = str(net.network_address).split(".")[: net.prefixlen // 8]
            bare = ".".join([*octets, "*"][:4]) if net.prefixlen < 32 else ".".join(octets)
        out.append(("!" if negated else "") + bare)
    return out, skipped


MATCH_CRITERIA = ("originalhost", "host")


def match_lines(patterns: list[str]) -> list[str]:
    """ssh ``Match`` lines, each starting a block, that hold for exactly the names the hook
    takes as one of ``patterns`` (``ssh_patterns``' output), however they are spelled.

    A ``Host`` line compares its patterns with the name exactly as typed, so ``Capsul-X``
    escapes ``Host capsul-*``; ``Match originalhost`` (the name typed) and ``Match host`` (the
    name ssh connects to: the HostName given with ``-o``, or the canonical name on ssh's final
    pass) lower-case it first (OpenSSH 7.5 and later), and take a comma-separated list whose
    ``!`` negations mean what they mean on a Host line. The hook drops one trailing dot
    (core.names.bare_host), ssh keeps it: so for each criterion one line for names without a
    trailing dot (``!*.`` first) and one with every pattern given a trailing dot (a pattern
    ``p`` matches ``name`` exactly when ``p.`` matches ``name.``)."""
    plain = ",".join(["!*.", *patterns])
    dotted = ",".join(p + "." for p in patterns)
    return [f"Match {c} {where}" for c in MATCH_CRITERIA for where in (plain, dotted)]


PROXY_ALIAS_SINCE = (8, 4)  # the first OpenSSH whose ProxyCommand knows %k


def openssh_version(ssh: str) -> tuple[str, tuple[int, int] | None]:
    """``ssh -V``'s first line, and the (major, minor) it names (None: not OpenSSH)."""
    import re
    import subprocess

    done = subprocess.run(
        [ssh, "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    text = (done.stderr or done.stdout).strip().splitlines()
    first = text[0] if text else ""
    m = re.match(r"OpenSSH_(\d+)\.(\d+)", first)
    return first, (int(m.group(1)), int(m.group(2))) if m else None


@functools.cache
def proxy_arguments() -> str:
    """The ProxyCommand's arguments for the ssh on PATH: ``proxy %h %p %k`` from OpenSSH
    8.4, whose ProxyCommand first knows ``%k``; ``proxy %h %p`` before (an older ssh exits on
    a token it does not know), where a ``Host`` block's alias is not resolved."""
    ssh = shutil.which("ssh")
    version = openssh_version(ssh)[1] if ssh else None
    alias = version is not None and version >= PROXY_ALIAS_SINCE
    return "proxy %h %p %k" if alias else "proxy %h %p"


def _directives(command: list[str], legacy: bool) -> list[str]:
    if not legacy:
        return [f"    KnownHostsCommand {hook_line(command)}", "    StrictHostKeyChecking yes"]
    from sshpin.commands.proxy import managed_known_hosts

    proxy = " ".join(_ssh_word(w) for w in command) + " " + proxy_arguments()
    files = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2", _tilde(managed_known_hosts())]
    return [
        f"    ProxyCommand {proxy}",
        "    UserKnownHostsFile " + " ".join(_ssh_word(f) for f in files),
        "    StrictHostKeyChecking yes",
    ]


def _tilde(path: str) -> str:
    home = real_home().rstrip("/") + "/"
    return "~/" + path[len(home) :] if path.startswith(home) else path


def render_snippet(
    providers: list[ProviderConfig],
    source: str,
    command: list[str],
    pinned: list[str] | None = None,
    legacy: bool = False,
) -> str:
    lines = [
        f"{SNIPPET_HEAD} {source}; edit that file and run 'sshpin setup' again.",
        "# See sshpin(1). Each group of blocks hands the hosts of one provider to sshpin:",
        "# ssh asks sshpin for their authentic keys and refuses any other key, with no prompt.",
        "# Match lines, not Host lines: they match the name in any case, as typed (originalhost)",
        "# or as ssh connects to it (host), without a trailing dot or with one.",
        "# A Match line cannot name a port: ssh asks sshpin on every port, and sshpin vouches",
        "# only on the provider's 'ports' (22 unless set). On another port it prints nothing and",
        "# ssh checks your own known_hosts, still with no prompt ('sshpin pin [host]:port').",
    ]
    if legacy:
        lines.append(LEGACY_MARK)
    for p in providers:
        patterns, skipped = ssh_patterns(p.hosts)
        lines.append("")
        lines.append(f'# provider "{p.name}" ({p.type}), port(s) {ports_text(p.ports)}')
        if skipped:
            lines.append(f"# no ssh pattern can express: {' '.join(skipped)}")
        if not any(not pat.startswith("!") for pat in patterns):
            lines.append("# (no host of this provider can be named in a Match line)")
            continue
        for match in match_lines(patterns):
            lines.append(match)
            lines.extend(_directives(command, legacy))
    hosts = _pinned_hosts(pinned or [])
    if hosts:
        lines.append("")
        lines.append("# hosts pinned with 'sshpin pin' (a Match line names no port: the hook")
        lines.append("# serves a pin of [host]:port on that port only, and of a bare host on 22)")
        for match in match_lines(hosts):
            lines.append(match)
            lines.extend(_directives(command, legacy))
    return "\n".join(lines) + "\n"


def _pinned_hosts(names: list[str]) -> list[str]:
    """The hosts of pin names (``host`` or ``[host]:port``), once each, in order."""
    from sshpin.core.names import split_host
    from sshpin.errors import SshpinError

    out: list[str] = []
    for name in names:
        try:
            host = split_host(name)[0]
        except SshpinError:
            continue  # not a pin sshpin wrote
        if host not in out:
            out.append(host)
    return out


def current_snippet(legacy: bool | None = None) -> tuple[str, str]:
    """(path, text) of the snippet as the config file and the pins call for it now; in the
    mode the existing snippet is in unless ``legacy`` says otherwise."""
    from sshpin.store import pins

    if legacy is None:
        existing, _ = read_text(snippet_path())
        legacy = existing is not None and LEGACY_MARK in existing
    path = config_path()
    providers = parse_file(path, validate_table) if os.path.exists(path) else []
    skipped: list[str] = []
    pinned = pins.hosts(skipped)  # only names valid as hosts reach the ssh config
    if skipped:
        warn(
            "setup",
            f"pins dir {pins.pins_dir()}: {len(skipped)} file(s) not named as a host, left out "
            f"of the ssh config: {', '.join(skipped[:5])}",
            f"remove them from {pins.pins_dir()}",
        )
    if not providers and not pinned:
        raise ConfigError(
            f"setup: no provider in {path} and no pin: run "
            "'sshpin setup --provider NAME --api-url URL [--hosts PATTERN...]'"
        )
    return snippet_path(), render_snippet(providers, path, hook_command(), pinned, legacy)


def refresh_snippet() -> str | None:
    """Rewrite an existing snippet after pins changed; its path if it changed."""
    snippet = snippet_path()
    old, mode = read_text(snippet)
    if old is None:
        return None  # setup was never run: nothing hands hosts to the hook yet
    _, text = current_snippet()
    if text == old:
        return None
    atomic_write(os.path.realpath(snippet), text.encode(), mode if mode is not None else 0o600)
    return snippet


def include_line(snippet: str) -> str:
    return "Include " + _ssh_word(_tilde(snippet), tokens=False)


# ---- ~/.ssh/config ----------------------------------------------------------------------


def directive(line: str) -> tuple[str, str]:
    """(keyword lower-cased, rest) of one ssh_config line; ("", "") for blanks and comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return "", ""
    for i, ch in enumerate(text):
        if ch in " \t=":
            rest = text[i:].lstrip(" \t")
            rest = rest[1:].lstrip(" \t") if rest.startswith("=") else rest
            return text[:i].lower(), rest
    return text.lower(), ""


def _names_snippet(rest: str, snippet: str) -> bool:
    home = real_home()
    for word in rest.split():
        word = word.strip('"')
        if word.startswith("~/"):
            word = os.path.join(home, word[2:])
        if os.path.normpath(word) == os.path.normpath(snippet):
            return True
    return False


def include_state(text: str, snippet: str) -> str:
    """``top`` if an Include of the snippet comes before any Host or Match block,
    ``nested`` if one exists only inside a block, ``absent`` otherwise."""
    in_block = False
    found = "absent"
    for line in text.splitlines():
        keyword, rest = directive(line)
        if keyword in ("host", "match"):
            in_block = True
        elif keyword == "include" and _names_snippet(rest, snippet):
            if not in_block:
                return "top"
            found = "nested"
    return found


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def add_include(text: str, snippet: str) -> str | None:
    """The ssh config with our two lines at its top, or None when an effective one is there."""
    if include_state(text, snippet) == "top":
        return None
    nl = _newline(text)
    return INCLUDE_MARK + nl + include_line(snippet) + nl + text


def remove_include(text: str, snippet: str) -> str | None:
    """The ssh config without the lines setup added, or None when there are none."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    changed = False
    i = 0
    while i < len(lines):
        if lines[i].rstrip("\r\n") == INCLUDE_MARK:
            changed = True
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            keyword, rest = directive(nxt)
            i += 2 if keyword == "include" and _names_snippet(rest, snippet) else 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out) if changed else None


# ---- config.toml ---------------------------------------------------------------------------


def read_text(path: str) -> tuple[str | None, int | None]:
    """A file's text and mode, None for a missing one. Opened as every state file is
    (``open_regular``, links followed: ~/.ssh/config may be one): a FIFO there is refused."""
    from sshpin.core.files import NotRegularFile, open_regular

    real = os.path.realpath(path)
    try:
        fd, st = open_regular(real)
        with open(fd, "rb") as f:
            data = f.read()
        mode = stat.S_IMODE(st.st_mode)
    except FileNotFoundError:
        return None, None
    except NotRegularFile:
        raise ConfigError(f"{path}: not a regular file; not changing it") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    try:
        return data.decode("utf-8"), mode
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; not changing it") from None
