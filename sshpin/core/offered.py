"""The key a server offered (ssh's ``%K``), as the one ``@revoked`` line names it.

When the provider or a pin vouches for a host and the server's key is not among those keys,
the hook names that key ``@revoked`` (lookup.Answer.lines), and ssh refuses it whatever other
file holds it. No policy here: the keys sshpin never vouches for (DSA, short RSA, security
keys, a type it does not know) are exactly the stale ones to refuse. The line holds only the
blob's own type, a strict name (``[a-z0-9][a-z0-9.@-]*``, at most 64 characters: no blank,
newline or marker), and base64 encoded again from the blob (``HostKey.known_hosts_line``).

Not on the hook's cached path: lookup imports it only when a key is to be revoked.
"""

from sshpin.core.keys import (
    MAX_BLOB,
    RSA,
    RSA_MAX_BITS,
    SIGNING_KEY_TYPES,
    HostKey,
    WireReader,
    parse_blob,
)
from sshpin.errors import VerificationError

DSA = "ssh-dss"
CERT_SUFFIX = "-cert-v01@openssh.com"
REVOCABLE_TYPES = SIGNING_KEY_TYPES | {DSA}  # parsed in full; any other type is taken as is
MAX_TYPE = 64
_LEADING = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TYPE_CHARS = _LEADING | frozenset("-.@")


def revoked_line(blob: bytes, token: str, printed: list[str]) -> list[str]:
    """The ``@revoked`` line for ``blob``, host field ``token``, unless ``printed`` has it
    (the provider revoked it itself); none for a blob ``offered_key`` refuses."""
    key = offered_key(blob)
    line = key.known_hosts_line(token, "@revoked") if key is not None else ""
    return [line] if line and line not in printed else []


def offered_key(blob: bytes) -> HostKey | None:
    """``blob`` as a HostKey of its own type, to name in an ``@revoked`` line; None for a
    blob that is no well-formed public key, a type name outside the strict set, or a
    certificate. A type of ``REVOCABLE_TYPES`` must parse in full (RSA of any size); another
    is taken as ssh gave it, its name and bytes being all the line holds."""
    if len(blob) > MAX_BLOB:
        return None
    try:
        key_type = WireReader(blob).string().decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if not (
        0 < len(key_type) <= MAX_TYPE
        and _TYPE_CHARS.issuperset(key_type)
        and key_type[0] in _LEADING
        and not key_type.endswith(CERT_SUFFIX)
    ):
        return None
    if key_type not in REVOCABLE_TYPES:
        return HostKey(key_type, blob)
    if key_type not in (RSA, DSA):
        try:
            return parse_blob(blob, SIGNING_KEY_TYPES)
        except VerificationError:
            return None
    try:
        _integers(blob, key_type)
    except ValueError:
        return None
    return HostKey(key_type, blob)


def _integers(blob: bytes, key_type: str) -> None:
    """An RSA key of any size (``e``, ``n``) or a DSA key (``p``, ``q``, ``g``, ``y``), in
    canonical form with nothing after it; ValueError otherwise."""
    reader = WireReader(blob)
    reader.string()
    if key_type == RSA:
        e, n = reader.mpint(), reader.mpint()
        if e < 3 or not e & 1 or e >= n or not n & 1 or n.bit_length() > RSA_MAX_BITS:
            raise ValueError("bad RSA key")
    else:
        p, q, g, y = reader.mpint(), reader.mpint(), reader.mpint(), reader.mpint()
        if not (q < p and 1 < g < p and 1 < y < p and p & 1 and q & 1):
            raise ValueError("bad DSA key")
    reader.end()
