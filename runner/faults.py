"""What a run that did not end by itself reports: why it stopped, what never ran, and
whether its coverage is whole.

A run is cut short by a signal or by its deadline (``timeout-run``); its coverage is
partial then, or when a process died with the coverage of tests it had finished. Partial
coverage is never judged as if it were whole: its gates fail saying so, and the run
exits 3 (an infrastructure problem, not the suite's).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec

from runner import interrupts
from runner.execute import Completed
from runner.results import GateName, GateResult
from runner.settings import Settings

LISTED = 20
COVERAGE_GATES: frozenset[GateName] = frozenset(
    {"line-coverage", "branch-coverage", "diff-coverage"}
)


@dataclass(frozen=True)
class Stop:
    """Why the run was cut short (None: it was not), the problem to report, and the
    tests it collected that never finished."""

    why: str | None = None
    problem: str | None = None
    not_run: tuple[str, ...] = ()


def stopped(settings: Settings, collected: Sequence[str], *, done: Collection[str]) -> Stop:
    """The run's stop, from testgate's interruption state and the tests it collected."""
    why = interrupts.reason()
    if why is None:
        return Stop()
    never = tuple(test_id for test_id in collected if test_id not in done)
    listed = ", ".join(never[:LISTED])
    more = f" and {len(never) - LISTED} more" if len(never) > LISTED else ""
    cause = (
        f"stopped at its deadline (timeout-run {settings.timeout_run:g} s)"
        if why == "timeout-run"
        else f"interrupted by {why}"
    )
    problem = f"the run was {cause}: {len(never)} tests never ran" + (
        f": {listed}{more}" if never else ""
    )
    return Stop(why, problem, never)


def incomplete_coverage(
    lost: Collection[str], *, crashes: Sequence[str], reruns: int, interrupted: bool
) -> str | None:
    """Why the combined coverage is known to be partial, or None when it is whole."""
    if interrupted:
        return "the run was interrupted, so its coverage is partial"
    if not lost:
        return None
    how = "set reruns to 1 or more" if reruns == 0 else "they died again"
    return (
        f"coverage is incomplete: {len(lost)} tests ran on a process that died "
        f"({', '.join(crashes) or 'the pytest process'}) and took their coverage with it; "
        f"they could not be measured again ({how})"
    )


def not_judged(verdicts: tuple[GateResult, ...], *, why: str) -> tuple[GateResult, ...]:
    """Coverage gates on partial data: failed, saying that the data, not the suite, is short."""
    return tuple(
        msgspec.structs.replace(gate, status="fail", message=f"not judged: {why}")
        if gate.name in COVERAGE_GATES
        else gate
        for gate in verdicts
    )


def leftover_warnings(completed: Sequence[Completed]) -> tuple[str, ...]:
    """The processes tests left running after pytest ended, which testgate killed.

    When testgate itself stopped pytest, xdist's workers are among them: no warning then.
    """
    left = [process for done in completed if done.stopped is None for process in done.leftovers]
    if not left:
        return ()
    return (
        f"the tests left {len(left)} processes running after pytest ended; testgate killed "
        f"them: {'; '.join(left)}",
    )
