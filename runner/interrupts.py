"""Cancellation and deadlines: every command ends, and ends with its reports written.

GitHub cancels a job with SIGINT, then SIGTERM about 7.5 s later, then kills it. While a
command runs, testgate handles SIGINT, SIGTERM and SIGHUP itself:

* while pytest runs, the signal only marks the run ``interrupted``; ``wait`` then
  interrupts pytest's process group, kills it after ``GRACE_S`` (at once on a second
  signal), and the command goes on to write its reports from what was recorded;
* before the first pytest process starts (probing, starting services) there is nothing to
  report yet, so the signal raises ``Interrupted``: context managers stop what they
  started, and the command exits 3;
* once pytest has started, a signal never raises: the command checks ``reason()`` between
  its steps, skips what is left, and writes every report whole.

A deadline (``timeout-run``) interrupts the same way, by ``wait``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from runner import process_group

GRACE_S = 1.0
POLL_S = 0.05
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(BaseException):
    """A signal arrived before anything could be reported; like KeyboardInterrupt, this is
    no ``Exception``, so no ``except Exception`` swallows it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _State:
    reason: str | None = None
    signals: int = 0
    raising: bool = True


_STATE = _State()


def wait_while(still: Callable[[], bool], *, seconds: float) -> bool:
    """Ask ``still`` every ``POLL_S`` until it says no or ``seconds`` have passed; whether
    it said no (a process asked to stop has stopped, say). One loop for every such wait,
    so a wait that is over at the first question is the same code as a longer one."""
    deadline = time.monotonic() + seconds
    while still():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def reason() -> str | None:
    """Why the command is being stopped (``SIGTERM``, the deadline), or None."""
    return _STATE.reason


def stop(why: str) -> None:
    """Mark the command as stopped (a deadline passed), as a signal would."""
    if _STATE.reason is None:
        _STATE.reason = why


def _handle(number: int, frame: FrameType | None) -> None:
    _STATE.signals += 1
    first = _STATE.reason is None
    stop(signal.Signals(number).name)
    if first and _STATE.raising:
        raise Interrupted(_STATE.reason or "a signal")


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP (those the platform has) while the block runs.

    Only the main thread can set handlers; elsewhere (a command run inside a test's
    thread) the block runs without them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [getattr(signal, name) for name in SIGNALS if hasattr(signal, name)]
    # A command started to outlive its terminal (nohup) keeps ignoring the hang-up.
    numbers = [
        number
        for number in numbers
        if not (
            number == getattr(signal, "SIGHUP", None) and signal.getsignal(number) == signal.SIG_IGN
        )
    ]
    saved = {number: signal.getsignal(number) for number in numbers}
    _STATE.reason, _STATE.signals, _STATE.raising = None, 0, True
    for number in numbers:
        signal.signal(number, _handle)
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
        _STATE.reason, _STATE.signals, _STATE.raising = None, 0, True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a signal that arrives meanwhile raises ``Interrupted`` only as
    the block ends. For a step that must not be cut in two, as ``Thread.start``: a signal
    raised inside it leaves a thread that exists but has not run a line (``ident`` still
    None), which a clean-up cannot tell from one never started."""
    raising, earlier = _STATE.raising, _STATE.reason
    _STATE.raising = False
    try:
        yield
    finally:
        _STATE.raising = raising
    if raising and earlier is None and _STATE.reason is not None:
        raise Interrupted(_STATE.reason)


def check() -> None:
    """Raise ``Interrupted`` when the command was stopped and signals raise here. For a wait
    that another thread ended because of that stop (the services thread sees ``reason``):
    what the command meets is the stop, as the signal's handler would have raised it, not
    the waited thread's own error about it."""
    if _STATE.raising and _STATE.reason is not None:
        raise Interrupted(_STATE.reason)


def hold() -> None:
    """From here on a signal never raises: it only marks the command stopped (``reason``).
    Called before the first pytest process starts, so that no signal can cut its start in
    two and leave a process group nothing waits for."""
    _STATE.raising = False


def wait(
    child: subprocess.Popen[bytes], *, deadline: float | None, marker: str | None = None
) -> tuple[int, process_group.Leftovers, str | None]:
    """Wait for a process group's leader; stop the group on a signal or at the deadline.

    Returns the leader's exit code, the processes left running when it ended (in the
    group, or outside it with the run's ``marker``; killed then), and why testgate
    stopped it (None: it ended by itself). From here on a signal never raises.
    """
    hold()
    asked_at: float | None = None
    signals_seen = 0
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            stop("timeout-run")
        if _STATE.reason is not None and asked_at is None:
            process_group.interrupt(child)
            asked_at, signals_seen = now, _STATE.signals
        elif asked_at is not None and (now - asked_at >= GRACE_S or _STATE.signals > signals_seen):
            process_group.kill(child)
    left = process_group.sweep(child, marker=marker)
    return code, left, None if asked_at is None else _STATE.reason
