"""``sshpin doctor``: is everything in place for ssh to pin host keys? One line per check."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from sshpin import config as config_mod
from sshpin import pins
from sshpin.errors import AuthError, SshpinError
from sshpin.proxy import managed_known_hosts
from sshpin.sshconfig import (
    HOOK_ARGS,
    LEGACY_MARK,
    _read,
    hook_command,
    include_state,
    render_snippet,
    snippet_path,
    ssh_patterns,
)

MIN_OPENSSH = (8, 5)  # the first release with KnownHostsCommand


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok' if self.ok else 'FAIL':<4}  {self.name}: {self.detail}"
        return text + (f" (fix: {self.fix})" if self.fix and not self.ok else "")

    def as_dict(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def openssh_version(ssh: str) -> tuple[str, tuple[int, int] | None]:
    done = subprocess.run(
        [ssh, "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10
    )
    text = (done.stderr or done.stdout).strip().splitlines()
    first = text[0] if text else ""
    m = re.match(r"OpenSSH_(\d+)\.(\d+)", first)
    return first, (int(m.group(1)), int(m.group(2))) if m else None


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
    existing, _ = _read(snippet_path())
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
    try:
        cfg = config_mod.load(path)
    except SshpinError as e:
        checks.append(Check("config", False, str(e), f"edit {path}; see sshpin.conf(5)"))
        cfg = None
    else:
        if cfg is None or not cfg.providers:
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
        want = render_snippet(cfg.providers, path, hook_command(), pins.hosts(), legacy)
        have, _ = _read(snippet)
        if have == want:
            checks.append(Check("snippet", True, f"{snippet} is up to date"))
        else:
            why = "missing" if have is None else "out of date with the config or this sshpin"
            checks.append(Check("snippet", False, f"{snippet} is {why}", "sshpin setup"))
    text, _ = _read(ssh_config)
    state = include_state(text or "", snippet)
    if state == "top":
        checks.append(Check("include", True, f"{ssh_config} includes {snippet} before any Host"))
    else:
        where = "only inside a Host or Match block" if state == "nested" else "no Include of"
        checks.append(
            Check("include", False, f"{ssh_config} has {where} {snippet}", "sshpin setup")
        )

    if cfg is not None and version is not None:
        hook = " ".join(hook_command()) + " " + HOOK_ARGS
        proxy = " ".join(hook_command()) + " proxy %h %p"
        for p in cfg.providers:
            host = sample_host(ssh_patterns(p.hosts)[0])
            if host is None:
                continue
            try:
                seen = effective(ssh, ssh_config, explicit, host)
            except SshpinError as e:
                checks.append(Check(f"ssh {p.name}", False, str(e), f"fix {ssh_config}"))
                continue
            strict = seen.get("stricthostkeychecking", "")
            if legacy:
                command = seen.get("proxycommand", "none")
                ok = command == proxy and managed_known_hosts() in _expanded(seen)
                what = "proxycommand"
            else:
                command = seen.get("knownhostscommand", "none")
                ok = command == hook
                what = "knownhostscommand"
            if ok and strict == "true":
                checks.append(
                    Check(f"ssh {p.name}", True, f"ssh -G {host}: sshpin hook, strict checking")
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

    if cfg is not None and check_providers:
        for p in cfg.providers:
            checks.append(_provider_check(p))

    cache = config_mod.cache_dir()
    try:
        from sshpin.cache import ensure_dir

        ensure_dir(cache)
        checks.append(Check("cache", True, f"{cache} is private to you"))
    except SshpinError as e:
        checks.append(Check("cache", False, str(e), f"chmod 700 {cache}, or remove it"))
    except OSError as e:
        checks.append(Check("cache", False, f"{cache}: {e.strerror}", "check its parent"))
    return checks


def _expanded(seen: dict[str, str]) -> list[str]:
    """The user known_hosts files ssh -G reports, ~ expanded as ssh does."""
    from sshpin.sshconfig import real_home

    files = seen.get("userknownhostsfile", "").split()
    return [real_home() + f[1:] if f.startswith("~/") else f for f in files]


def _provider_check(p: config_mod.ProviderConfig) -> Check:
    name = f"provider {p.name}"
    if p.type == "cert-authority":
        from sshpin.hostkeys import ca_keys

        notes: list[str] = []
        try:
            count = len(ca_keys(p, notes))
        except SshpinError as e:
            return Check(name, False, str(e), "fix ca_keys or ca_key_files")
        skipped = f"; {len(notes)} skipped, first: {notes[0]}" if notes else ""
        return Check(name, True, f"{count} CA key(s){skipped}")
    if p.type == "url":
        count = len(p.get("signing_keys"))
        return Check(name, True, f"{count} signing key(s); key files are fetched per host")
    from sshpin.providers import for_config

    try:
        provider = for_config(p)
        started = time.monotonic()
        doc = provider.fetch(None, time.time())
    except AuthError as e:
        return Check(name, False, str(e), f"sshpin login {p.name}")
    except SshpinError as e:
        return Check(name, False, str(e), "check the provider's URL, the network, and ca_bundle")
    ms = (time.monotonic() - started) * 1000
    return Check(name, True, f"{provider.source()}: {len(doc.capsuls)} capsul(s), {ms:.0f} ms")


def report_ok(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)
