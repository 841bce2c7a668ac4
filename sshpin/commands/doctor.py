"""``sshpin doctor``: is everything in place for ssh to pin host keys? One line per check."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import TextIO

from sshpin.commands.proxy import managed_known_hosts
from sshpin.commands.snippet import (
    HOOK_ARGS,
    LEGACY_MARK,
    current_snippet,
    directive,
    hook_command,
    include_state,
    openssh_version,
    proxy_arguments,
    read_text,
    real_home,
    snippet_path,
    ssh_patterns,
)
from sshpin.core import config as config_mod
from sshpin.core.checks import Check
from sshpin.core.files import ensure_dir
from sshpin.errors import AuthError, SshpinError
from sshpin.providers import for_config, load_config, provider_class
from sshpin.store import pins

MIN_OPENSSH = (8, 5)  # the first release with KnownHostsCommand


def sample_host(patterns: list[str]) -> str | None:
    """A host name the first positive pattern matches (``*`` and ``?`` filled in)."""
    for pat in patterns:
        if not pat.startswith("!"):
            sample = pat.replace("*", "doctor" if pat == "*" else "x").replace("?", "x")
            if not any(sample == n[1:] for n in patterns if n.startswith("!")):
                return sample
    return None


def effective(ssh: str, ssh_config: str, explicit: bool, host: str) -> dict[str, str]:
    """What ``ssh -G host`` says ssh would use: the real client's own reading of the config."""
    argv = [ssh, "-G", *(["-F", ssh_config] if explicit else []), "--", host]
    done = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=20
    )
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise SshpinError(f"ssh -G {host}: {first}")
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, value)
    return out


def run(ssh_config: str, explicit: bool, check_providers: bool = True) -> list[Check]:
    checks: list[Check] = []
    ssh = shutil.which("ssh")
    if not ssh:
        return [Check("openssh", False, "ssh not found on PATH", "install OpenSSH's client")]
    version_text, version = openssh_version(ssh)
    existing, _ = read_text(snippet_path())
    legacy = existing is not None and LEGACY_MARK in existing
    if version is None:
        checks.append(
            Check("openssh", False, f"cannot tell the version of {ssh}: {version_text!r}")
        )
    elif version < MIN_OPENSSH and legacy:
        checks.append(
            Check("openssh", True, f"{version_text}: legacy mode (ProxyCommand) is set up")
        )
    elif version < MIN_OPENSSH:
        checks.append(
            Check(
                "openssh",
                False,
                f"{version_text} predates KnownHostsCommand (OpenSSH 8.5)",
                "sshpin setup --legacy (or upgrade OpenSSH to 8.5 or later)",
            )
        )
    else:
        mode = "; legacy mode is set up" if legacy else ""
        checks.append(Check("openssh", True, f"{version_text} supports KnownHostsCommand{mode}"))

    path = config_mod.config_path()
    first = "sshpin setup"  # the include check's fix: what works now
    try:
        cfg = load_config(path)
    except SshpinError as e:
        checks.append(Check("config", False, str(e), f"edit {path}; see sshpin.conf(5)"))
        cfg = None
        first = "sshpin setup, once the config is fixed"
    else:
        if cfg is None or not cfg.providers:
            first = "sshpin setup --provider NAME --api-url URL"
            checks.append(
                Check(
                    "config",
                    False,
                    f"no provider configured in {path}",
                    "sshpin setup --provider NAME --api-url URL",
                )
            )
            cfg = None
        else:
            names = ", ".join(p.name for p in cfg.providers)
            checks.append(
                Check("config", True, f"{path}: {len(cfg.providers)} provider(s): {names}")
            )

    snippet = snippet_path()
    if cfg is not None:
        _, want = current_snippet(legacy)  # setup's own builder: the config and every pin
        have, _ = read_text(snippet)
        if have == want:
            checks.append(Check("snippet", True, f"{snippet} is up to date"))
        else:
            why = "missing" if have is None else "out of date with the config or this sshpin"
            checks.append(Check("snippet", False, f"{snippet} is {why}", "sshpin setup"))
    text, _ = read_text(ssh_config)
    state = include_state(text or "", snippet)
    if state == "top":
        checks.append(Check("include", True, f"{ssh_config} includes {snippet} before any Host"))
    else:
        where = "only inside a Host or Match block" if state == "nested" else "no Include of"
        checks.append(Check("include", False, f"{ssh_config} has {where} {snippet}", first))

    checks.append(_home_check(ssh, ssh_config, explicit, path))

    if cfg is not None and version is not None:
        hook = " ".join(hook_command()) + " " + HOOK_ARGS
        proxy = " ".join(hook_command()) + " " + proxy_arguments()
        for p in cfg.providers:
            sample = sample_host(ssh_patterns(p.hosts)[0])
            if sample is None:
                continue
            try:  # the sample as the patterns spell it, then as typed in capitals with a dot
                for host in (sample, sample.upper() + "."):
                    seen = effective(ssh, ssh_config, explicit, host)
                    if _hook_and_strict(seen, hook, proxy, legacy) is not None:
                        break
            except SshpinError as e:
                checks.append(Check(f"ssh {p.name}", False, str(e), f"fix {ssh_config}"))
                continue
            strict = seen.get("stricthostkeychecking", "")
            what = "proxycommand" if legacy else "knownhostscommand"
            command = seen.get(what, "none")
            if _hook_and_strict(seen, hook, proxy, legacy) is None:
                ports = config_mod.ports_text(p.ports)
                checks.append(
                    Check(
                        f"ssh {p.name}",
                        True,
                        f"ssh -G {sample} (and {host}): sshpin hook, strict checking; the "
                        f"provider vouches on port(s) {ports} (see 'ports' in sshpin.conf(5))",
                    )
                )
            else:
                checks.append(
                    Check(
                        f"ssh {p.name}",
                        False,
                        f"ssh -G {host}: {what} {command}, "
                        f"stricthostkeychecking {strict or 'unset'}",
                        "sshpin setup; an earlier KnownHostsCommand or StrictHostKeyChecking "
                        "line for this host wins over sshpin's",
                    )
                )

    if cfg is not None and version is not None and not legacy:
        hook = " ".join(hook_command()) + " " + HOOK_ARGS
        for name, hostname in capsul_blocks(text or ""):
            checks.append(_block_check(ssh, ssh_config, explicit, cfg, hook, name, hostname))

    if cfg is not None:  # offline: the providers whose check reads local files only
        for p in cfg.providers:
            if check_providers or provider_class(p.type).local:
                checks.append(_provider_check(p))

    cache = config_mod.cache_dir()
    try:  # looked at, never made: doctor changes nothing on disk
        ensure_dir(cache, create=False)
        checks.append(Check("cache", True, f"{cache} is private to you"))
    except FileNotFoundError:
        checks.append(Check("cache", True, f"{cache} does not exist yet (made at the first fetch)"))
    except SshpinError as e:
        checks.append(Check("cache", False, str(e), f"chmod 700 {cache}, or remove it"))
    except OSError as e:
        checks.append(Check("cache", False, f"{cache}: {e.strerror}", "check its parent"))

    if cfg is not None:  # from the cache and pins only: local, --offline included
        from sshpin.commands.stale import stale_lines

        default = f"{real_home()}/.ssh/known_hosts"
        checks += stale_lines(_user_known_hosts(ssh, ssh_config, explicit), cfg, default)
    return checks


