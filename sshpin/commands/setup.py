"""``sshpin setup`` (and its ``--undo``): the ssh side of an installation (man/sshpin.1).

setup writes three things and nothing else:

1. optionally, a ``[[provider]]`` table appended to config.toml, between marker comments that
   carry a hash of the table, so ``--undo`` removes it only while it is exactly as written;
2. the ssh snippet (``ssh_config`` next to config.toml): ``Match`` blocks per provider with
   its ``hosts`` as ssh patterns (``match_lines``: every spelling of a host ssh takes to the
   same machine), ``KnownHostsCommand`` with this sshpin's absolute path, and
   ``StrictHostKeyChecking yes``; the snippet is sshpin's file, rewritten from the config;
3. two lines at the very top of ~/.ssh/config, a marker comment and ``Include <snippet>``, so
   the Include is read before any Host or Match block and so applies to every host.

Every file it changes is first copied to a backup next to it; writes are atomic and keep the
file's mode; a symlinked ~/.ssh/config is written through (dotfile managers keep their link);
CRLF files get CRLF lines. Running setup twice changes nothing the second time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import shutil
import stat
import sys
import sysconfig

from sshpin.core.config import (
    ProviderConfig,
    config_dir,
    config_path,
    parse_document,
    parse_file,
    ports_text,
)
from sshpin.core.files import atomic_write
from sshpin.core.schema import host_pattern
from sshpin.errors import ConfigError, UsageError
from sshpin.errors import say as warn
from sshpin.providers import validate_table

HOOK_ARGS = "known-hosts %I %H %t %K %k %p"
INCLUDE_MARK = "# sshpin: pinned host keys; 'sshpin setup --undo' removes this line and the next"
SNIPPET_HEAD = "# Written by 'sshpin setup' from"
BLOCK_BEGIN = "# sshpin setup added this provider"
BLOCK_END = "# end of the provider sshpin setup added"
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
        existing, _ = _read(snippet_path())
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
    old, mode = _read(snippet)
    if old is None:
        return None  # setup was never run: nothing hands hosts to the hook yet
    _, text = current_snippet()
    if text == old:
        return None
    _write(snippet, text, None, mode, [])
    return snippet


def include_line(snippet: str) -> str:
    return "Include " + _ssh_word(_tilde(snippet), tokens=False)


# ---- ~/.ssh/config ----------------------------------------------------------------------


def _directive(line: str) -> tuple[str, str]:
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
        keyword, rest = _directive(line)
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
            keyword, rest = _directive(nxt)
            i += 2 if keyword == "include" and _names_snippet(rest, snippet) else 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out) if changed else None


# ---- config.toml ---------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def provider_block(name: str, api_url: str, hosts: list[str], ca_bundle: str = "") -> str:
    body = (
        "[[provider]]\n"
        f"name = {_toml_string(name)}\n"
        'type = "capsul"\n'
        f"api_url = {_toml_string(api_url)}\n"
        f"hosts = [{', '.join(_toml_string(h) for h in hosts)}]\n"
    )
    if ca_bundle:
        body += f"ca_bundle = {_toml_string(ca_bundle)}\n"
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    head = f"{BLOCK_BEGIN} (sha256:{digest}); 'sshpin setup --undo' removes it unless edited"
    return f"{head}\n{body}{BLOCK_END}\n"


def remove_blocks(text: str) -> tuple[str, list[str]]:
    """config.toml without the unedited provider tables setup added; and the kept ones' notes."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(BLOCK_BEGIN) and "(sha256:" in line:
            digest = line.split("(sha256:", 1)[1].split(")", 1)[0]
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(BLOCK_END)), -1)
            body = "".join(lines[i + 1 : end]) if end > 0 else ""
            if end > 0 and hashlib.sha256(body.encode()).hexdigest()[:16] == digest:
                if out and out[-1].strip() == "":
                    out.pop()  # the blank line setup put before the block
                i = end + 1
                continue
            kept.append("a provider table setup added was edited since; kept it")
        out.append(line)
        i += 1
    return "".join(out), kept


# ---- files ---------------------------------------------------------------------------------


def _read(path: str) -> tuple[str | None, int | None]:
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


def backup_path(path: str) -> str:
    candidate = path + ".sshpin-backup"
    n = 1
    while os.path.lexists(candidate):
        candidate = f"{path}.sshpin-backup.{n}"
        n += 1
    return candidate


def _write(path: str, text: str, old: str | None, mode: int | None, say: list[str]) -> None:
    """Replace ``path`` atomically with ``text``, its old content first copied to a backup."""
    real = os.path.realpath(path)
    if old is not None:
        backup = backup_path(real)
        atomic_write(backup, old.encode(), mode if mode is not None else 0o600)
        say.append(f"backup: {backup}")
    atomic_write(real, text.encode(), mode if mode is not None else 0o600)


def _ensure_parent(path: str, created: list[str] | None = None) -> None:
    """Make ``path``'s directory (private); the directories made are added to ``created``."""
    parent = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(parent):
        missing = []
        here = parent
        while not os.path.lexists(here) and os.path.dirname(here) != here:
            missing.append(here)
            here = os.path.dirname(here)
        os.makedirs(parent, mode=0o700)
        if created is not None:
            created.extend(reversed(missing))


def created_record() -> str:
    """Where setup notes the files and directories it created, so undo removes exactly those."""
    return os.path.join(config_dir(), ".setup-created")


def _remember_created(paths: list[str]) -> None:
    record = created_record()
    known = _created()
    new = [p for p in paths if p not in known]
    if not new:
        return
    _ensure_parent(record)
    lines = ["# made by 'sshpin setup'; 'sshpin setup --undo' removes them while unchanged"]
    lines += sorted(known) + new
    atomic_write(record, ("\n".join(lines) + "\n").encode())


