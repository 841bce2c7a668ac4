"""``sshpin known-hosts REASON HOST [TYPE KEY [ALIAS PORT]]``: what runs inside every ssh
connection, as ``known-hosts %I %H %t %K %k %p`` (older snippets: ``%I %H %t %K``).

ssh runs it through ``KnownHostsCommand`` (up to three times per connection). Its rules:
- stdout carries only known_hosts lines, each rebuilt from parsed key bytes;
- an unmanaged host: nothing printed, exit 0, no network, no lock;
- a server key (``%K``) that the provider or a pin does not vouch for, among other keys it
  does: printed ``@revoked`` as well, so that no stale line in another file lets it in;
- a managed host with no authentic keys: one line on stderr, nothing printed, exit 0 (ssh then
  falls back to the user's own known_hosts; a non-zero exit would lock them out);
- exit 1 only for a malformed command line, a configuration bug to surface at once;
- the whole answer has a hard deadline (``DEADLINE``), past which it fails closed;
- a problem is said once per ssh connection, however many times ssh runs the hook.

The argv is parsed here; the answer comes from lookup.py.
"""

import sys
import time  # (loaded already: lookup.py needs it)

from sshpin.core.keys import decode_base64
from sshpin.core.names import Query, bare_host, parse_port, valid_host
from sshpin.errors import EXIT_OK, SshpinError, UsageError, line, log, report, say, say_once_per
from sshpin.lookup import lookup

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
REASONS = ("ORDER", "HOSTNAME", "ADDRESS")
DEADLINE = 12.0  # seconds, for one call; one ssh connection's calls share 14 s past a hit
# (core/connection.py FETCH_BUDGET): ssh waits at most about 15 s however DNS behaves
USAGE = (
    "usage: sshpin known-hosts REASON HOST [TYPE KEY [ALIAS PORT]]   "
    "(as ssh's %I %H %t %K %k %p; REASON: ORDER, HOSTNAME, ADDRESS)"
)


def parse_args(args: list[str]) -> "Query":
    """Strictly parse ssh's ``%I %H [%t %K [%k %p]]``; raise UsageError for anything else.

    ``%k`` (ALIAS) is the HostKeyAlias or the host as typed: resolved first (lookup.py); one
    that is no host name (a typo, a user@) is ignored, never an error. ``%p`` (PORT) is used
    only when ``%H`` carries no port on an ORDER call (ssh 9.2 gives the bare host there);
    on a HOSTNAME or ADDRESS call a bare ``%H`` is port 22 or a HostKeyAlias, as in
    known_hosts."""
    if len(args) not in (2, 4, 6):
        raise UsageError(USAGE)
    reason, token = args[0], args[1]
    if reason not in REASONS:
        raise UsageError(f"unknown REASON {reason[:20]!a}: expected ORDER, HOSTNAME or ADDRESS")
    want: bytes | None = None
    if len(args) >= 4 and (args[2], args[3]) != ("NONE", "NONE"):
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
    port: int | None = None
    alias = ""
    if len(args) == 6:
        try:
            given = parse_port(args[5])
        except UsageError:
            raise UsageError(f"PORT {args[5][:20]!a} is not a port number") from None
        if reason == "ORDER":
            port = given
        alias = _alias(args[4])
    return Query(token, want, port, alias)


def _alias(text: str) -> str:
    """``%k`` as a host name (``bare_host``: the case and one trailing dot typed do not
    count), or "" when it is none (it is what the user typed)."""
    return bare_host(text) if valid_host(text) and ":" not in text else ""


HELP = """\
usage: sshpin [-v] known-hosts REASON HOST [TYPE KEY [ALIAS PORT]]

The OpenSSH KnownHostsCommand hook. In ssh_config:
    KnownHostsCommand /path/to/sshpin known-hosts %I %H %t %K %k %p

Prints known_hosts lines with the authentic keys of HOST when a configured provider vouches
for it, nothing for any other host; a KEY it does not vouch for is printed @revoked too.
Exits 0 except for a malformed command line (1).
"""


