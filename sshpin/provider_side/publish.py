"""``sshpin publish``: signed host keys as static files, for operators without a service.

From an inventory (JSON) or a directory of collected host keys (``<host>/ssh_host_*_key.pub``,
as copied from a machine's /etc/ssh or from cloud-init's output), it writes into OUT:

    capsuls                     the v1 document (docs/provider-api.md), bound to account and API
    capsuls.sig                 its armored SSHSIG (namespace sshpin-hostkeys), for static hosting
    capsuls.sshpin-signature    the same signature as the Sshpin-Signature header value
    hostkeys/<host>.pub         per-host key files with the v1 binding header (type = "url")
    hostkeys/<host>.pub.sig     their armored SSHSIG

Signing runs the real ``ssh-keygen -Y sign`` with a private key file, or with a public key
file whose private half is in the user's ssh-agent: never a key on the command line. Every
key is checked as sshpin checks it; a key sshpin would refuse is named and nothing is
written. OUT is built beside itself and renamed into place: never half-signed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sshpin.core.keys import KEY_TYPES, HostKey, parse_key_lines
from sshpin.core.names import is_capsul_id, valid_host
from sshpin.core.times import rfc3339
from sshpin.errors import ConfigError, UsageError, VerificationError

MAX_DAYS = 30


@dataclass
class Machine:
    host: str  # the name its key file is published under
    capsul: str  # its capsul id, "" when it has none (then it is published as a url file only)
    keys: list[HostKey]
    name: str = ""
    ipv4: str | None = None
    ipv6: str | None = None


@dataclass
class Inventory:
    account: str
    machines: list[Machine] = field(default_factory=list)


def _keys(text: str, where: str) -> list[HostKey]:
    notes: list[str] = []
    try:
        keys = parse_key_lines(text, True, notes, KEY_TYPES)
    except VerificationError as e:
        raise UsageError(f"publish: {where}: {e}") from None
    if notes:
        raise UsageError(f"publish: {where}: {notes[0]}: sshpin would not serve it; remove it")
    if not keys:
        raise UsageError(f"publish: {where}: no host key")
    return keys


def from_keys_dir(directory: str, account: str) -> Inventory:
    """``DIR/<host>/ssh_host_*_key.pub``: one machine per subdirectory."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"publish: {directory}: not a directory")
    machines = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        host = sub.name.lower()
        if not valid_host(host):
            raise UsageError(f"publish: {sub}: {sub.name!a} is not a host name")
        files = sorted(sub.glob("ssh_host_*_key.pub"))
        if not files:
            raise UsageError(f"publish: {sub}: no ssh_host_*_key.pub file")
        keys = [k for f in files for k in _keys(f.read_text(errors="replace"), str(f))]
        machines.append(Machine(host, host if is_capsul_id(host) else "", keys, host))
    if not machines:
        raise UsageError(f"publish: {directory}: no host directories")
    return Inventory(account, machines)


def from_inventory(path: str) -> Inventory:
    """An inventory JSON: ``{"account": ..., "machines": [{"host", "capsul", "name", "ipv4",
    "ipv6", "keys": [".pub lines"]}]}``."""
    try:
        data = json.loads(Path(path).read_text())
        machines = [
            Machine(
                host=str(m["host"]).lower(),
                capsul=str(m.get("capsul") or ""),
                keys=_keys("\n".join(m["keys"]), f"{path}: {m['host']}"),
                name=str(m.get("name") or ""),
                ipv4=m.get("ipv4"),
                ipv6=m.get("ipv6"),
            )
            for m in data["machines"]
        ]
        inventory = Inventory(str(data["account"]), machines)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"publish: {path}: not an inventory ({type(e).__name__}: {e})") from None
    for m in machines:
        if not valid_host(m.host) or (m.capsul and not is_capsul_id(m.capsul)):
            raise UsageError(f"publish: {path}: {m.host!a} / {m.capsul!a}: not a host or capsul id")
    return inventory


def key_entry(key: HostKey) -> dict[str, str]:
    """One ``ssh_host_keys`` (or ``revoked_keys``) entry: type, base64, SHA256 fingerprint."""
    return {"key_type": key.key_type, "content": key.base64, "sha256": key.sha256()}


