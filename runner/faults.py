"""What a run that did not end by itself reports: why it stopped, what never ran, and
whether its coverage is whole.

A run is cut short by a signal or by its deadline (``timeout-run``); its coverage is
partial then, or when a process died with the coverage of tests it had finished. Partial
coverage is never judged as if it were whole: its gates fail saying so ("not judged" in
every report, never FAIL), and the run exits 3 (an infrastructure problem, not the
suite's).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec

from runner import interrupts
from runner.execute import Completed
from runner.plural import counted
from runner.process_group import MARKER_ENV
from runner.record import AttemptRecord, describe_exit
from runner.results import GateName, GateResult
from runner.settings import Settings

LISTED = 20
COVERAGE_GATES: frozenset[GateName] = frozenset(
    {"line-coverage", "branch-coverage", "diff-coverage"}
)
COUNT_GATES: frozenset[GateName] = frozenset({"min-tests"})  # partial when interrupted


@dataclass(frozen=True)
class Stop:
    """Why the run was cut short (None: it was not), the problem to report, and the
    tests it collected that never finished."""

    why: str | None = None
    problem: str | None = None
    not_run: tuple[str, ...] = ()


def stopped(
    settings: Settings,
    collected: Sequence[str],
    *,
    done: Collection[str],
    exit_code: int,
    collection_stopped: bool = False,
    died: bool = False,
    collection_done: bool = True,
    ended_by: str | None = None,
) -> Stop:
    """The run's stop, and the tests it collected that never finished.

    testgate stops a run on a signal or at its deadline (``why``). pytest may also end a
    session before every collected test ran, by itself or asked to: ``-x``, ``--maxfail``
    and ``--sw`` stop at the first failures, ``pytest.exit()`` or a plugin ends it (with any
    exit code, 0 too). Either way the tests that never ran are listed, and the run has a
    problem: a test that never ran is no pass. A collection error that interrupts pytest
    (``collection_stopped``) is reported as such, with its own advice; when the pytest
    process ``died``, the problem that says so comes first and this one lists the rest.
    A run stopped before pytest had collected its tests (``collection_done`` false) says
    that no test ran, not that none was left to run. What the run knows ended the session
    (``ended_by``: a test's KeyboardInterrupt, an exception pytest did not handle) is named.
    """
    why = interrupts.reason()
    finished = set(done)
    never = tuple(dict.fromkeys(test_id for test_id in collected if test_id not in finished))
    listed = ", ".join(never[:LISTED])
    more = f" and {len(never) - LISTED} more" if len(never) > LISTED else ""
    if why is None:
        if not never or collection_stopped:
            return Stop()
        problem = (
            f"{counted(len(never), 'collected test')} never ran: {listed}{more}; the pytest "
            "process ended before them"
            if died
            else f"{counted(len(never), 'collected test')} never ran "
            f"({describe_exit(exit_code)}): {listed}{more}; {ended_by} ended pytest's "
            "session before them"
            if ended_by is not None
            else f"{counted(len(never), 'collected test')} never ran "
            f"({describe_exit(exit_code)}): {listed}{more}; -x, --maxfail, --sw, pytest.exit() "
            "or a plugin ends pytest's session early, and a test that never ran is no pass"
        )
        return Stop(None, problem, never)
    cause = (
        f"stopped at its deadline (timeout-run {settings.timeout_run:g} s)"
        if why == "timeout-run"
        else f"interrupted by {why}"
    )
    if not collection_done:
        problem = (
            f"the run was {cause} before pytest had collected its tests: no test ran, and "
            "how many never ran is not known"
        )
        return Stop(why, problem, never)
    problem = f"the run was {cause}: {counted(len(never), 'test')} never ran" + (
        f": {listed}{more}" if never else ""
    )
    return Stop(why, problem, never)


def ended_by(record: AttemptRecord) -> str | None:
    """What the record shows ended pytest's session early: a test's KeyboardInterrupt, or
    an exception pytest did not handle; None when it shows nothing."""
    if record.interrupted_in is not None:
        return f"the KeyboardInterrupt raised in {record.interrupted_in.id}"
    if record.interrupted_worker is not None:
        return f"the KeyboardInterrupt in {record.interrupted_worker}"
    if record.uncaught is not None:
        return "the exception pytest did not handle (the problem above)"
    return None


def incomplete_coverage(
    lost: Collection[str],
    *,
    crashes: Sequence[str],
    reruns: int,
    interrupted: bool,
    never_ran: int = 0,
) -> str | None:
    """Why the combined coverage is known to be partial, or None when it is whole."""
    if interrupted:
        return "the run was interrupted, so its coverage is partial"
    if not lost:
        if never_ran:
            return f"{counted(never_ran, 'collected test')} never ran, so the coverage is partial"
        return None
    how = "set reruns to 1 or more" if reruns == 0 else "they died again"
    return (
        f"coverage is incomplete: {counted(len(lost), 'test')} ran on a process that died "
        f"({', '.join(crashes) or 'the pytest process'}) and took their coverage with it; "
        f"they could not be measured again ({how})"
    )


NOTHING_RECORDED = (
    "no coverage data was recorded: no pytest process of the run wrote its data file. One "
    "died before writing it (os._exit, closed file descriptors, pytest.exit), or coverage "
    "was switched off (--no-cov, -p no:cov): let the tests' processes end normally, or "
    "drop the switch"
)


STOPPED_AT_COLLECTION = "no coverage data was recorded: pytest stopped at "


def nothing_recorded(*, recorded: bool, gated: bool, stopped_at: int = 0) -> str | None:
    """Why there is no coverage to judge when no process wrote a data file: the data is
    missing, not the suite's coverage low (its gates are not judged). ``stopped_at``: the
    collection errors pytest stopped at before any test ran (``collection_stop``), which
    is the reason then: pytest-cov saves no data for a session stopped at collection."""
    if recorded or not gated:
        return None
    if stopped_at:
        return (
            f"{STOPPED_AT_COLLECTION}{counted(stopped_at, 'collection error')} before any "
            "test ran, so nothing was measured"
        )
    return NOTHING_RECORDED


def collection_stop(record: AttemptRecord) -> int:
    """The collection errors pytest stopped at (exit 2, no test ran; without xdist it stops
    at the first file that fails to collect), or 0. That is the suite's failure, which the
    failed-tests gate counts, not the run's problem."""
    if record.exit_status == 2 and not record.tests:
        return len(record.collect_errors)
    return 0


def not_judged(
    verdicts: tuple[GateResult, ...], *, why: str, interrupted: bool = False
) -> tuple[GateResult, ...]:
    """Gates on partial data: coverage gates, and on an interrupted run the count of tests
    that ran (``min-tests``), are failed without a verdict on the suite, saying that the
    data, not the suite, is short: every report shows them "not judged", never FAIL."""
    because = dict.fromkeys(COVERAGE_GATES, why)
    if interrupted:
        because |= dict.fromkeys(COUNT_GATES, "the run was interrupted, so not every test ran")
    return tuple(
        msgspec.structs.replace(
            gate, status="not judged", message=f"not judged: {because[gate.name]}"
        )
        if gate.name in because
        else gate
        for gate in verdicts
    )


def leftover_warnings(completed: Sequence[Completed]) -> tuple[str, ...]:
    """The processes tests left running after pytest ended, which testgate killed.

    When testgate itself stopped pytest, xdist's workers are among those in its process
    group: no warning for those then. A process that left the group (``setsid``) is
    always a test's daemon.
    """
    left = [process for done in completed if done.stopped is None for process in done.leftovers]
    escaped = [process for done in completed for process in done.escaped]
    warnings = []
    if left:
        warnings.append(
            f"the tests left {len(left)} processes running after pytest ended; testgate "
            f"killed them: {'; '.join(left)}"
        )
    if escaped:
        warnings.append(
            f"the tests left {len(escaped)} processes running that had left pytest's process "
            f"group (setsid) but carried its {MARKER_ENV}; testgate killed them: "
            f"{'; '.join(escaped)}"
        )
    return tuple(warnings)
