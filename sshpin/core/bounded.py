"""Waits with an end: a call that may never return (a keyring backend on a dead D-Bus, a name
lookup with no resolver answering) runs in a daemon thread, and the caller stops waiting at its
deadline. The thread is abandoned, not killed (Python cannot kill one); being a daemon, it never
keeps the process alive.

The hook as a whole has a hard deadline (hook.py): past a cached hit, its work runs in a daemon
thread that the deadline abandons (``past_the_hit``), and what it waits on is noted
(``doing``) so that the message names what hung.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


class TimedOut(Exception):
    """The call did not return within its deadline."""


def call(
    fn: Callable[[], T],
    timeout: float,
    name: str = "sshpin-bounded",
    notice: Callable[[], None] | None = None,
    notice_after: float = 0.0,
) -> T:
    """``fn()``, or TimedOut after ``timeout`` seconds; its exception, if it raised one.
    ``notice`` is called once when ``fn`` is still running after ``notice_after`` seconds
    (to tell a person why nothing happens)."""
    import threading

    box: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as e:  # handed to the caller, whatever it is
            error.append(e)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if notice is not None and 0 < notice_after < timeout:
        thread.join(notice_after)
        if thread.is_alive():
            notice()
        timeout -= notice_after
    thread.join(timeout)
    if thread.is_alive():
        raise TimedOut(f"no answer within {timeout:g} s")
    if error:
        raise error[0]
    return box[0]


_doing = [""]  # what the slow path is doing now: named in the message when time runs out
MIN_FETCH = 1.0  # seconds: with less left of the connection's budget, a call does not fetch


def within(seconds: float, margin: float = 1.0) -> float:
    """``seconds``, or less: what is left of the hook's deadline less ``margin`` (so that a
    wait ending there can still say why); at least a tenth of a second."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal

    left = _signal.getitimer(_signal.ITIMER_REAL)[0]
    return max(0.1, min(seconds, left - margin)) if left else seconds


_spent = [False]  # this ssh connection's time for fetching is spent: no request is made


def spent() -> bool:
    """Is no request to be made (trust/http.py ``get`` refuses at once)?"""
    return _spent[0]


def doing(what: str) -> None:
    """Note what is about to wait (a name lookup, a connection, a token command)."""
    _doing[0] = what


def now_doing() -> str:
    return _doing[0]


_children: set[int] = set()  # process groups the slow path started (a token command)


def adopt(group: int) -> None:
    """Note a child's process group, killed with it if the deadline ends the hook first."""
    _children.add(group)


def release(group: int) -> None:
    _children.discard(group)


def kill_children() -> None:
    """At the deadline: no child of the abandoned thread outlives the hook."""
    import os

    for group in list(_children):
        try:
            os.killpg(group, 9)
        except OSError:
            pass


def past_the_hit(fn: Callable[[bool], T], fetch: bool, subject: str) -> T:
    """``fn(fetch)``: the hook's path past a cached hit, which may wait on the network.

    When the hook's deadline runs (an interval timer armed in the main thread: hook.py), ``fn``
    runs in a daemon thread while the main thread waits in short slices, so the timer's
    handler ends the call wherever ``fn`` blocks, even in ``getaddrinfo``, which a signal
    cannot end. The ssh connection's calls share one budget (core/connection.py
    ``fetch_budget``): the timer is shortened to what is left of it, and with less than
    ``MIN_FETCH`` left no request is made (``spent``): the fetch fails at once, and the
    provider's fallback serves what its rules still allow from the cache. Without a timer (other
    commands, tests calling in-process), ``fn`` runs here."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal
    import threading

    left = _signal.getitimer(_signal.ITIMER_REAL)[0]
    if not left or threading.current_thread() is not threading.main_thread():
        return fn(fetch)
    if fetch:
        from sshpin.core.connection import fetch_budget

        budget = fetch_budget()
        if budget is not None and budget < MIN_FETCH:
            from sshpin.errors import log

            # not ``fn(False)``: that is the cache as it is (``cache show``), unchecked; a
            # fetch that fails at once takes the provider's own fallback, whose rules
            # (ttl, stale_if_error, the signed expires) decide what may still be served
            log(subject, "this ssh connection's time for fetching is spent: nothing is asked")
            _spent[0] = True
            budget = MIN_FETCH  # time enough for that fallback, from the cache
        if budget is not None and budget < left:
            _signal.setitimer(_signal.ITIMER_REAL, budget)
    box: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn(fetch))
        except BaseException as e:  # handed to the caller, whatever it is
            error.append(e)

    thread = threading.Thread(target=run, name="sshpin-fetch", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)  # the timer's handler runs between slices, in this thread
    if error:
        raise error[0]
    return box[0]
