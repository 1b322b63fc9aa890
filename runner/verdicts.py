"""Tell flaky from broken: a test's verdict from the attempts of one run and its reruns,
and from an earlier attempt of the same workflow run (a re-run job on the same commit).
A try pytest-rerunfailures ran again within one pytest run is an attempt too.

A test is ``failed`` when every attempt failed, ``flaky`` when it failed at least once
and passed at least once on the same code. The kind of flakiness is named only where the
evidence shows it: ``order-dependent`` when it passed alone but failed again in every
replay after the tests that ran before it on its worker (a test that fails at random
with probability p fails all of ``ORDER_CHECKS`` replays only with probability p to that
power), else ``nondeterministic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from runner.results import BROKEN, Attempt, TestOutcome, TestResult, classify

ORDER_CHECKS = 2


@dataclass(frozen=True)
class Verdict:
    """A test's outcome, the kind of flakiness when flaky, and a sentence saying why."""

    outcome: TestOutcome
    flaky_kind: str | None = None
    note: str | None = None


def verdict(attempts: Sequence[Attempt]) -> Verdict:
    """Classify a test from all its attempts (runs, reruns and any order check)."""
    runs = [attempt for attempt in attempts if attempt.kind != "order-check"]
    outcomes = [classify(attempt) for attempt in runs]
    failures = sum(outcome in BROKEN for outcome in outcomes)
    if len(runs) == 1 or failures == 0:
        return Verdict(outcomes[-1])
    tally = f"failed {failures} of {len(runs)} attempts"
    if failures == len(runs):
        return Verdict(outcomes[0], note=tally)
    alone = any(a.kind == "rerun" and classify(a) not in BROKEN for a in runs)
    passed = "passed in isolation" if alone else "passed when pytest-rerunfailures ran it again"
    checks = [classify(attempt) for attempt in attempts if attempt.kind == "order-check"]
    again = sum(outcome in BROKEN for outcome in checks)
    replays = f"{again} of {len(checks)} replays after the tests that ran before it on its worker"
    if checks and again == len(checks):
        return Verdict("flaky", "order-dependent", f"{tally}; {passed}; failed {replays}")
    evidence = f"; failed {replays}" if checks else ""
    return Verdict("flaky", "nondeterministic", f"{tally}; {passed}{evidence}")


def flaky_on_rerun(
    tests: tuple[TestResult, ...], *, failed_before: frozenset[str], note: str
) -> tuple[TestResult, ...]:
    """The tests, those that failed in an earlier attempt of the same code and pass now
    made ``flaky`` (``nondeterministic``), with ``note`` as the evidence."""
    return tuple(
        msgspec.structs.replace(test, outcome="flaky", flaky_kind="nondeterministic", note=note)
        if test.outcome == "passed" and test.id in failed_before
        else test
        for test in tests
    )
