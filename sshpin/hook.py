"""``sshpin known-hosts REASON HOST [TYPE KEY]``: what runs inside every ssh connection.

ssh runs it through ``KnownHostsCommand`` (up to three times per connection). Its rules:
- stdout carries only known_hosts lines, each rebuilt from parsed key bytes;
- an unmanaged host: nothing printed, exit 0, no network, no lock;
- a managed host with no authentic keys: one line on stderr, nothing printed, exit 0 (ssh then
  falls back to the user's own known_hosts; a non-zero exit would lock them out);
- exit 1 only for a malformed command line, a configuration bug to surface at once.

The argv is parsed here; the answer comes from lookup.py.
"""

from __future__ import annotations

import sys

from sshpin.core.keys import decode_base64
from sshpin.core.names import Query
from sshpin.errors import EXIT_OK, SshpinError, UsageError, log, report, say
from sshpin.lookup import lookup

REASONS = ("ORDER", "HOSTNAME", "ADDRESS")
USAGE = "usage: sshpin known-hosts REASON HOST [TYPE KEY]   (REASON: ORDER, HOSTNAME, ADDRESS)"


def parse_args(args: list[str]) -> Query:
    """Strictly parse ssh's ``%I %H [%t %K]``; raise UsageError for anything else."""
    if len(args) not in (2, 4):
        raise UsageError(USAGE)
    reason, token = args[0], args[1]
    if reason not in REASONS:
        raise UsageError(f"unknown REASON {reason[:20]!a}: expected ORDER, HOSTNAME or ADDRESS")
    want: bytes | None = None
    if len(args) == 4 and (args[2], args[3]) != ("NONE", "NONE"):
        key_type, text = args[2], args[3]
        try:
            want = decode_base64(text)
        except ValueError:
            raise UsageError(f"KEY for {token[:80]!a} is not base64") from None
        embedded = want[4 : 4 + int.from_bytes(want[:4], "big")] if len(want) >= 4 else b""
        if embedded != key_type.encode("ascii", "replace"):
            raise UsageError(f"TYPE {key_type[:40]!a} does not match the KEY given")
        if key_type.endswith("-cert-v01@openssh.com"):
            want = None  # a host certificate: checked by ssh against @cert-authority lines
    return Query(token, want)


def main(args: list[str]) -> int:
    try:
        query = parse_args(args)
    except UsageError as e:
        return report(e, "known-hosts")
    try:
        lines = lookup(query).lines(query.token)
    except SshpinError as e:
        report(e, query.token)
        return EXIT_OK
    except Exception as e:  # fail closed, never a traceback in the middle of ssh's output
        say(query.token, f"internal error ({type(e).__name__}); no keys vouched for")
        log(query.token, repr(e))
        return EXIT_OK
    if lines:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    return EXIT_OK