def v1_document(
    account: str,
    api: str | None,
    generated_at: str,
    expires: str | None,
    capsuls: list[dict[str, Any]],
    revoked: list[dict[str, str]] | None = None,
    next_page_token: str | None = None,
    page_token: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The v1 document (docs/provider-api.md), field by field. The one place that writes it:
    ``sshpin publish`` and the reference server (so the demo serves what an operator would
    publish)."""
    doc: dict[str, Any] = {"account": account}
    if api:
        doc["api"] = api.rstrip("/")
    doc["generated_at"] = generated_at
    if expires:
        doc["expires"] = expires
    doc["capsuls"] = capsuls
    if revoked:
        doc["revoked_keys"] = revoked
    if host is not None:
        doc["host"] = host  # the ?host= this answer is for (a lookup)
    if page_token is not None:
        doc["page_token"] = page_token  # the token this page answers (a page after the first)
    if next_page_token is not None:
        doc["next_page_token"] = next_page_token
    return doc


def document(inventory: Inventory, api_url: str, now: float, days: int) -> bytes:
    capsuls: list[dict[str, Any]] = [
        {"id": m.capsul, "name": m.name or m.host, "state": "running", "ipv4": m.ipv4,
         "ipv6": m.ipv6, "ssh_host_keys": [key_entry(k) for k in m.keys]}
        for m in inventory.machines if m.capsul
    ]  # fmt: skip
    doc = v1_document(
        inventory.account, api_url, rfc3339(now), rfc3339(now + days * 86400), capsuls
    )
    return json.dumps(doc, indent=1).encode() + b"\n"


def key_file(machine: Machine, now: float, days: int) -> bytes:
    header = (f"# sshpin-hostkeys v1 host={machine.host} generated_at={rfc3339(now)} "
              f"expires={rfc3339(now + days * 86400)}\n")  # fmt: skip
    return (header + "".join(k.openssh() + "\n" for k in machine.keys)).encode()


def sign(data: bytes, key: str, namespace: str = "sshpin-hostkeys") -> str:
    """The armored SSHSIG ``ssh-keygen -Y sign`` makes of ``data`` with ``key``: a private key
    file, or a ``.pub`` file whose private half is in ssh-agent (SSH_AUTH_SOCK)."""
    with tempfile.TemporaryDirectory(prefix="sshpin-publish-") as d:
        path = os.path.join(d, "data")
        with open(path, "wb") as f:
            f.write(data)
        done = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", namespace, path],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise ConfigError(f"publish: ssh-keygen -Y sign with {key}: {why}")
        with open(path + ".sig") as f:
            return f.read()


def publish(inventory: Inventory, out: str, key: str, api_url: str | None, days: int) -> list[str]:
    """Write the signed tree to ``out`` (replacing it whole); return what was written."""
    from sshpin.trust.sshsig import unarmor

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"publish: --days {days}: must be 1 to {MAX_DAYS} (statements expire)")
    if any(m.capsul for m in inventory.machines) and not api_url:
        raise UsageError("publish: --api-url is needed for the capsul document (its binding)")
    now = time.time()
    target = Path(out).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    written: list[str] = []
    try:
        os.chmod(build, 0o755)  # noqa: S103 - static files for a web server: public keys
        if api_url and any(m.capsul for m in inventory.machines):
            body = document(inventory, api_url, now, days)
            armored = sign(body, key)
            (build / "capsuls").write_bytes(body)
            (build / "capsuls.sig").write_text(armored)
            import base64

            header = base64.b64encode(unarmor(armored)).decode()
            (build / "capsuls.sshpin-signature").write_text(header + "\n")
            written.append(f"capsuls: {sum(1 for m in inventory.machines if m.capsul)} capsul(s)")
        (build / "hostkeys").mkdir()
        for m in inventory.machines:
            data = key_file(m, now, days)
            (build / "hostkeys" / f"{m.host}.pub").write_bytes(data)
            (build / "hostkeys" / f"{m.host}.pub.sig").write_text(sign(data, key))
        written.append(f"hostkeys/: {len(inventory.machines)} key file(s) with signatures")
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
        os.rename(build, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return written
