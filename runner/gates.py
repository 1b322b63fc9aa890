"""Quality gates: a pure function from a run's results and the settings to verdicts.

Each gate names what was required (``threshold``), what was measured (``actual``) and
whether that passes, with a message a user can act on. Coverage thresholds use
coverage.py's own ``fail_under`` rule, so 100 means exactly 100.
"""

from __future__ import annotations

from runner.coverage_data import below
from runner.diff_coverage import DiffCoverage, ranges
from runner.plural import counted
from runner.results import BROKEN, CoverageSummary, GateResult, TestResult, Totals
from runner.settings import Settings

LISTED = 3


def evaluate(
    *,
    settings: Settings,
    tests: tuple[TestResult, ...],
    coverage: CoverageSummary | None,
    suite_duration_s: float,
    diff: DiffCoverage | None = None,
    diff_skipped: str = "",
) -> tuple[GateResult, ...]:
    """Every enabled gate, in the order a user reads them."""
    gates = [
        failed_tests(tests),
        coverage_gate(
            name="line-coverage",
            threshold=settings.fail_under_line,
            coverage=coverage,
            actual=None if coverage is None else coverage.line_percent,
        ),
        coverage_gate(
            name="branch-coverage",
            threshold=settings.fail_under_branch,
            coverage=coverage,
            actual=None if coverage is None else coverage.branch_percent,
        ),
        diff_gate(
            diff,
            threshold=settings.fail_under_diff,
            precision=0 if coverage is None else coverage.precision,
            skipped=diff_skipped,
        ),
        max_flaky(tests, threshold=settings.max_flaky),
        min_tests(tests, threshold=settings.min_tests),
    ]
    if settings.max_duration is not None:
        gates.append(max_duration(suite_duration_s, threshold=settings.max_duration))
    if settings.max_skipped is not None:
        gates.append(max_skipped(tests, limit=settings.max_skipped))
    if settings.shard is not None:
        return tuple(_deferred(gate, settings.shard) for gate in gates)
    return tuple(gates)


SUITE_WIDE = frozenset(
    {
        "line-coverage",
        "branch-coverage",
        "diff-coverage",
        "min-tests",
        "max-duration",
        "max-skipped",
    }
)


def _deferred(gate: GateResult, shard: str) -> GateResult:
    """A suite-wide gate judged on one shard would lie: the merge judges it."""
    if gate.name not in SUITE_WIDE:
        return gate
    return GateResult(
        gate.name, gate.threshold, gate.actual, True, f"deferred to testgate merge (shard {shard})"
    )


def failed_tests(tests: tuple[TestResult, ...]) -> GateResult:
    """No test may fail or error (quarantined tests are reported, not counted)."""
    broken = [test for test in tests if test.outcome in BROKEN]
    if not broken:
        return GateResult("failed-tests", 0, 0, True, "no test failed")
    named = ", ".join(_named(test) for test in broken[:LISTED])
    more = f" and {len(broken) - LISTED} more" if len(broken) > LISTED else ""
    errors = sum(test.outcome == "error" for test in broken)
    counts = [f"{len(broken) - errors} failed"] if len(broken) > errors else []
    counts += [counted(errors, "error")] if errors else []
    return GateResult("failed-tests", 0, len(broken), False, f"{', '.join(counts)}: {named}{more}")


def diff_gate(
    diff: DiffCoverage | None, *, threshold: float, precision: int, skipped: str
) -> GateResult:
    """The lines a change touched are covered; passes, saying why, when none count."""
    if diff is None:
        return GateResult("diff-coverage", threshold, None, True, f"skipped: {skipped}")
    actual = diff.percent
    if actual is None:
        return GateResult(
            "diff-coverage", threshold, None, True, f"no changed Python lines since {diff.base}"
        )
    failed = below(actual, threshold, precision=precision)
    missing = "; ".join(
        f"{file.path}: " + ", ".join(_span(span) for span in ranges(file.missing_lines))
        for file in diff.files
        if file.missing_lines
    )
    message = (
        f"{actual:.2f} % of {counted(diff.statements, 'changed statement')} and "
        f"{counted(diff.branches, 'branch')} "
        f"since {diff.base} covered; minimum {threshold:g} %"
        + (f"; missing {missing}" if missing else "")
    )
    return GateResult("diff-coverage", threshold, actual, not failed, message)


def _span(span: list[int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


def max_flaky(tests: tuple[TestResult, ...], *, threshold: int) -> GateResult:
    """At most ``threshold`` flaky tests (quarantined ones are reported, not counted)."""
    flaky = [test for test in tests if test.outcome == "flaky"]
    if not flaky:
        return GateResult("max-flaky", threshold, 0, True, "no flaky test")
    named = "; ".join(f"{_named(test)} ({test.flaky_kind}: {test.note})" for test in flaky[:LISTED])
    more = f"; and {len(flaky) - LISTED} more" if len(flaky) > LISTED else ""
    return GateResult(
        "max-flaky",
        threshold,
        len(flaky),
        len(flaky) <= threshold,
        f"{len(flaky)} flaky: {named}{more}",
    )


def _named(test: TestResult) -> str:
    """A test's id, and after a merge of variants, which variant this result is from."""
    return f"{test.id} [{test.variant}]" if test.variant else test.id


def coverage_gate(
    *, name: str, threshold: float, coverage: CoverageSummary | None, actual: float | None
) -> GateResult:
    """Coverage at or above the threshold, by coverage.py's rounding rule."""
    if coverage is None or actual is None:
        return GateResult(
            name,
            threshold,
            None,
            threshold == 0,
            "no coverage data: no measured file was run. Set [tool.coverage.run] source "
            "to the project's package.",
        )
    failed = below(actual, threshold, precision=coverage.precision)
    verdict = "below" if failed else "meets"
    return GateResult(
        name, threshold, actual, not failed, f"{actual:.2f} % {verdict} the minimum {threshold:g} %"
    )


def min_tests(tests: tuple[TestResult, ...], *, threshold: int) -> GateResult:
    """At least ``threshold`` tests ran (skipped ones did not), so a shrunk suite fails."""
    ran = Totals.of(tests).ran
    passed = ran >= threshold
    if ran == 0:
        message = "no test ran: check testpaths, -k and -m, and that tests are collected"
    else:
        message = f"{counted(ran, 'test')} ran; at least {threshold} required"
    return GateResult("min-tests", threshold, ran, passed, message)


def max_skipped(tests: tuple[TestResult, ...], *, limit: str) -> GateResult:
    """At most ``limit`` tests skipped: a count (``3``) or a share of the tests (``5.0%``)."""
    totals = Totals.of(tests)
    if limit.endswith("%"):
        threshold = float(limit[:-1])
        actual = round(100 * totals.skipped / totals.tests, 2) if totals.tests else 0.0
        unit = " %"
    else:
        threshold, actual, unit = float(limit), float(totals.skipped), ""
    passed = actual <= threshold
    return GateResult(
        "max-skipped",
        threshold,
        actual,
        passed,
        f"{totals.skipped} of {counted(totals.tests, 'test')} skipped ({actual:g}{unit}); "
        f"at most {threshold:g}{unit} allowed",
    )


def max_duration(suite_duration_s: float, *, threshold: float) -> GateResult:
    """The suite's wall time stays within the limit."""
    passed = suite_duration_s <= threshold
    return GateResult(
        "max-duration",
        threshold,
        round(suite_duration_s, 3),
        passed,
        f"suite took {suite_duration_s:.1f} s; limit {threshold:g} s",
    )