def _hook_and_strict(seen: dict[str, str], hook: str, proxy: str, legacy: bool) -> str | None:
    """None when ``ssh -G`` shows sshpin's hook (or legacy ProxyCommand) and strict checking;
    else what is missing."""
    if legacy:
        ok = seen.get("proxycommand") == proxy and managed_known_hosts() in _expanded(seen)
    else:
        ok = seen.get("knownhostscommand") == hook
    if not ok:
        return "proxycommand" if legacy else "knownhostscommand"
    return None if seen.get("stricthostkeychecking") == "true" else "stricthostkeychecking"


def _user_known_hosts(ssh: str, ssh_config: str, explicit: bool) -> list[str]:
    """The user's known_hosts files as ssh reads them (``ssh -G``), sshpin's managed one not
    among them; ssh's defaults when ssh cannot tell."""
    try:
        files = _expanded(effective(ssh, ssh_config, explicit, "sshpin-doctor.invalid"))
    except SshpinError:
        files = []
    files = files or [f"{real_home()}/.ssh/known_hosts", f"{real_home()}/.ssh/known_hosts2"]
    return [f for f in files if f != managed_known_hosts()]


def capsul_blocks(text: str) -> list[tuple[str, str]]:
    """(name, HostName) of each ``Host`` block of an ssh config whose literal name or HostName
    looks like a capsul (``capsul-...``): the ones a user means sshpin to pin. ``Include``d
    files are not followed; ``Match`` blocks name no host."""
    from sshpin.core.names import is_capsul_id

    blocks: list[tuple[list[str], str]] = []
    for line in text.splitlines():
        key, rest = directive(line)
        if key == "host":
            literal = [w.strip('"').lower() for w in rest.split()]
            blocks.append(([w for w in literal if not any(c in w for c in "*?!")], ""))
        elif key == "match":
            blocks.append(([], ""))
        elif key == "hostname" and blocks and not blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], rest.split()[0].strip('"').lower() if rest else "")
    out: list[tuple[str, str]] = []
    for names, hostname in blocks:
        for name in names:
            if is_capsul_id(name) or name.startswith("capsul") or is_capsul_id(hostname):
                out.append((name, hostname))
    return out


