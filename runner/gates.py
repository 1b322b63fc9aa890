"""Quality gates: a pure function from a run's results and the settings to verdicts.

Each gate names what was required (``threshold``), what was measured (``actual``) and
whether that passes, with a message a user can act on. Coverage thresholds use
coverage.py's own ``fail_under`` rule, so 100 means exactly 100.
"""

from __future__ import annotations

from runner.coverage_data import below
from runner.plural import counted
from runner.results import (
    BROKEN,
    UNJUDGED_PREFIX,
    CoverageSummary,
    DiffCoverage,
    GateName,
    GateResult,
    TestResult,
    Totals,
    spans_text,
)
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
    deselected: int = 0,
) -> tuple[GateResult, ...]:
    """Every enabled gate, in the order a user reads them; ``deselected`` is how many
    collected tests the project deselected (``RunInfo.deselected``)."""
    gates = [
        failed_tests(tests),
        line_gate(settings, coverage),
        branch_gate(settings, coverage),
        diff_gate(
            diff,
            threshold=settings.fail_under_diff,
            precision=0 if coverage is None else coverage.precision,
            skipped=diff_skipped,
        ),
        max_flaky(tests, threshold=settings.max_flaky),
        min_tests(tests, threshold=settings.min_tests, deselected=deselected),
    ]
    if settings.max_duration is not None:
        gates.append(max_duration(suite_duration_s, threshold=settings.max_duration))
    if settings.max_skipped is not None:
        gates.append(max_skipped(tests, limit=settings.max_skipped))
    if settings.shard is not None:
        return tuple(_deferred(gate, settings.shard) for gate in gates)
    return tuple(gates)


SUITE_WIDE: frozenset[GateName] = frozenset(
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
        name=gate.name,
        threshold=gate.threshold,
        actual=gate.actual,
        status="deferred",
        message=f"{UNJUDGED_PREFIX['deferred']} (shard {shard})",
    )


def failed_tests(tests: tuple[TestResult, ...]) -> GateResult:
    """No test may fail or error (quarantined tests are reported, not counted)."""
    broken = [test for test in tests if test.outcome in BROKEN]
    if not broken:
        return GateResult.judged(
            name="failed-tests", threshold=0, actual=0, passed=True, message="no test failed"
        )
    named = ", ".join(_named(test) for test in broken[:LISTED])
    more = f" and {len(broken) - LISTED} more" if len(broken) > LISTED else ""
    errors = sum(test.outcome == "error" for test in broken)
    counts = [f"{len(broken) - errors} failed"] if len(broken) > errors else []
    counts += [counted(errors, "error")] if errors else []
    return GateResult.judged(
        name="failed-tests",
        threshold=0,
        actual=len(broken),
        passed=False,
        message=f"{', '.join(counts)}: {named}{more}",
    )


def diff_gate(
    diff: DiffCoverage | None, *, threshold: float, precision: int, skipped: str
) -> GateResult:
    """The lines a change touched are covered; passes, saying why, when none count."""
    if diff is None:
        return GateResult(
            name="diff-coverage",
            threshold=threshold,
            actual=None,
            status="skipped",
            message=UNJUDGED_PREFIX["skipped"] + skipped,
        )
    actual = diff.percent
    if actual is None:
        return GateResult.judged(
            name="diff-coverage",
            threshold=threshold,
            actual=None,
            passed=True,
            message=f"no changed Python lines since {diff.base}",
        )
    failed = below(actual, threshold, precision=precision)
    missing = "; ".join(
        f"{file.path}: {spans_text(file.missing_ranges)}"
        for file in diff.files
        if file.missing_ranges
    )
    message = (
        f"{actual:.2f} % of {counted(diff.statements, 'changed statement')} and "
        f"{counted(diff.branches, 'branch')} "
        f"since {diff.base} covered; minimum {threshold:g} %"
        + (f"; missing {missing}" if missing else "")
    )
    return GateResult.judged(
        name="diff-coverage", threshold=threshold, actual=actual, passed=not failed, message=message
    )


def max_flaky(tests: tuple[TestResult, ...], *, threshold: int) -> GateResult:
    """At most ``threshold`` flaky tests (quarantined ones are reported, not counted)."""
    flaky = [test for test in tests if test.outcome == "flaky"]
    if not flaky:
        return GateResult.judged(
            name="max-flaky", threshold=threshold, actual=0, passed=True, message="no flaky test"
        )
    named = "; ".join(f"{_named(test)} ({test.flaky_kind}: {test.note})" for test in flaky[:LISTED])
    more = f"; and {len(flaky) - LISTED} more" if len(flaky) > LISTED else ""
    return GateResult.judged(
        name="max-flaky",
        threshold=threshold,
        actual=len(flaky),
        passed=len(flaky) <= threshold,
        message=f"{len(flaky)} flaky: {named}{more}",
    )


def _named(test: TestResult) -> str:
    """A test's id, and after a merge of variants, which variant this result is from."""
    return f"{test.id} [{test.variant}]" if test.variant else test.id


