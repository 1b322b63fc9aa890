"""Per-test time limits inside the project's pytest: found once per test, enforced cheaply.

Loaded by ``_testgate_plugin`` when testgate asks for limits (``TESTGATE_TIMEOUTS``), so,
like it, it uses only the standard library and pytest.

Each test's limit is found once, at collection: the test's own ``@pytest.mark.timeout``,
else the strictest of its markers' limits, else the default (0: none). Where the platform
has SIGALRM and tests run in the main thread (Linux, macOS, xdist's workers), the
``Watchdog`` enforces the limits: one SIGALRM handler for the session and one interval
timer, re-armed per test. pytest-timeout, which swaps its handler and parses the test's
markers in two hook wrappers per test, costs several times more per test (see
``benchmarks/faults.py``); it still enforces the tests' own markers when the project has
it, and every limit, as ``timeout`` markers, where there is no SIGALRM (Windows) or the
project gives pytest-timeout a limit of its own (``--timeout``, its ``timeout`` ini
option, ``PYTEST_TIMEOUT``), which testgate's limits then override as they always have.

A test that passes its limit fails in the phase it hung in (setup, call or teardown) with
"timed out after N s (marker unit)" and the traceback of where it hung; the stacks of
its other threads, if any, go to the terminal, as pytest-timeout shows them. The timer
covers setup, call and teardown together, pytest-timeout's default; a debugger pytest
enters (``--pdb``, ``breakpoint()``) stops it.

SIGALRM cannot stop a test that blocks it (``pthread_sigmask``, a C library that masks
signals) or waits in C code that retries on EINTR: such a test would hang the run for
ever. A backstop thread ends the test's process once the test is ``backstop_s`` past its
limit (as long again, 1 s to 30 s), after writing every thread's stack and why; testgate
then reports the test as an error of a process that died.

PYTEST_DONT_REWRITE: this module has no assertions for pytest to rewrite.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import pytest

TIMEOUT_SIGN = "from pytest-timeout"
EXTERNAL = "timeout"  # pytest-timeout's plugin name (``-p no:timeout``)
DEBUGGERS = ("pydevd", "bdb")  # trace functions of these modules' debuggers stop the timer
LIMIT_KEY = pytest.StashKey[tuple[float, str]]()
_ARM_KEY = pytest.StashKey[float]()
_FIRED_KEY = pytest.StashKey[BaseException]()
MARKER_HELP = (
    "timeout(seconds): the longest this test may take, setup and teardown included "
    "(testgate's per-test timeouts; 0: no limit)"
)


BACKSTOP_POLL_S = 0.1
BACKSTOP_EXIT = 70  # EX_SOFTWARE: the backstop ended the process


# The real monotonic clock, held where a clock patcher does not reach. freezegun replaces
# ``time.monotonic`` (and every module attribute that is it) while a freeze is on: in the
# main thread it then answers the frozen date's epoch seconds, in threading's frames the
# real clock. A deadline taken from the one and compared with the other ended the
# process of a suite frozen at 1970 and never that of a suite frozen later.
_CLOCK = {"monotonic": time.monotonic}


def _now() -> float:
    """The real monotonic clock, whatever the tests froze or moved."""
    return _CLOCK["monotonic"]()


def backstop_s(seconds: float) -> float:
    """How long past its limit a test that SIGALRM did not stop may run before the
    backstop ends its process: as long again as the limit, from 1 s to 30 s."""
    return min(max(seconds, 1.0), 30.0)


# signal.getsignal wraps the C module's in an enum conversion that costs, for a Python
# handler, several times the two setitimer calls per test (it raises and catches a
# ValueError); the C module (CPython's and PyPy's ``_signal``) answers the same directly.
_HANDLERS: Any = getattr(signal, "_signal", signal)


def can_alarm() -> bool:
    """Whether limits can be enforced with SIGALRM here: POSIX, in the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


