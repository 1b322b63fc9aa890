"""Per-test time limits inside a real pytest session (pytester, in this process): the
plugin's own watchdog, and pytest-timeout where the watchdog steps aside."""

from __future__ import annotations

import bdb
import json
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType, SimpleNamespace
from typing import Any

import pytest

from runner.execute import PLUGIN_DIR, PLUGIN_NAME, TIMEOUTS_ENV
from runner.plugin import _testgate_timeouts as timeouts
from tests.integration.test_plugin import HANGS, calls, records

PLAN = {"default": 0.3, "markers": {"unit": 0.2, "integration": 0.4}}


@pytest.fixture
def plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUTS_ENV, json.dumps(PLAN))


@pytest.fixture
def outer_alarm() -> Iterator[None]:
    """Whatever SIGALRM handler and timer this test runs under, put back after it."""
    handler = signal.getsignal(signal.SIGALRM)
    remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    yield
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, remaining)


@pytest.mark.usefixtures("plan")
def test_without_pytest_timeout_every_limit_is_kept_and_its_marker_is_known(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_hangs=HANGS)
    pytester.makeini("[pytest]\nmarkers =\n    unit\n    integration\n")
    by_name = calls(records(pytester, "-p", "no:timeout", "--strict-markers"))
    assert by_name["test_strictest"]["message"] == "timed out after 0.2 s (marker unit)"
    assert by_name["test_own"]["message"] == "timed out after 0.2 s (its own timeout marker)"
    assert by_name["test_default"]["message"] == "timed out after 0.3 s (the timeout option)"
    text = by_name["test_strictest"]["text"]
    assert ">       time.sleep(30)\nE       Failed: timed out after 0.2 s (marker unit)" in text
    assert text.endswith("test_hangs.py:7: Failed")  # the line it hung on
    assert by_name["test_quick"]["outcome"] == by_name["test_own_off"]["outcome"] == "passed"


@pytest.mark.usefixtures("plan")
def test_a_limit_pytest_timeout_has_of_its_own_leaves_every_limit_to_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_hangs=HANGS)
    by_name = calls(records(pytester, "--timeout", "30"))
    assert by_name["test_strictest"]["message"] == "timed out after 0.2 s (marker unit)"
    assert by_name["test_default"]["message"] == "timed out after 0.3 s (the timeout option)"
    assert "Timeout (>0.3s) from pytest-timeout" in by_name["test_default"]["text"]


THREADED = """
import signal, threading, time

def test_replaces_the_handler():
    signal.signal(signal.SIGALRM, signal.SIG_IGN)

def test_hangs_with_a_thread():
    threading.Thread(target=time.sleep, args=(30,), name="helper-thread", daemon=True).start()
    time.sleep(30)
"""


@pytest.mark.usefixtures("plan", "outer_alarm")
def test_a_replaced_handler_is_put_back_and_a_hangs_threads_are_shown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_threaded=THREADED)
    pytester.syspathinsert(PLUGIN_DIR)
    ran = pytester.runpytest_inprocess("-p", PLUGIN_NAME, "-p", "no:cacheprovider")
    ran.assert_outcomes(passed=1, failed=1)
    output = ran.stdout.str()
    assert "Failed: timed out after 0.3 s (the timeout option)" in output
    assert "Stack of helper-thread" in output
    assert output.count("Stack of ") == 1  # not the threads that were there before


@pytest.mark.usefixtures("outer_alarm")
def test_a_session_inside_a_test_gives_back_the_outer_handler_and_timer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def outer(number: int, frame: FrameType | None) -> None:
        raise AssertionError("the outer limit fired")

    signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 50)
    pytester.makepyfile(test_quick="def test_quick():\n    pass\n")
    monkeypatch.setenv(TIMEOUTS_ENV, json.dumps(PLAN))  # each session takes it
    assert calls(records(pytester))["test_quick"]["outcome"] == "passed"
    assert signal.getsignal(signal.SIGALRM) is outer
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 50
    monkeypatch.setenv(TIMEOUTS_ENV, json.dumps(PLAN))
    assert records(pytester, "--collect-only")[-1]["kind"] == "finish"  # armed nothing
    assert signal.getsignal(signal.SIGALRM) is outer


