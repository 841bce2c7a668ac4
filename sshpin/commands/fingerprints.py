"""``sshpin fingerprints HOST``: as ``ssh-keygen -l [-E md5] -f`` over the hook's lines."""

from __future__ import annotations

from typing import TextIO

from sshpin.commands.cache import host_arg
from sshpin.core.fingerprint import keygen_line
from sshpin.core.keys import KEY_TYPES, SIGNING_KEY_TYPES, parse_line
from sshpin.errors import EXIT_OK, NoKeysError, SshpinError
from sshpin.lookup import lookup


def cmd_fingerprints(token: str, md5: bool, out: TextIO) -> int:
    """As ``ssh-keygen -l [-E md5] -f`` over the known_hosts lines the hook prints for HOST."""
    query = host_arg(token)
    try:
        answer = lookup(query)
        lines, why = answer.lines(token), answer.why
    except SshpinError as e:
        raise e.prefixed(f"fingerprints {token}") from None
    if not lines:
        raise NoKeysError(f"fingerprints {token}: no provider or pin vouches for it ({why})")

    for line in lines:
        marker = line.startswith("@")
        parts = line.split(" ")
        key = parse_line(" ".join(parts[-2:]), SIGNING_KEY_TYPES if marker else KEY_TYPES)
        comment = " ".join(parts[:2]) if marker else parts[0]
        out.write(keygen_line(key, comment, md5) + "\n")
    return EXIT_OK
