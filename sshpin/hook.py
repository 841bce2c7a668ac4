"""``sshpin known-hosts REASON HOST [TYPE KEY]``: what runs inside every ssh connection.

ssh runs it through ``KnownHostsCommand`` (up to three times per connection). Its rules:
- stdout carries only known_hosts lines, each rebuilt from parsed key bytes;
- an unmanaged host: nothing printed, exit 0, no network, no lock;
- a managed host with no authentic keys: one line on stderr, nothing printed, exit 0 (ssh then
  falls back to the user's own known_hosts; a non-zero exit would lock them out);
- exit 1 only for a malformed command line, a configuration bug to surface at once;
- a hard deadline (``DEADLINE``, an interval timer): past it, one line, nothing printed, exit 0.
  Every wait below has its own shorter bound; this one holds even if one of them fails.

The argv is parsed here; the answer comes from lookup.py.
"""

from __future__ import annotations

import sys

from sshpin.core.keys import decode_base64
from sshpin.core.names import Query
from sshpin.errors import EXIT_OK, SshpinError, UsageError, log, report, say
from sshpin.lookup import lookup

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
REASONS = ("ORDER", "HOSTNAME", "ADDRESS")
DEADLINE = 25.0  # seconds: above the fetch's own bounds (token 10 s, HTTP 11 s, DNS 5 s)
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


class Deadline(BaseException):
    """The hook's hard deadline passed (a BaseException: no handler below may swallow it)."""


def _expired(signum: int, frame: object) -> None:
    raise Deadline


def _answer(query: Query) -> list[str] | Exception:
    try:
        return lookup(query).lines(query.token)
    except Exception as e:  # handled by main, once the deadline is cancelled
        return e


def answer_within(query: Query, seconds: float) -> list[str] | Exception:
    """The lines for ``query``, or the error met; Deadline when ``seconds`` pass first.

    ``_signal`` is the C module under ``signal`` (which imports enum: 9 ms on the hot path)."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal

    try:
        previous = _signal.signal(_signal.SIGALRM, _expired)
    except ValueError:  # not the main thread (tests calling in-process): no timer
        return _answer(query)
    try:
        _signal.setitimer(_signal.ITIMER_REAL, seconds)
        try:
            return _answer(query)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    finally:
        _signal.signal(_signal.SIGALRM, previous)


def main(args: list[str], deadline: float = DEADLINE) -> int:
    try:
        query = parse_args(args)
    except UsageError as e:
        return report(e, "known-hosts")
    try:
        result = answer_within(query, deadline)
    except Deadline:
        # fail closed: nothing on stdout, and no thread or child keeps ssh waiting
        say(query.token, f"no answer within {deadline:g} s: no keys vouched for")
        sys.stderr.flush()
        import os

        os._exit(EXIT_OK)
    if isinstance(result, SshpinError):
        report(result, query.token)
        return EXIT_OK
    if isinstance(result, Exception):  # fail closed, never a traceback in ssh's output
        say(query.token, f"internal error ({type(result).__name__}); no keys vouched for")
        log(query.token, repr(result))
        return EXIT_OK
    if result:
        sys.stdout.write("".join(line + "\n" for line in result))
        sys.stdout.flush()
    return EXIT_OK