def _block_check(
    ssh: str,
    ssh_config: str,
    explicit: bool,
    cfg: config_mod.Config,
    hook: str,
    name: str,
    hostname: str,
) -> Check:
    """Can sshpin vouch for ``Host name`` (``HostName hostname``)? The hook is handed the name
    as ``%k`` and the HostName as ``%H``: a provider (or a pin) must cover one of them, and
    ssh must run the hook for the name."""
    from sshpin.providers import provider_for

    label = f"host {name}"
    shown = f"{ssh_config}: Host {name}" + (f" (HostName {hostname})" if hostname else "")
    covered = provider_for(cfg, name) or (hostname and provider_for(cfg, hostname))
    if not covered and name not in pins.hosts() and hostname not in pins.hosts():
        return Check(
            label,
            False,
            f"{shown} looks like a capsul, but no provider's hosts name it"
            + (f" or {hostname}" if hostname else "")
            + ": ssh falls back to known_hosts for it",
            f"add {name!r} (or a pattern such as 'capsul-*') to a provider's hosts in "
            f"{config_mod.config_path()}, then sshpin setup",
        )
    try:
        seen = effective(ssh, ssh_config, explicit, name)
    except SshpinError as e:
        return Check(label, False, str(e), f"fix {ssh_config}")
    if seen.get("knownhostscommand", "none") != hook:
        return Check(
            label,
            False,
            f"{shown}: ssh -G {name} does not run sshpin's hook",
            "sshpin setup (the snippet's Match patterns must match the name you type)",
        )
    return Check(label, True, f"{shown}: sshpin vouches for it")


def _home_check(ssh: str, ssh_config: str, explicit: bool, config_path: str) -> Check:
    """Which files ssh reads (from the password database's home, never $HOME) and whether
    $HOME, where sshpin's own files are, is somewhere else."""
    import os

    home = os.environ.get("HOME") or real_home()
    account = real_home()
    reads = [ssh_config] if explicit else [ssh_config, "/etc/ssh/ssh_config"]
    try:
        seen = effective(ssh, ssh_config, explicit, "sshpin-doctor.invalid")
        known = _expanded(seen) + seen.get("globalknownhostsfile", "").split()
    except SshpinError:
        known = []
    files = f"ssh reads {' and '.join(reads)}" + (
        f", known hosts {' '.join(known)}" if known else ""
    )
    if os.path.realpath(home) == os.path.realpath(account):
        return Check("home", True, f"{files}; sshpin reads {config_path}")
    under = os.path.realpath(config_path).startswith(os.path.realpath(home).rstrip("/") + "/")
    return Check(
        "home",
        True,
        f"$HOME is {home}, not the account's home {account}: ssh ignores $HOME, so {files}; "
        f"sshpin reads {config_path}"
        + (" (found through $HOME: an ssh started with another HOME will not)" if under else ""),
    )


def _expanded(seen: dict[str, str]) -> list[str]:
    """The user known_hosts files ssh -G reports, ~ expanded as ssh does."""
    files = seen.get("userknownhostsfile", "").split()
    return [real_home() + f[1:] if f.startswith("~/") else f for f in files]


def _provider_check(p: config_mod.ProviderConfig) -> Check:
    name = f"provider {p.name}"
    try:
        started = time.monotonic()
        detail = for_config(p).check()
    except AuthError as e:
        from sshpin.trust.credentials import token_hint

        return Check(name, False, str(e), e.hint or token_hint(p.name, p.get("token_command")))
    except SshpinError as e:
        return Check(
            name, False, str(e), e.hint or "check the provider's URL, the network, and ca_bundle"
        )
    ms = (time.monotonic() - started) * 1000
    return Check(name, True, f"{detail}, {ms:.0f} ms; port(s) {config_mod.ports_text(p.ports)}")


def report_ok(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)


def cmd_doctor(path: str, explicit: bool, offline: bool, as_json: bool, out: TextIO) -> int:
    """``sshpin doctor``: one line per check on ``out`` (``--json``: one document)."""
    from sshpin.errors import EXIT_OK, EXIT_USAGE

    checks = run(path, explicit, check_providers=not offline)
    if as_json:
        import json

        doc = {"ok": report_ok(checks), "checks": [c.as_dict() for c in checks]}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        for c in checks:
            out.write(c.line() + "\n")
    return EXIT_OK if report_ok(checks) else EXIT_USAGE
