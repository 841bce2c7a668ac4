"""SSH public host keys: parse, validate, fingerprint, render.

Standard library only (hashlib when a fingerprint is asked for): the hook re-parses every key
it prints, even from its own cache, so that nothing but validated key material can ever reach
ssh. A key is accepted only when its wire-format blob decodes exactly (no trailing bytes,
canonical integers, a point on the named curve) and its type is one we allow.

Base64 is done here with ``int`` and ``bytes.translate``, not ``binascii``: that is an
extension module, and loading it cost the hook's cached path 0.7M instructions (2.7% of a
bare interpreter's start) for the two or three keys it decodes and encodes.
"""

from sshpin.errors import UnsupportedKeyError, VerificationError

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_CURVES = {
    # key type: (curve name inside the blob, field size in bytes, p, b); a = -3 for all three.
    "ecdsa-sha2-nistp256": (
        "nistp256",
        32,
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    ),
    "ecdsa-sha2-nistp384": (
        "nistp384",
        48,
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            16,
        ),
    ),
    "ecdsa-sha2-nistp521": (
        "nistp521",
        66,
        2**521 - 1,
        int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
    ),
}
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
KEY_TYPES = frozenset([ED25519, RSA, *ECDSA_CURVES])  # host key types sshpin serves
SK_TYPES = frozenset([SK_ED25519, SK_ECDSA])  # security keys (FIDO): signing and CA keys only
SIGNING_KEY_TYPES = KEY_TYPES | SK_TYPES  # SSHSIG signers and certificate authorities
MARKERS = ("@cert-authority", "@revoked")
MAX_APPLICATION = 256  # a security key's application string ("ssh:" for ssh-keygen's keys)
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384
MAX_BLOB = 4096  # an RSA-16384 blob is about 2 KiB; anything larger is not a host key
_B64CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class HostKey:
    """A validated public host key: its type name and its exact wire-format blob."""

    __slots__ = ("blob", "key_type")

    def __init__(self, key_type: str, blob: bytes) -> None:
        self.key_type = key_type
        self.blob = blob

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostKey) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    def __repr__(self) -> str:
        return f"HostKey({self.key_type!r}, {self.sha256()!r})"

    @property
    def base64(self) -> str:
        return encode_base64(self.blob)

    def openssh(self) -> str:
        """``type base64``, as in a ``.pub`` file without its comment."""
        return f"{self.key_type} {self.base64}"

    def known_hosts_line(self, host: str, marker: str = "") -> str:
        """``host type base64``, or ``@marker host type base64`` (``@revoked``...)."""
        line = f"{host} {self.key_type} {self.base64}"
        return f"{marker} {line}" if marker else line

    def sha256(self) -> str:
        """The fingerprint as ssh shows it: ``SHA256:`` and unpadded base64."""
        import hashlib

        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + encode_base64(digest).rstrip("=")

    def md5(self) -> str:
        import hashlib

        digest = hashlib.md5(self.blob, usedforsecurity=False).hexdigest()
        return "MD5:" + ":".join(digest[i : i + 2] for i in range(0, 32, 2))

    def bits(self) -> int:
        """Key size as ``ssh-keygen -l`` reports it."""
        if self.key_type in (ED25519, SK_ED25519, SK_ECDSA):
            return 256
        if self.key_type == RSA:
            reader = WireReader(self.blob)
            reader.string()
            reader.mpint()
            return reader.mpint().bit_length()
        return {"nistp256": 256, "nistp384": 384, "nistp521": 521}[ECDSA_CURVES[self.key_type][0]]

    def type_label(self) -> str:
        """The short label ``ssh-keygen -l`` prints in parentheses (``ED25519``, ``RSA``...)."""
        if self.key_type == ED25519:
            return "ED25519"
        if self.key_type == RSA:
            return "RSA"
        if self.key_type == SK_ED25519:
            return "ED25519-SK"
        if self.key_type == SK_ECDSA:
            return "ECDSA-SK"
        return "ECDSA"

    def application(self) -> str:
        """A security key's application string (``ssh:``...); empty for other keys."""
        if self.key_type not in SK_TYPES:
            return ""
        reader = WireReader(self.blob)
        for _ in range(3 if self.key_type == SK_ECDSA else 2):
            reader.string()
        return reader.string().decode("utf-8")


