"""The hook's slow path (core/bounded.py), without ssh: ``past_the_hit`` runs the answer in a
thread its deadline abandons, however it blocks; once the connection's time is spent
(``spent``) no request is made at all (trust/http.py ``get``), so the provider's fallback
rules decide what the cache may still serve. End to end: tests/faults/test_dns_deadline.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from sshpin.core import bounded
from sshpin.errors import ProviderError
from sshpin.trust import http

# run as the hook runs: the main thread of a process with an interval timer armed
SCRIPT = """
import signal, sys, threading, time
from sshpin.core.bounded import past_the_hit

class Expired(BaseException):
    pass

def expired(signum, frame):
    raise Expired

signal.signal(signal.SIGALRM, expired)
signal.setitimer(signal.ITIMER_REAL, 0.5)
main = threading.current_thread()
started = time.monotonic()
try:
    if sys.argv[1] == "blocks":
        past_the_hit(lambda fetch: threading.Event().wait(), True, "h")
    else:
        ran = past_the_hit(lambda fetch: threading.current_thread() is not main, True, "h")
        print("returned", ran)
except Expired:
    print("expired after %.1f s" % (time.monotonic() - started))
"""


def run(case: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_slow_path_that_blocks_for_ever_is_ended_by_the_timer() -> None:
    """What blocks (here an Event nobody sets) is abandoned when the timer fires. (A wait a
    signal cannot end, glibc's getaddrinfo, is driven end to end in test_dns_deadline.py.)"""
    out = run("blocks")
    assert out.startswith("expired after ") and float(out.split()[2]) < 5, out


def test_a_slow_path_that_returns_runs_in_its_own_thread_and_returns() -> None:
    assert run("returns") == "returned True"


def test_without_a_timer_the_slow_path_runs_inline() -> None:
    """Other commands (cache show, doctor): no timer, no thread; errors pass through."""
    caller = threading.current_thread()
    assert bounded.past_the_hit(lambda fetch: (fetch, threading.current_thread()), False, "h") == (
        False,
        caller,
    )
    with pytest.raises(ProviderError, match="down"):
        bounded.past_the_hit(lambda fetch: (_ for _ in ()).throw(ProviderError("down")), True, "h")


def test_once_the_connections_time_is_spent_no_request_is_made() -> None:
    """The rule both sides, from the request: spent, ``get`` fails before connecting (the
    listener sees no connection); not spent, it connects."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(3)
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/api/capsuls"
    try:
        bounded._spent[0] = True
        with pytest.raises(ProviderError, match="not asked"):
            http.get(http.session(), url, {}, 4096, "provider 'p'")
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing came
        bounded._spent[0] = False
        box: list[BaseException] = []

        def ask() -> None:
            try:
                http.get(http.session(), url, {}, 4096, "provider 'p'")
            except BaseException as e:
                box.append(e)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        conn, _ = listener.accept()  # it connects
        conn.close()
        asking.join(15)
        assert box and isinstance(box[0], ProviderError)  # (no TLS here: refused, not hung)
    finally:
        bounded._spent[0] = False
        listener.close()
