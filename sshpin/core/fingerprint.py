"""Fingerprints as ``ssh-keygen -l`` prints them, and the visual host key of ``-lv``.

The randomart is OpenSSH's "drunken bishop" (sshkey.c, fingerprint_randomart): a bishop starts
in the middle of a 17x9 board and, for each 2-bit group of the fingerprint's raw digest (low
bits first), steps diagonally, clamped to the board; each square shows how often it was
visited. A test compares every key type against the real ``ssh-keygen -lv``.
"""

from __future__ import annotations

import hashlib

from sshpin.core.keys import HostKey

WIDTH, HEIGHT = 17, 9
SYMBOLS = " .o+=*BOX@%&#/^SE"  # visit counts, then S (start) and E (end)


def keygen_line(key: HostKey, comment: str, md5: bool = False) -> str:
    """``256 SHA256:... comment (ED25519)``, byte for byte as ``ssh-keygen -l`` writes it."""
    fp = key.md5() if md5 else key.sha256()
    return f"{key.bits()} {fp} {comment or 'no comment'} ({key.type_label()})"


def randomart(key: HostKey, md5: bool = False) -> str:
    """The visual host key, as ``ssh-keygen -lv`` draws it (no trailing newline)."""
    digest = hashlib.md5(key.blob, usedforsecurity=False) if md5 else hashlib.sha256(key.blob)
    top = f"[{key.type_label()} {key.bits()}]"
    if len(top) > WIDTH:  # OpenSSH falls back to the type alone when type and size don't fit
        top = f"[{key.type_label()}]"
    top = top[: WIDTH - 1]  # as snprintf into OpenSSH's 17-byte buffer
    return _draw(digest.digest(), top, "[MD5]" if md5 else "[SHA256]")


def _draw(raw: bytes, title: str, alg: str) -> str:
    top = len(SYMBOLS) - 1  # the index of E
    field = [[0] * HEIGHT for _ in range(WIDTH)]
    x, y = WIDTH // 2, HEIGHT // 2
    for byte in raw:
        for _ in range(4):
            x = min(max(x + (1 if byte & 1 else -1), 0), WIDTH - 1)
            y = min(max(y + (1 if byte & 2 else -1), 0), HEIGHT - 1)
            if field[x][y] < top - 2:
                field[x][y] += 1
            byte >>= 2
    field[WIDTH // 2][HEIGHT // 2] = top - 1
    field[x][y] = top
    lines = [_border(title)]
    for row in range(HEIGHT):
        lines.append("|" + "".join(SYMBOLS[min(field[c][row], top)] for c in range(WIDTH)) + "|")
    lines.append(_border(alg))
    return "\n".join(lines)


def _border(label: str) -> str:
    left = (WIDTH - len(label)) // 2
    return "+" + "-" * left + label + "-" * (WIDTH - left - len(label)) + "+"
