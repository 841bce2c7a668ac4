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

import hashlib
import os
from typing import TextIO

from sshpin.commands.snippet import (
    add_include,
    current_snippet,
    read_text,
    remove_include,
    snippet_path,
)
from sshpin.core.config import (
    config_dir,
    config_path,
    parse_document,
    parse_file,
)
from sshpin.core.files import atomic_write
from sshpin.core.schema import host_pattern
from sshpin.errors import ConfigError, UsageError
from sshpin.providers import validate_table

BLOCK_BEGIN = "# sshpin setup added this provider"
BLOCK_END = "# end of the provider sshpin setup added"


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
    text, _ = read_text(created_record())
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
    old, mode = read_text(snippet)
    if old != text:
        _ensure_parent(snippet, created)
        _write(snippet, text, old, mode, say)
        say.append(f"wrote {snippet}")
    current, mode = read_text(ssh_config)
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
    text, mode = read_text(path)
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
    current, mode = read_text(ssh_config)
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
    text, mode = read_text(path)
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


def cmd_setup(
    path: str,
    undo_it: bool,
    provider: str | None,
    api_url: str | None,
    hosts: list[str] | None,
    legacy: bool,
    ca_bundle: str | None,
    out: TextIO,
) -> int:
    """``sshpin setup`` (``--undo``): the changes made, one per line, on ``out``."""
    from sshpin.errors import EXIT_OK

    if undo_it:
        if provider or api_url or hosts or ca_bundle:
            raise UsageError("setup: --undo takes no --provider, --api-url, --hosts or --ca-bundle")
        changes = undo(path)
    else:
        changes = setup(path, provider, api_url, hosts, True if legacy else None, ca_bundle)
    for line in changes or [
        "nothing to change: already set up" if not undo_it else "nothing to undo"
    ]:
        out.write(line + "\n")
    if provider and any(line.startswith("added provider") for line in changes):
        out.write(f"next: sshpin login {provider}, then sshpin doctor\n")
    return EXIT_OK