def test_a_debugger_stops_the_watchdog(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdog = timeouts.Watchdog()
    watchdog._expired(signal.SIGALRM, None)  # no test armed: nothing to stop, no error
    node = SimpleNamespace(config=pytester.parseconfig("--pdb"))
    watchdog.pytest_exception_interact(node)  # type: ignore[arg-type]
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    watchdog.pytest_enter_pdb()
    watchdog.item = pytester.getitem("def test_func():\n    pass\n")
    watchdog._expired(signal.SIGALRM, None)  # a debugger session is no hang: no error
    protocol: Any = watchdog.pytest_runtest_protocol(watchdog.item)
    next(protocol)  # runs the test unarmed
    assert watchdog.saved is None
    monkeypatch.setattr(sys, "gettrace", lambda: bdb.Bdb().trace_dispatch)
    assert timeouts._debugging()
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    assert not timeouts._debugging()


BLOCKED = """
import signal, time

def test_blocks_the_alarm():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        time.sleep(2.5)  # the backstop comes at 0.3 + 1 s; the alarm only once unblocked
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
"""


@pytest.mark.usefixtures("plan", "outer_alarm")
def test_a_test_that_blocks_the_alarm_is_ended_by_the_backstop(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """SIGALRM cannot stop a test that blocks it: without the backstop, ``--timeout`` never
    ended such a run. The backstop ends the process (here a stand-in for ``os._exit``,
    which would end this test's own) once the test is ``backstop_s`` past its limit."""
    ended: list[int] = []
    monkeypatch.setattr(os, "_exit", ended.append)  # the module the plugin file imports too
    pytester.makepyfile(test_blocked=BLOCKED)
    pytester.syspathinsert(PLUGIN_DIR)
    ran = pytester.runpytest_inprocess("-p", PLUGIN_NAME, "-p", "no:cacheprovider")
    ran.assert_outcomes(failed=1)  # the alarm, once unblocked: the stand-in ended nothing
    assert ended[:1] == [timeouts.BACKSTOP_EXIT]
    err = capfd.readouterr().err + ran.stdout.str()  # the session's capture may hold fd 2
    assert (
        "testgate: test_blocked.py::test_blocks_the_alarm timed out after 0.3 s (the timeout "
        "option) and was still running 1 s later: SIGALRM could not stop it"
    ) in err
    assert 'File "' in err  # every thread's stack
    assert [timeouts.backstop_s(s) for s in (0.2, 5, 900)] == [1.0, 5.0, 30.0]


FROZEN_CONFTEST = """
import threading, time

real = time.monotonic


def frozen():
    return 0.0 if threading.current_thread() is threading.main_thread() else real()


time.monotonic = frozen  # as freeze_time("1970-01-01").start() has it


def pytest_unconfigure():
    time.monotonic = real
"""


@pytest.mark.usefixtures("outer_alarm")
def test_a_clock_the_tests_froze_does_not_end_the_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """freezegun's ``freeze_time("1970-01-01")``, started for the session (a conftest, a
    session fixture), replaces ``time.monotonic`` with the frozen date's epoch seconds, 0,
    in the main thread (threading's frames it leaves on the real clock). The watchdog took
    the test's deadline from that clock and the backstop compared it with the real one: the
    process was ended as the test began (exit 70, before: every test of such a suite)."""
    ended: list[int] = []
    monkeypatch.setattr(os, "_exit", ended.append)
    monkeypatch.setenv(TIMEOUTS_ENV, json.dumps({"default": 5, "markers": {}}))
    pytester.makeconftest(FROZEN_CONFTEST)
    pytester.makepyfile(test_frozen="import time\n\ndef test_waits():\n    time.sleep(0.5)\n")
    pytester.syspathinsert(PLUGIN_DIR)
    ran = pytester.runpytest_inprocess("-p", PLUGIN_NAME, "-p", "no:cacheprovider")
    ran.assert_outcomes(passed=1)
    assert ended == []
