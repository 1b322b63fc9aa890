"""When pytest itself crashed: say so first, with pytest's message and the known fix.

An INTERNALERROR ends pytest before it has run the suite, so advice about coverage
sources or test paths would be about the wrong problem: the gates are marked as not
evaluated instead. Some crashes happen only under xdist; those get their fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runner.results import GateResult

CRASHED = "pytest crashed with an internal error: "
NOT_EVALUATED = "not evaluated: pytest crashed (see the problem above)"


def crash_problem(internal_errors: Sequence[str], *, parallel: bool) -> str | None:
    """The first problem line for an attempt that crashed, or None when it did not."""
    if not internal_errors:
        return None
    text = internal_errors[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[-1] if lines else "(no message)"
    lowered = text.lower()
    if "benchmark" in lowered and "xdist" in lowered:
        fix = (
            "pytest-benchmark warns under xdist and the project's filterwarnings turns that "
            "into an error: pass --pytest-args='-p no:benchmark', or --workers 0 to run the "
            "benchmarks"
        )
    elif parallel and "warning" in message.lower():
        fix = (
            "a warning became an error (filterwarnings) while pytest set up xdist: try "
            "--workers 0, or filter that warning in the project's pytest configuration"
        )
    elif parallel:
        fix = "it may happen only under xdist: try --workers 0"
    else:
        fix = "see pytest's INTERNALERROR traceback above"
    return f"{CRASHED}{message.rstrip('.')}. {fix}"


def not_evaluated(gates: Sequence[GateResult]) -> tuple[GateResult, ...]:
    """The gates of a crashed run: none measured anything worth advice."""
    return tuple(
        msgspec.structs.replace(gate, actual=None, status="not evaluated", message=NOT_EVALUATED)
        for gate in gates
    )
