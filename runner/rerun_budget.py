"""When reruns are not worth running: failures that share one cause, or more than the budget.

Reruns tell a flaky test from a broken one, one test at a time. When many tests fail with
the same error (the same first line of their message: a database that is missing, a
server that is down), the environment is broken, not the tests, and rerunning them only
repeats the error for minutes. When more tests fail than ``max-reruns`` allows (a count,
or a share of the suite such as ``10%``; Gradle's test-retry ``maxFailures`` does the
same), the run is broken as a whole. Either way the failures are reported as they are,
at once, and the reason goes to results.json (``run.reruns_stopped``), the terminal and
the job summary.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.plural import counted
from runner.results import Attempt

SHARED_CAUSE_MIN = 5  # fewer failures with one message may be flaky on their own
CAUSE_SHOWN = 200  # characters of the shared message that the reason quotes


def cause(attempt: Attempt) -> str:
    """A failure's cause as reruns compare it: the phase and the message's first line."""
    lines = [line.strip() for line in (attempt.message or "").splitlines() if line.strip()]
    return f"{attempt.phase or 'call'}: {lines[0] if lines else '(no message)'}"


def stop_reason(failures: Sequence[Attempt], *, suite: int, limit: str | None) -> str | None:
    """Why the ``failures`` (each failing test's latest attempt) are not rerun; None to
    rerun them.

    ``suite`` counts the run's tests, for a ``limit`` given as a share (``"10.0%"``);
    ``limit`` None is no budget.
    """
    count = len(failures)
    if limit is not None:
        if limit.endswith("%"):
            allowed = float(limit[:-1]) * suite / 100
            shown = f"at most {limit[:-1].removesuffix('.0')} % of {counted(suite, 'test')}"
        else:
            allowed, shown = float(limit), f"at most {limit}"
        if count > allowed:
            return (
                f"not rerun: {counted(count, 'test')} failed, more than max-reruns allows "
                f"({shown}); "
                "the run looks broken as a whole, not flaky"
            )
    causes = {cause(attempt) for attempt in failures}
    if count >= SHARED_CAUSE_MIN and len(causes) == 1:
        (shared,) = causes
        quoted = shared if len(shared) <= CAUSE_SHOWN else shared[: CAUSE_SHOWN - 1] + "…"
        return (
            f"not rerun: all {count} failures share one cause ({quoted}); "
            "a broken environment, which reruns would only repeat"
        )
    return None