def line_gate(settings: Settings, coverage: CoverageSummary | None) -> GateResult:
    """Line coverage at ``fail-under-line``; at a threshold the project states itself
    (``fail_under``, ``--cov-fail-under``), coverage.py's total, which that threshold is
    for: statements and branches together."""
    if settings.threshold_from is None:
        return coverage_gate(
            name="line-coverage",
            threshold=settings.fail_under_line,
            coverage=coverage,
            actual=None if coverage is None else coverage.line_percent,
        )
    return coverage_gate(
        name="line-coverage",
        threshold=settings.fail_under_line,
        coverage=coverage,
        actual=None if coverage is None else coverage.total_percent,
        what="coverage.py's total (statements and branches) ",
        source=f" from {settings.threshold_from}",
    )


def branch_gate(settings: Settings, coverage: CoverageSummary | None) -> GateResult:
    """Branch coverage at ``fail-under-branch``. Data without a branch (none of the measured
    code ran) is no measurement, not coverage.py's vacuous 100 %."""
    threshold = settings.fail_under_branch
    if coverage is not None and not coverage.branch_data:
        return GateResult.judged(
            name="branch-coverage",
            threshold=threshold,
            actual=None,
            passed=threshold == 0,
            message=f"no branch data: none of the {counted(coverage.num_statements, 'statement')} "
            "measured ran, so coverage.py measured no branch (it reports none, not 100 %)",
        )
    return coverage_gate(
        name="branch-coverage",
        threshold=threshold,
        coverage=coverage,
        actual=None if coverage is None else coverage.branch_percent,
    )


def coverage_gate(
    *,
    name: GateName,
    threshold: float,
    coverage: CoverageSummary | None,
    actual: float | None,
    what: str = "",
    source: str = "",
) -> GateResult:
    """Coverage at or above the threshold, by coverage.py's rounding rule."""
    if coverage is None or actual is None:
        return GateResult.judged(
            name=name,
            threshold=threshold,
            actual=None,
            passed=threshold == 0,
            message="no coverage data: no measured file was run. Set [tool.coverage.run] source "
            "to the project's package.",
        )
    failed = below(actual, threshold, precision=coverage.precision)
    verdict = "below" if failed else "meets"
    return GateResult.judged(
        name=name,
        threshold=threshold,
        actual=actual,
        passed=not failed,
        message=f"{what}{actual:.2f} % {verdict} the minimum {threshold:g} %{source}",
    )


def min_tests(tests: tuple[TestResult, ...], *, threshold: int, deselected: int = 0) -> GateResult:
    """At least ``threshold`` tests ran (skipped ones did not), so a shrunk suite fails;
    with none, why: every test skipped, or deselected (``-k``, ``-m``), or none collected."""
    totals = Totals.of(tests)
    ran = totals.ran
    passed = ran >= threshold
    if ran == 0 and totals.tests:
        every = "the only test was" if totals.tests == 1 else f"all {totals.tests} tests were"
        message = f"no test ran: {every} skipped (see the skip reasons)"
    elif ran == 0 and deselected:
        message = (
            f"no test ran: the {counted(deselected, 'test')} collected "
            f"{'was' if deselected == 1 else 'were'} deselected: check -k, -m, --deselect and "
            "--lf in the options and addopts, and plugins that deselect"
        )
    elif ran == 0:
        message = "no test ran: check testpaths, -k and -m, and that tests are collected"
    else:
        message = f"{counted(ran, 'test')} ran; at least {threshold} required"
    return GateResult.judged(
        name="min-tests", threshold=threshold, actual=ran, passed=passed, message=message
    )


def max_skipped(tests: tuple[TestResult, ...], *, limit: str) -> GateResult:
    """At most ``limit`` tests skipped: a count (``3``) or a share of the tests (``5.0%``)."""
    totals = Totals.of(tests)
    share = limit.endswith("%")
    if share:
        threshold = float(limit[:-1])
        actual = round(100 * totals.skipped / totals.tests, 2) if totals.tests else 0.0
    else:
        threshold, actual = float(limit), float(totals.skipped)
    passed = actual <= threshold
    unit = " %" if share else ""
    return GateResult.judged(
        name="max-skipped",
        threshold=threshold,
        actual=actual,
        passed=passed,
        message=f"{totals.skipped} of {counted(totals.tests, 'test')} skipped ({actual:g}{unit}); "
        f"at most {threshold:g}{unit} allowed",
        unit="%" if share else None,
    )


def max_duration(suite_duration_s: float, *, threshold: float) -> GateResult:
    """The suite's wall time stays within the limit."""
    passed = suite_duration_s <= threshold
    return GateResult.judged(
        name="max-duration",
        threshold=threshold,
        actual=round(suite_duration_s, 3),
        passed=passed,
        message=f"suite took {suite_duration_s:.1f} s; limit {threshold:g} s",
    )