def first_time(problem: str) -> bool:
    """Is this the first time this ssh connection hears of ``problem``? (core/connection.py,
    imported only when a problem is said)"""
    from sshpin.core import connection

    return connection.first_time(problem)


class Deadline(BaseException):
    """The hook's hard deadline passed (a BaseException: no handler below may swallow it)."""


def _expired(signum: int, frame: object) -> None:
    raise Deadline


def _answer(query: "Query") -> list[str] | Exception:
    try:
        return lookup(query).lines(query.token, query.want)
    except Exception as e:  # handled by main, once the deadline is cancelled
        return e


def answer_within(query: "Query", seconds: float) -> list[str] | Exception:
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


def _took(started: float) -> str:
    """The seconds waited, as said: whole when near a whole number (``12``), else one
    decimal (a connection's second call ends at what is left of its budget)."""
    took = time.monotonic() - started
    return f"{round(took):d}" if abs(took - round(took)) < 0.3 else f"{took:.1f}"


def _hung() -> str:
    """What the answer was waiting on when time ran out (core/bounded.py ``doing``)."""
    bounded = sys.modules.get("sshpin.core.bounded")
    what = bounded.now_doing() if bounded is not None else ""
    return f", while {what}" if what else ""


LAST_WORDS = 2.0  # seconds for the one line said after the answer: stderr may not be read


def _exit(signum: int = 0, frame: object = None) -> None:
    import os

    os._exit(EXIT_OK)  # nothing on stdout: fail closed


def _last_words() -> None:
    """A last timer for what is said once the answer is in: a stderr that nobody reads (a
    full pipe, a paused terminal) cannot hold ssh past the deadline either."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal

    try:
        _signal.signal(_signal.SIGALRM, _exit)
        _signal.setitimer(_signal.ITIMER_REAL, LAST_WORDS)
    except ValueError:  # not the main thread (tests calling in-process)
        pass


def _said() -> None:
    """The last words are out: the timer goes, so that a slow exit (a loaded machine) is
    not cut short by it after the handler is gone, killing the hook by SIGALRM (ssh then
    takes none of its lines)."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal

    try:
        sys.stderr.flush()
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    except (ValueError, OSError):
        pass


def main(args: list[str], deadline: float = DEADLINE) -> int:
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(HELP)
        return EXIT_OK
    say_once_per(first_time)
    try:
        query = parse_args(args)
    except UsageError as e:
        return report(e, "known-hosts")
    started = time.monotonic()
    try:
        result = answer_within(query, deadline)
    except Deadline:
        # fail closed: nothing on stdout, and no thread or child keeps ssh waiting
        _last_words()
        bounded = sys.modules.get("sshpin.core.bounded")
        if bounded is not None:
            bounded.kill_children()  # a token command the abandoned thread started
        from sshpin.core import connection

        connection.note(connection.TIMED_OUT)  # this connection's later calls ask nothing
        # written past sys.stderr's buffer, whose lock the abandoned thread may hold in a
        # blocked write; the last timer ends a blocked write here
        message = f"no answer within {_took(started)} s{_hung()}: no keys vouched for"
        if first_time(line("", message)):
            import os

            os.write(2, (line(query.token, message) + "\n").encode("utf-8", "replace"))
        _exit()
    if isinstance(result, SshpinError):
        _last_words()
        bounded = sys.modules.get("sshpin.core.bounded")
        if bounded is not None and bounded.spent():  # what hung was said to the connection
            log(query.token, str(result))
        else:
            report(result, query.token)
        _said()
        return EXIT_OK
    if isinstance(result, Exception):  # fail closed, never a traceback in ssh's output
        _last_words()
        say(query.token, f"internal error ({type(result).__name__}); no keys vouched for")
        log(query.token, repr(result))
        _said()
        return EXIT_OK
    if result:
        sys.stdout.write("".join(line + "\n" for line in result))
        sys.stdout.flush()
    return EXIT_OK