def _created() -> set[str]:
    text, _ = _read(created_record())
    lines = (text or "").splitlines()
    return {line for line in lines if line.startswith("/")}


def _remove_created_dirs(created: set[str], say: list[str]) -> None:
    """Remove the directories setup made, deepest first, where they are empty again."""
    for path in sorted(created, key=len, reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                os.rmdir(path)
            except OSError:
                continue  # something else lives there now: it stays
            say.append(f"removed {path}, which setup created")


# ---- the command ---------------------------------------------------------------------------


def setup(
    ssh_config: str,
    provider: str | None = None,
    api_url: str | None = None,
    hosts: list[str] | None = None,
    legacy: bool | None = None,
    ca_bundle: str | None = None,
) -> list[str]:
    """Do the setup; return one line per change (empty when nothing needed to change)."""
    say: list[str] = []
    created: list[str] = []  # what did not exist before: undo removes exactly these
    try:
        _setup(ssh_config, provider, api_url, hosts, legacy, say, created, ca_bundle)
    finally:
        if created:
            _remember_created(created)
    return say


def _setup(
    ssh_config: str,
    provider: str | None,
    api_url: str | None,
    hosts: list[str] | None,
    legacy: bool | None,
    say: list[str],
    created: list[str],
    ca_bundle: str | None = None,
) -> None:
    path = config_path()
    if ca_bundle:
        ca_bundle = os.path.abspath(os.path.expanduser(ca_bundle))
        if not os.path.isfile(ca_bundle):
            raise UsageError(f"setup: --ca-bundle {ca_bundle}: no such file")
    hosts = list(dict.fromkeys(hosts)) if hosts else None  # repeated --hosts add up, once each
    if provider is not None:
        _add_provider(path, provider, api_url, hosts or ["capsul-*"], say, created, ca_bundle)
    elif api_url is not None or hosts or ca_bundle:
        raise UsageError("setup: --api-url, --hosts and --ca-bundle need --provider NAME")
    snippet, text = current_snippet(legacy)
    old, mode = _read(snippet)
    if old != text:
        _ensure_parent(snippet, created)
        _write(snippet, text, old, mode, say)
        say.append(f"wrote {snippet}")
    current, mode = _read(ssh_config)
    updated = add_include(current or "", snippet)
    if updated is not None:
        _ensure_parent(ssh_config, created)
        _write(ssh_config, updated, current, mode, say)
        if current is None:
            created.append(os.path.realpath(ssh_config))
        say.append(f"added 'Include {snippet}' at the top of {ssh_config}")


def _add_provider(
    path: str,
    name: str,
    api_url: str | None,
    hosts: list[str],
    say: list[str],
    created: list[str],
    ca_bundle: str | None = None,
) -> None:
    text, mode = _read(path)
    existing = {p.name: p for p in parse_file(path, validate_table)} if text is not None else {}
    if name in existing:
        have = existing[name]
        differs = (api_url is not None and have.get("api_url") != api_url.rstrip("/")) or (
            have.hosts != [host_pattern(h) for h in hosts]
        )
        differs = differs or bool(ca_bundle and have.get("ca_bundle") != ca_bundle)
        if differs:
            raise ConfigError(
                f"setup: {path}: provider {name!r} is already configured differently "
                f"(api_url {have.get('api_url')!r}, hosts {have.hosts}); edit the file instead"
            )
        return
    if api_url is None:
        raise UsageError(f"setup: provider {name!r} is new: give its --api-url")
    block = provider_block(name, api_url, hosts, ca_bundle or "")
    import tomllib

    try:  # validate exactly what will be written, before writing anything
        parse_document(tomllib.loads(block), validate_table, "--provider")
    except ConfigError as e:
        raise UsageError(f"setup: {str(e).removeprefix('--provider: ')}") from None
    base = text or ""
    if base and not base.endswith("\n"):
        base += "\n"
    _ensure_parent(path, created)
    _write(path, base + ("\n" if base else "") + block, text, mode, say)
    if text is None:
        created.append(os.path.realpath(path))
    say.append(f"added provider {name!r} to {path}")


def undo(ssh_config: str) -> list[str]:
    """Remove what setup added: the Include, the snippet, unedited provider tables; and the
    files and directories setup created, where nothing else was put in them since."""
    say: list[str] = []
    snippet = snippet_path()
    created = _created()
    current, mode = _read(ssh_config)
    if current is not None:
        updated = remove_include(current, snippet)
        if updated == "" and os.path.realpath(ssh_config) in created:
            os.unlink(os.path.realpath(ssh_config))
            say.append(f"removed {ssh_config}, which setup created")
        elif updated is not None:
            _write(ssh_config, updated, current, mode, say)
            say.append(f"removed sshpin's Include from {ssh_config}")
    if os.path.exists(snippet):
        os.unlink(snippet)
        say.append(f"removed {snippet}")
    path = config_path()
    text, mode = _read(path)
    if text is not None:
        remaining, notes = remove_blocks(text)
        say.extend(f"{path}: {n}" for n in notes)
        if remaining != text:
            if remaining.strip():
                _write(path, remaining, text, mode, say)
                say.append(f"removed the provider tables setup added to {path}")
            elif remaining == "" and os.path.realpath(path) in created:
                os.unlink(path)
                say.append(f"removed {path}, which setup created")
            else:
                backup = backup_path(path)
                os.replace(path, backup)
                say.append(f"removed {path}, which held only what setup added (moved to {backup})")
    if os.path.exists(created_record()):
        os.unlink(created_record())
    _remove_created_dirs(created, say)
    return say