class Timeouts:
    """Each test's limit, found at collection; registered only when testgate asks."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.default = float(plan.get("default") or 0)
        self.markers = {str(name): float(seconds) for name, seconds in plan["markers"].items()}

    def pytest_configure(self, config: pytest.Config) -> None:
        """Without pytest-timeout, ``@pytest.mark.timeout`` is testgate's to know."""
        if not config.pluginmanager.has_plugin(EXTERNAL):
            config.addinivalue_line("markers", MARKER_HELP)

    def limit(self, item: pytest.Item) -> tuple[float, str, bool] | None:
        """The test's limit in seconds, where it comes from, and whether it is the test's
        own marker; None when it has none. One walk over the test's markers."""
        own = None
        names = set()
        for mark in item.iter_markers():  # the closest first
            if mark.name == "timeout" and own is None:
                own = mark
            names.add(mark.name)
        if own is not None:
            seconds = own.kwargs.get("timeout", own.args[0] if own.args else None)
            return (float(seconds), "its own timeout marker", True) if seconds else None
        found = [(s, f"marker {name}") for name, s in self.markers.items() if name in names]
        if found:
            return (*min(found), False)
        return (self.default, "the timeout option", False) if self.default > 0 else None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Give each test its limit, for the watchdog or, failing that, for pytest-timeout."""
        external = config.pluginmanager.has_plugin(EXTERNAL)
        watched = can_alarm() and not (external and _external_limit(config))
        armed = False
        for item in items:
            limit = self.limit(item)
            if limit is None:
                continue
            seconds, source, own = limit
            item.stash[LIMIT_KEY] = (seconds, source)
            if own and external:
                continue  # pytest-timeout enforces the test's own marker, as it always has
            if watched:
                item.stash[_ARM_KEY] = seconds
                armed = True
            else:  # for pytest-timeout; where there is none, nothing can stop the test
                item.add_marker(pytest.mark.timeout(seconds))
        if armed:
            config.pluginmanager.register(Watchdog(), "testgate-watchdog")


def _external_limit(config: pytest.Config) -> bool:
    """Whether the project gives pytest-timeout a limit of its own for every test (its
    option is a float; it has already refused a value that is not a number)."""
    given = (
        config.getoption("timeout", None)
        or os.environ.get("PYTEST_TIMEOUT")
        or config.getini("timeout")
    )
    return float(given or 0) > 0


class Watchdog:
    """One SIGALRM handler for the session, one interval timer armed for each test.

    The handler is installed before the first armed test and put back when the session
    ends, with whatever timer an outer session (pytester) had running; a test that
    replaced it gets it back before the next test is armed.
    """

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.stopped = False
        self.handler: Callable[[int, FrameType | None], None] = self._expired
        self.saved: tuple[Any, float] | None = None
        self.threads: set[int] = set()
        # The armed test and when the backstop ends its process: one tuple, replaced whole,
        # so the backstop thread never reads one test's deadline with another test.
        self.armed: tuple[pytest.Item, float, float] | None = None
        self.backstop: threading.Thread | None = None

    def _install(self) -> None:
        previous = signal.signal(signal.SIGALRM, self.handler)
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        self.saved = (previous, remaining)
        self.threads = set(sys._current_frames())  # xdist's, pytester's outer session's
        self.backstop = threading.Thread(
            target=self._watch, name="testgate-timeout-backstop", daemon=True
        )
        self.backstop.start()
        self.threads.add(self.backstop.ident or 0)  # not one a test started

    def _watch(self) -> None:
        """The backstop: end the process of a test SIGALRM could not stop."""
        while self.saved is not None:
            time.sleep(BACKSTOP_POLL_S)
            armed = self.armed
            if armed is None or self.stopped or _now() < armed[2]:
                continue
            item, seconds, _ = armed
            limit, source = item.stash[LIMIT_KEY]
            os.write(
                2,
                (
                    f"\ntestgate: {item.nodeid} timed out after {limit:g} s ({source}) and "
                    f"was still running {backstop_s(seconds):g} s later: SIGALRM could not stop "
                    "it (it blocks the signal, or waits in C code that ignores it), so its "
                    "process is ended. The stacks of its threads:\n"
                ).encode("utf-8", "replace"),
            )
            faulthandler.dump_traceback(file=2, all_threads=True)
            os._exit(BACKSTOP_EXIT)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        """Arm the timer for the test's setup, call and teardown; disarm it after."""
        seconds = item.stash.get(_ARM_KEY, None)
        if seconds is None or self.stopped:
            return (yield)
        if self.saved is None:  # the first armed test (registered at collection, after
            self._install()  # the session started)
        if _HANDLERS.getsignal(signal.SIGALRM) is not self.handler:  # a test replaced it
            signal.signal(signal.SIGALRM, self.handler)
        self.item = item
        self.armed = (item, seconds, _now() + seconds + backstop_s(seconds))
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return (yield)
        finally:
            self.item = None  # first: an alarm that comes now finds no test to stop
            self.armed = None
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, number: int, frame: FrameType | None) -> None:
        """The armed test passed its limit: fail it where it is, naming the limit."""
        __tracebackhide__ = True
        item = self.item
        if item is None or self.stopped or _debugging():
            return
        seconds, source = item.stash[LIMIT_KEY]
        _other_stacks(item.config, known=self.threads)
        failure = pytest.fail.Exception(f"timed out after {seconds:g} s ({source})")
        item.stash[_FIRED_KEY] = failure
        raise failure

    def pytest_enter_pdb(self) -> None:
        """A debugger session is no hang: no timer from here on, as with pytest-timeout."""
        self.stopped = True
        signal.setitimer(signal.ITIMER_REAL, 0)

    def pytest_exception_interact(self, node: pytest.Item) -> None:
        """pytest shows a failure in its debugger (``--pdb``): the timer stops."""
        if node.config.getoption("usepdb", False):
            signal.setitimer(signal.ITIMER_REAL, 0)

    def pytest_sessionfinish(self) -> None:
        """Put back the handler and the timer that were there before the session."""
        if self.saved is None:
            return
        previous, remaining = self.saved
        self.saved = None
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, remaining)


