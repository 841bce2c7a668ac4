"""Waits with an end: a call that may never return (a keyring backend on a dead D-Bus, a name
lookup with no resolver answering) runs in a daemon thread, and the caller stops waiting at its
deadline. The thread is abandoned, not killed (Python cannot kill one); being a daemon, it never
keeps the process alive. The hook as a whole also has a hard deadline (hook.py).
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
