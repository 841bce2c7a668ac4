"""``type = "url"`` key files, decided from bytes: the trust core's rules (trust/verify.py) for
a host's signed key file and its ``.sig``. Pure, as the core is: no file, network or clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from sshpin.core.keys import HostKey
from sshpin.errors import NoKeysError, VerificationError
from sshpin.trust import sshsig
from sshpin.trust.document import parse_timestamp
from sshpin.trust.verify import (
    BadSignature,
    Floors,
    MixAndMatch,
    Unbound,
    check_rollback,
    check_window,
    floor_key,
)

KEY_FILE_HEADER = "# sshpin-hostkeys v1 "


@dataclass(frozen=True)
class KeyFile:
    """A verified signed key file: its keys, its signed times (0, 0: unbound) and signer."""

    keys: list[HostKey]
    generated: float
    expires: float
    signer: str
    notes: list[str] = field(default_factory=list)  # key lines skipped
    warnings: list[str] = field(default_factory=list)


def parse_header(data: bytes, where: str) -> tuple[str, float, float] | None:
    """The first line ``# sshpin-hostkeys v1 host=H generated_at=T expires=T`` as (host,
    generated_at, expires); None when the file has no such line. A line that starts like the
    header but is malformed refuses the file (it is not silently treated as unbound)."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.startswith(b"# sshpin-hostkeys "):
        return None
    if not first.startswith(KEY_FILE_HEADER.encode()):
        raise VerificationError(f"{where}: header line of an unknown version (not v1)")
    try:
        fields = first.decode("ascii").split(" ")[3:]
    except UnicodeDecodeError:
        raise VerificationError(f"{where}: header line is not ASCII") from None
    pairs = [f.partition("=") for f in fields]
    names = [name for name, _, _ in pairs]
    if names != ["host", "generated_at", "expires"] or any(not v for _, _, v in pairs):
        raise VerificationError(
            f"{where}: header line must be '{KEY_FILE_HEADER}host=<host> "
            "generated_at=<RFC 3339> expires=<RFC 3339>'"
        )
    host = pairs[0][2].lower()
    return host, parse_timestamp(pairs[1][2]), parse_timestamp(pairs[2][2], "expires")


def parse_key_file(data: bytes, where: str, notes: list[str] | None = None) -> list[HostKey]:
    """Public key lines; comments and blank lines skipped; lines of a type sshpin does not
    serve (DSA, certificates, security keys, types newer than sshpin...) skipped, each with a
    note in ``notes`` naming the line and type; anything malformed refuses the whole file."""
    from sshpin.core.keys import parse_key_lines

    found: list[str] = []
    try:
        keys = parse_key_lines(data.decode("utf-8"), skip_unsupported=True, notes=found)
    except UnicodeDecodeError:
        raise VerificationError(f"{where}: not UTF-8 text") from None
    except VerificationError as e:
        raise VerificationError(f"{where}: {e}") from None
    if notes is not None:
        notes += [f"{where}: {note}" for note in found]
    if not keys:
        why = f" ({found[0]})" if found else ""
        raise NoKeysError(f"{where}: no usable host key in the file{why}")
    return list(keys)


def verify_key_file(
    body: bytes,
    signature: bytes,
    host: str,
    url: str,
    provider: str,
    signing_keys: list[str],
    allow_unbound: bool,
    now: float,
    floors: Floors | None = None,
    previous: float = 0.0,
) -> KeyFile:
    """A ``type = "url"`` host's key file and its armored ``.sig``: signed by one of
    ``signing_keys``, for ``host``, within its time, not older than one accepted (the floor
    of ``floors`` for the host and signer, and ``previous``: the cached entry's)."""
    from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line

    what = f"provider {provider!r}"
    try:
        text = signature.decode("ascii")
    except UnicodeDecodeError:
        raise BadSignature(f"{what}: {url}.sig is not an armored signature") from None
    allowed = [parse_line(line, SIGNING_KEY_TYPES) for line in signing_keys]
    try:
        signer = sshsig.verify(sshsig.unarmor(text), body, allowed).sha256()
    except VerificationError as e:
        raise BadSignature(f"{what}: signature of {url} refused: {e}") from None
    notes: list[str] = []
    keys = parse_key_file(body, f"{what}: {url}", notes)
    where = f"{what}: key file for {host}"
    header = parse_header(body, where)
    if header is None:
        weakness = "another host's file or an old one could be served in its place"
        if not allow_unbound:
            raise Unbound(
                f"{where}: refused as unbound: it names no host and time (no "
                f"'{KEY_FILE_HEADER.strip()}' first line); {weakness}",
                "have the operator sign files with the header, or set allow_unbound = true",
            )
        warning = f"warning: {where} names no host and time (allow_unbound = true): {weakness}"
        return KeyFile(keys, 0.0, 0.0, signer, notes, [warning])
    named, generated, expires = header
    if named != host:
        raise MixAndMatch(
            f"{where}: refused as mix-and-match: the signed file is for host {named[:80]!r}"
        )
    check_window(generated, expires, now, where, "signed file")
    floor = max((floors or {}).get(floor_key("host", host, signer), 0.0), previous)
    check_rollback(generated, floor, where, "signed file")
    return KeyFile(keys, generated, expires, signer, notes)