def _debugging() -> bool:
    """Whether a debugger traces this thread (pdb, PyCharm, VS Code), as pytest-timeout
    tells: a test stopped at a breakpoint is not hanging."""
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+: debuggers register there
    if monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None:
        return True  # pragma: no cover - Python 3.12+ only; this suite runs on 3.11
    trace = sys.gettrace()
    if trace is None:
        return False
    module = getattr(trace, "__module__", None) or type(trace).__module__
    return module.split(".", 1)[0].startswith(DEBUGGERS)


def _other_stacks(config: pytest.Config, *, known: set[int]) -> None:
    """Write the stacks of the threads the tests started to the terminal (a deadlock's
    other side), as pytest-timeout does; not those there before the first test (xdist's,
    an outer session's), nothing when there are none."""
    frames = sys._current_frames()
    started = [thread for thread in threading.enumerate() if thread.ident not in known]
    if not started:
        return
    terminal = config.get_terminal_writer()
    terminal.sep("+", title="Timeout")
    for thread in started:
        terminal.sep("~", title=f"Stack of {thread.name} ({thread.ident})")
        terminal.write("".join(traceback.format_stack(frames[thread.ident or 0])))
    terminal.sep("+", title="Timeout")


def timed_out(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
    """The message "timed out after N s (marker unit)" when the phase was stopped at its
    limit, by the watchdog or by pytest-timeout; None otherwise."""
    if excinfo.value is item.stash.get(_FIRED_KEY, None):
        return str(excinfo.value)
    if not excinfo.errisinstance(pytest.fail.Exception) or TIMEOUT_SIGN not in str(excinfo.value):
        return None
    seconds, source = item.stash.get(LIMIT_KEY, (None, "pytest-timeout"))
    if seconds is None:
        return f"timed out ({source})"
    return f"timed out after {seconds:g} s ({source})"