class WireReader:
    """Reads RFC 4251 wire-format fields, raising ValueError on anything malformed: the one
    reader of key blobs here and of SSHSIG signatures (trust/sshsig.py)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated field")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uint32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated length field")
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        n = self.uint32()
        if self.pos + n > len(self.data):
            raise ValueError("truncated string")
        return self.take(n)

    def mpint(self) -> int:
        raw = self.string()
        if not raw:
            return 0
        if raw[0] & 0x80:
            raise ValueError("negative integer")
        if raw[0] == 0 and (len(raw) == 1 or not raw[1] & 0x80):
            raise ValueError("integer not in canonical form")
        return int.from_bytes(raw, "big")

    def end(self, what: str = "the key") -> None:
        if self.pos != len(self.data):
            raise ValueError(f"trailing bytes after {what}")


# string "ssh-ed25519", then the length of a 32-byte string: 51 bytes in all with the key
_ED25519_PREFIX = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"


# Base64 through octal. A base64 character is a 6-bit value, which is two octal digits: the
# octal numeral of the whole value is the characters' digit pairs, in order, and ``int`` and
# ``format`` convert octal numerals of any length in linear time. Translation tables carry
# characters to digits and back; adding two integers whose bytes are at most 56 and 7 carries
# nothing, so it puts a high and a low digit together into one byte per character.
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_OCTAL = b"01234567"
_HIGH_DIGIT = bytes.maketrans(_ALPHABET, b"".join(bytes([d]) * 8 for d in _OCTAL))
_LOW_DIGIT = bytes.maketrans(_ALPHABET, _OCTAL * 8)
_HIGH_VALUE = bytes.maketrans(_OCTAL, bytes(range(0, 64, 8)))
_LOW_VALUE = bytes.maketrans(_OCTAL, bytes(range(8)))
_CHARACTER = bytes.maketrans(bytes(range(64)), _ALPHABET)


def encode_base64(blob: bytes) -> str:
    """Standard base64 with padding, as ``binascii.b2a_base64(blob, newline=False)``."""
    if not blob:
        return ""
    pad = -len(blob) % 3
    chars = (len(blob) + pad) // 3 * 4
    digits = format(int.from_bytes(blob + b"\0" * pad, "big"), "o").encode().zfill(2 * chars)
    high = int.from_bytes(digits[0::2].translate(_HIGH_VALUE), "big")
    low = int.from_bytes(digits[1::2].translate(_LOW_VALUE), "big")
    text = (high + low).to_bytes(chars, "big").translate(_CHARACTER)
    return (text[: chars - pad] + b"=" * pad).decode("ascii")


def decode_base64(text: str) -> bytes:
    """Strict, canonical base64: the only form ssh writes, and the only one we accept."""
    raw = text.encode("ascii", "replace")
    if not raw or not _B64CHARS.issuperset(raw) or len(raw) % 4:
        raise ValueError("not canonical base64")
    body = raw.rstrip(b"=")
    pad = len(raw) - len(body)
    if pad > 2 or b"=" in body:
        raise ValueError("not canonical base64")
    full = body + b"A" * pad  # "A" is 0: the padding's bits, dropped below
    high = "0".join(full.translate(_HIGH_DIGIT).decode()) + "0"
    low = "0".join(full.translate(_LOW_DIGIT).decode())
    value = int(high, 8) + int(low, 8)
    blob = value.to_bytes(len(raw) // 4 * 3, "big")[: len(raw) // 4 * 3 - pad]
    if encode_base64(blob) != text:  # bits under the padding that are not zero
        raise ValueError("not canonical base64")
    return blob


def parse_blob(blob: bytes, types: frozenset[str] = KEY_TYPES) -> "HostKey":
    """Validate a wire-format public key blob of one of ``types`` (by default the host key
    types); raise VerificationError naming the problem, UnsupportedKeyError for a well-formed
    blob of another type."""
    if len(blob) == 51 and blob.startswith(_ED25519_PREFIX) and ED25519 in types:
        return HostKey(ED25519, blob)  # the common case, fully checked by length and prefix
    if len(blob) > MAX_BLOB:
        raise VerificationError(f"key blob too large ({len(blob)} bytes)")
    reader = WireReader(blob)
    try:
        name_raw = reader.string()
        key_type = name_raw.decode("ascii")
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError(f"malformed key blob: {e}") from e
    if not key_type.isprintable() or len(key_type) > 64:
        raise VerificationError("malformed key type in blob")
    if key_type not in types:
        raise UnsupportedKeyError(_unsupported(key_type))
    try:
        if key_type in (ED25519, SK_ED25519):
            if len(reader.string()) != 32:
                raise ValueError("Ed25519 key is not 32 bytes")
        elif key_type == RSA:
            exponent = reader.mpint()
            n = reader.mpint()
            if exponent < 3 or not exponent & 1:
                raise ValueError("bad RSA public exponent")
            if n.bit_length() < RSA_MIN_BITS:
                raise UnsupportedKeyError(
                    f"RSA key of {n.bit_length()} bits refused (minimum {RSA_MIN_BITS})"
                )
            if n.bit_length() > RSA_MAX_BITS or not n & 1:
                raise ValueError("bad RSA modulus")
            if exponent >= n:
                raise ValueError("RSA public exponent is not smaller than the modulus")
        else:
            curve, size, p, b = ECDSA_CURVES[
                "ecdsa-sha2-nistp256" if key_type == SK_ECDSA else key_type
            ]
            if reader.string() != curve.encode():
                raise ValueError("curve name does not match key type")
            point = reader.string()
            if len(point) != 1 + 2 * size or point[0] != 4:
                raise ValueError("ECDSA point is not an uncompressed point of the curve")
            x = int.from_bytes(point[1 : 1 + size], "big")
            y = int.from_bytes(point[1 + size :], "big")
            if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
                raise ValueError("ECDSA point is not on the curve")
        if key_type in SK_TYPES:
            application = reader.string()
            if not 0 < len(application) <= MAX_APPLICATION or b"\0" in application:
                raise ValueError("malformed security-key application string")
            application.decode("utf-8")  # UnicodeDecodeError is a ValueError
        reader.end()
    except ValueError as e:
        raise VerificationError(f"malformed {key_type} key: {e}") from e
    return HostKey(key_type, blob)


def _unsupported(key_type: str) -> str:
    """Why a key of ``key_type`` is not used here, naming the type."""
    if key_type == "ssh-dss":
        return "ssh-dss (DSA) keys are refused (weak, removed from OpenSSH)"
    if key_type.endswith("-cert-v01@openssh.com"):
        return f"{_show(key_type)} is a certificate, not a plain key"
    if key_type in SK_TYPES:
        return f"{key_type} is a security-key type: not a host key"
    return f"unsupported key type {_show(key_type)}"


def parse_key(key_type: str, content: str) -> "HostKey":
    """A key given as declared type and base64 blob (a provider's ``key_type``/``content``)."""
    try:
        blob = decode_base64(content)
    except ValueError as e:
        raise VerificationError(f"key content: {e}") from e
    try:
        embedded = WireReader(blob).string()
    except ValueError as e:
        raise VerificationError(f"malformed key blob: {e}") from e
    if embedded != key_type.encode("utf-8", "replace"):
        # Checked before the full parse, so that a mismatch is always an error and never
        # passes as a merely unsupported (skipped) key.
        raise VerificationError(
            f"declared key type {_show(key_type)} differs from the type inside the key"
        )
    return parse_blob(blob)


class KeyLine:
    """One parsed key line: ``[marker] hosts type base64 [comment]`` (known_hosts form, hosts
    set) or ``type base64 [comment]`` (``.pub`` form, hosts empty)."""

    __slots__ = ("comment", "hosts", "key", "marker")

    def __init__(self, marker: str, hosts: str, key: "HostKey", comment: str) -> None:
        self.marker = marker
        self.hosts = hosts
        self.key = key
        self.comment = comment


def _typed_blob(declared: str, field: str) -> bytes | None:
    """``field`` decoded, when it is canonical base64 of a blob whose embedded type string is
    exactly ``declared``; None otherwise."""
    try:
        blob = decode_base64(field)
    except ValueError:
        return None
    try:
        embedded = WireReader(blob).string()
    except ValueError:
        return None
    return blob if embedded == declared.encode("utf-8", "replace") else None


def parse_key_line(
    line: str, types: frozenset[str] = KEY_TYPES, markers: bool = False
) -> "KeyLine":
    """Parse one key line, telling the ``.pub`` form from the known_hosts form by structure:
    ``.pub`` when field 2 is canonical base64 of a blob whose own type is field 1, known_hosts
    when field 3 is one whose type is field 2. Never by whether the type is known: a line of a
    type not in ``types`` raises UnsupportedKeyError naming it, anything malformed a
    VerificationError naming the problem. Markers are refused unless ``markers``."""
    fields = line.split()
    if not fields:
        raise VerificationError("empty key line")
    marker = ""
    if fields[0].startswith("@"):
        if not markers or fields[0] not in MARKERS:
            raise VerificationError(f"marker {_show(fields[0])} is not allowed here")
        marker, fields = fields[0], fields[1:]
    blob, hosts, rest = None, "", 2
    if not marker and len(fields) >= 2:
        blob = _typed_blob(fields[0], fields[1])
    if blob is None and len(fields) >= 3:
        blob = _typed_blob(fields[1], fields[2])
        hosts, rest = fields[0], 3
    if blob is None:
        raise _malformed(fields, marker)
    return KeyLine(marker, hosts, parse_blob(blob, types), " ".join(fields[rest:]))


_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.@")


def _looks_like_type(field: str) -> bool:
    return (
        field in SIGNING_KEY_TYPES
        or field == "ssh-dss"
        or ("-" in field and _TYPE_CHARS.issuperset(field) and not field.startswith("-"))
    )


def _malformed(fields: list[str], marker: str) -> "VerificationError":
    """The real problem of a line that is neither form."""
    if len(fields) < (3 if marker else 2):
        return VerificationError(
            "key line needs a host, a key type and a base64 key"
            if marker
            else "key line needs a key type and a base64 key"
        )
    pairs = [(1, 2)] if marker else [(0, 1), (1, 2)]
    for t, b in pairs:
        if b >= len(fields):
            continue
        try:
            blob = decode_base64(fields[b])
        except ValueError:
            continue
        try:
            embedded = WireReader(blob).string().decode("ascii", "replace")
        except ValueError as e:
            if not _looks_like_type(fields[t]):
                continue  # a word that happens to be base64 ("some"), not a key
            return VerificationError(f"malformed key blob after {_show(fields[t])}: {e}")
        if not (_looks_like_type(fields[t]) or _looks_like_type(embedded)):
            continue
        return VerificationError(
            f"declared key type {_show(fields[t])} differs from the type inside the key "
            f"({_show(embedded)})"
        )
    for t in (1,) if marker else (0, 1):
        if t + 1 < len(fields) and _looks_like_type(fields[t]):
            return VerificationError(f"key content after {_show(fields[t])}: not canonical base64")
    return VerificationError("not a key line: no key type followed by its base64 key")


def parse_line(line: str, types: frozenset[str] = KEY_TYPES) -> "HostKey":
    """One public key line as in ``ssh_host_*_key.pub``: ``type base64 [comment]``, or a
    known_hosts line ``hosts type base64 [comment]``; marker lines are refused."""
    return parse_key_line(line, types).key


def parse_key_lines(
    text: str,
    skip_unsupported: bool = False,
    notes: list[str] | None = None,
    types: frozenset[str] = KEY_TYPES,
) -> "list[HostKey]":
    """The distinct keys of ``.pub`` or known_hosts lines (blank lines and ``#`` comments
    skipped); VerificationError names the line. Keys of a type not in ``types`` (unknown,
    DSA, short RSA, certificates) are errors unless ``skip_unsupported``: then each skipped
    line adds a note naming the line and the type to ``notes``."""
    keys: list[HostKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            key = parse_key_line(stripped, types).key
        except UnsupportedKeyError as e:
            if skip_unsupported:
                if notes is not None:
                    notes.append(f"line {number}: skipped: {e}")
                continue
            raise UnsupportedKeyError(f"line {number}: {e}") from None
        except VerificationError as e:
            raise VerificationError(f"line {number}: {e}") from None
        if key not in keys:
            keys.append(key)
    return keys


def _show(text: str) -> str:
    """A provider's string made safe to quote in a one-line message."""
    cut = text[:40] + ("..." if len(text) > 40 else "")
    return ascii(cut)
