"""Render a run for people: the compact terminal table and the Markdown job summary.

Both are pure functions of the results. Percentages are shown the way coverage.py shows
them (never rounded up to 100 unless everything is covered).
coverage.py is imported only to show a percentage: a run without coverage skips it.
"""

from __future__ import annotations

import heapq
import re
from typing import TYPE_CHECKING

import msgspec

from runner.crash import CRASHED
from runner.output import PRINTED_LIMIT, bounded, clean, first_line, markdown_text, table_cell
from runner.plural import counted
from runner.results import (
    BROKEN,
    CoverageSummary,
    DiffCoverage,
    GateResult,
    Phases,
    RunResult,
    TestResult,
    spans_text,
)

if TYPE_CHECKING:
    from runner.stability import Detection

DISPLAY_PRECISION = 2
LISTED_FAILURES = 20
SLOWEST = 5
NOTED = ("flaky", "quarantined")
PROBLEM_LINES = 50  # a problem's lines shown; results.json keeps them all


def percent(value: float | None) -> str:
    """A coverage percentage as coverage.py would print it, with two decimals."""
    from coverage.results import display_covered  # noqa: PLC0415 (lazy, see top)

    return "n/a" if value is None else display_covered(value, DISPLAY_PRECISION) + " %"


def branch_percent(coverage: CoverageSummary) -> str:
    """The branch percentage, or n/a when coverage.py measured no branch at all."""
    return percent(coverage.branch_percent) if coverage.branch_data else "n/a"


def gate_value(gate: GateResult, value: float | None, *, measured: bool) -> str:
    """A gate's threshold or actual value in the gate's own unit."""
    if value is None:
        return "n/a"
    if gate.name.endswith("-coverage"):
        return percent(value) if measured else f"{value:g} %"
    if gate.name == "max-duration":
        return f"{value:g} s"
    return f"{value:g} %" if gate.unit == "%" else f"{value:g}"


def gate_verdict(gate: GateResult) -> str:
    """pass or FAIL; a gate that did not judge says so (not judged, deferred, …)."""
    return "FAIL" if gate.status == "fail" else gate.status


def counts_line(result: RunResult) -> str:
    """``12 tests: 10 passed, 1 failed, 1 error`` with only the non-zero counts, then the
    tests the project deselected (``; 3 deselected``), which are not among the tests."""
    totals = msgspec.structs.asdict(result.totals)
    parts = [_count(name, totals[name]) for name in list(totals)[1:] if totals[name]]
    deselected = f"; {result.run.deselected} deselected" if result.run.deselected else ""
    return (
        f"{counted(totals['tests'], 'test')}: "
        + (", ".join(parts) if parts else "none ran")
        + deselected
    )


def phases_line(phases: Phases) -> str:
    """Where the minutes went: ``install 3.10 s · services +0.20 s (ready in 5.30 s) · …``.

    The services' part is what they added after the installation; their own start time,
    mostly hidden behind it, is in brackets.
    """
    services = f"services +{phases.services_s:.2f} s (ready in {phases.services_ready_s:.2f} s)"
    parts = [
        f"install {phases.install_s:.2f} s",
        *([services] if phases.services_ready_s else []),
        f"tests {phases.tests_s:.2f} s",
        f"reruns {phases.reruns_s:.2f} s",
        f"reports {phases.reports_s:.2f} s",
    ]
    return " · ".join(parts)


def _count(name: str, count: int) -> str:
    """``1 error``, ``2 errors``, ``1 passed``: pytest's own words for a count."""
    return counted(count, "error") if name == "errors" else f"{count} {name}"


def _headline(test: TestResult) -> str:
    """``FAILED``, ``FLAKY (order-dependent)``, with ``[variant]`` after a merge."""
    kind = f" ({test.flaky_kind})" if test.flaky_kind else ""
    variant = f" [{test.variant}]" if test.variant else ""
    return f"{test.outcome.upper()}{kind}{variant}"


def location(test_file: str, line: int | None) -> str:
    return test_file if line is None else f"{test_file}:{line}"


def _one(text: str | None) -> str:
    """An untrusted text's first line, bounded, as one inert line (see runner.output)."""
    return clean(bounded(first_line(text or ""), PRINTED_LIMIT))


def terminal(result: RunResult, *, reports_dir: str) -> str:
    """The table printed after a run."""
    crashed = [problem for problem in result.run.problems if problem.startswith(CRASHED)]
    lines = [
        "",
        *(f"testgate: {clean(bounded(problem, PRINTED_LIMIT))}" for problem in crashed),
        f"testgate: {counts_line(result)} in {result.run.suite_duration_s:.2f} s"
        + (
            f" (+{result.run.rerun_duration_s:.2f} s rerunning)"
            if result.run.rerun_duration_s
            else ""
        ),
    ]
    if result.run.phases is not None:
        lines.append(f"testgate: time: {phases_line(result.run.phases)}")
    if result.run.interrupted is not None:
        lines.append(f"testgate: {interruption(result)}")
    if result.run.reruns_stopped is not None:
        lines.append(f"testgate: failures {clean(result.run.reruns_stopped)}")
    if result.coverage is not None:
        lines.append(
            f"coverage: line {percent(result.coverage.line_percent)}, "
            f"branch {branch_percent(result.coverage)}"
        )
    diff = result.diff_coverage
    if diff is not None and diff.percent is not None:
        lines.append(
            f"diff coverage: {percent(diff.percent)} of "
            f"{counted(diff.statements, 'changed statement')} and "
            f"{counted(diff.branches, 'branch')} since {diff.base}"
        )
    rows = [("gate", "threshold", "actual", "verdict")]
    rows += [
        (
            gate.name,
            gate_value(gate, gate.threshold, measured=False),
            gate_value(gate, gate.actual, measured=True),
            gate_verdict(gate),
        )
        for gate in result.gates
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    for gate in result.gates:
        if not gate.passed:
            lines.append(f"  {gate.name}: {clean(gate.message)}")
    broken = [test for test in result.tests if test.outcome in BROKEN]
    for test in broken[:LISTED_FAILURES]:
        last = test.attempts[-1]
        message = _one(last.message or last.teardown_error)
        where = clean(location(test.file, test.line))
        lines.append(f"{_headline(test)} {where} {clean(test.id)}: {message}")
    if len(broken) > LISTED_FAILURES:
        lines.append(f"... and {len(broken) - LISTED_FAILURES} more in results.json")
    for test in [test for test in result.tests if test.outcome in NOTED][:LISTED_FAILURES]:
        where = clean(location(test.file, test.line))
        lines.append(f"{_headline(test)} {where} {clean(test.id)}: {_one(test.note)}")
    for problem in result.run.problems:
        if problem not in crashed:  # already the first line
            head, *rest = problem_lines(problem)
            lines += [f"problem: {head}", *(f"    {line}" for line in rest)]
    if result.run.coverage_misconfigured is not None:  # what makes the run exit 2
        lines.append(f"error: {clean(bounded(result.run.coverage_misconfigured, PRINTED_LIMIT))}")
    for warning in result.run.warnings:
        lines.append(f"warning: {clean(bounded(warning, PRINTED_LIMIT))}")
    verdict = "passed" if result.passed and not result.run.problems else "FAILED"
    lines.append(f"testgate {verdict}; reports in {reports_dir}/")
    return "\n".join(lines) + "\n"


def interruption(result: RunResult) -> str:
    """The notice on an interrupted run's reports: they hold only what finished."""
    why = result.run.interrupted
    cause = "stopped at its deadline (timeout-run)" if why == "timeout-run" else f"by {why}"
    if not result.tests and not result.run.not_run:  # before pytest had collected them
        return f"INTERRUPTED {cause}: these reports hold no test; none had finished"
    return (
        f"INTERRUPTED {cause}: these reports hold the {counted(len(result.tests), 'test')} that "
        f"finished; {len(result.run.not_run)} never ran"
    )


def markdown(result: RunResult) -> str:
    """The job summary: verdict, counts, coverage, gates, failures."""
    verdict = "passed" if result.passed and not result.run.problems else "failed"
    icon = "✅" if verdict == "passed" else "❌"
    phases = result.run.phases
    out = [
        f"## {icon} testgate {verdict}",
        "",
        f"**{counts_line(result)}** in {result.run.suite_duration_s:.2f} s",
        "",
        *([f"Time: {phases_line(phases)}", ""] if phases is not None else []),
    ]
    if result.run.merged:
        out += [
            f"Merged {counted(len(result.run.merged), 'run')}: "
            + ", ".join(f"`{_cell(run)}`" for run in result.run.merged),
            "",
        ]
    if result.run.interrupted is not None:
        out += [f"> **{_text(interruption(result))}**", ""]
    if result.run.reruns_stopped is not None:
        out += [f"> Failures {_text(result.run.reruns_stopped)}", ""]
    if result.coverage is not None:
        out += [
            f"Coverage: line **{percent(result.coverage.line_percent)}** "
            f"({result.coverage.covered_lines}/{result.coverage.num_statements} statements), "
            f"branch **{branch_percent(result.coverage)}** "
            f"({result.coverage.covered_branches}/{result.coverage.num_branches} branches)",
            "",
        ]
        if result.coverage.worst_files:
            out += ["| least covered file | lines | branches |", "| --- | --- | --- |"]
            out += [
                f"| `{_cell(file.path)}` | {percent(file.line_percent)} | "
                f"{percent(file.branch_percent)} |"
                for file in result.coverage.worst_files
            ]
            out.append("")
    out += ["| gate | threshold | actual | verdict | |", "| --- | --- | --- | --- | --- |"]
    for gate in result.gates:
        threshold = gate_value(gate, gate.threshold, measured=False)
        actual = gate_value(gate, gate.actual, measured=True)
        verdict_cell = "**FAIL**" if gate.status == "fail" else gate_verdict(gate)
        out.append(
            f"| {gate.name} | {threshold} | {actual} | {verdict_cell} | {_text(gate.message)} |"
        )
    out += _diff_table(result.diff_coverage)
    broken = [test for test in result.tests if test.outcome in BROKEN]
    if broken:
        out += ["", "### Failed tests", "", "| test | where | message |", "| --- | --- | --- |"]
        for test in broken[:LISTED_FAILURES]:
            attempt = test.attempts[-1]
            out.append(
                f"| `{_cell(test.id)}` | `{_cell(location(test.file, test.line))}` | "
                f"{_text(attempt.message or attempt.teardown_error or '')} |"
            )
        if len(broken) > LISTED_FAILURES:
            out.append(f"\n{len(broken) - LISTED_FAILURES} more failed tests are in results.json.")
    noted = [test for test in result.tests if test.outcome in NOTED]
    if noted:
        out += [
            "",
            "### Flaky and quarantined tests",
            "",
            "| test | where | verdict | evidence |",
            "| --- | --- | --- | --- |",
        ]
        for test in noted[:LISTED_FAILURES]:
            kind = f" ({test.flaky_kind})" if test.flaky_kind else ""
            out.append(
                f"| `{_cell(test.id)}` | `{_cell(location(test.file, test.line))}` | "
                f"{test.outcome}{kind} | {_text(test.note or '')} |"
            )
        if len(noted) > LISTED_FAILURES:
            out.append(f"\n{len(noted) - LISTED_FAILURES} more are in results.json.")
    slowest = heapq.nsmallest(  # as sorted(...)[:SLOWEST], without sorting every test
        SLOWEST,
        (test for test in result.tests if test.attempts),
        key=lambda test: -test.attempts[0].duration_s,
    )
    if slowest:
        out += ["", "### Slowest tests", "", "| test | seconds |", "| --- | --- |"]
        out += [f"| `{_cell(test.id)}` | {test.attempts[0].duration_s:.2f} |" for test in slowest]
    out += _said(result)
    return "\n".join(out) + "\n"


def _said(result: RunResult) -> list[str]:
    """The summary's closing sections: problems (exit 3), the configuration error (exit
    2) and the warnings."""
    out: list[str] = []
    if result.run.problems:
        out += ["", "### Problems", ""]
        for problem in result.run.problems:
            head, *rest = problem_lines(problem)
            out.append(f"- {markdown_text(head)}")
            if rest:  # such as a setup command's output: as it was, in a code block
                fence = "`" * max(3, 1 + max(map(len, re.findall("`+", "".join(rest))), default=0))
                out += ["", f"  {fence}text", *(f"  {line}" for line in rest), f"  {fence}", ""]
    if result.run.coverage_misconfigured is not None:
        out += ["", "### Configuration error", "", f"- {_text(result.run.coverage_misconfigured)}"]
    if result.run.warnings:
        out += ["", "### Warnings", ""] + [f"- {_text(warning)}" for warning in result.run.warnings]
    return out


def _diff_table(diff: DiffCoverage | None) -> list[str]:
    """Per changed file: changed statements and branches, and the lines left uncovered."""
    if diff is None or not diff.files:
        return []
    out = [
        "",
        f"### Coverage of the change since `{_cell(diff.base)}`: {percent(diff.percent)}",
        "",
        "| file | changed statements | covered | changed branches | covered | missing lines |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for file in diff.files[:LISTED_FAILURES]:
        missing = spans_text(file.missing_ranges)
        out.append(
            f"| `{_cell(file.path)}` | {file.statements} | {file.covered_statements} | "
            f"{file.branches} | {file.covered_branches} | {missing or '-'} |"
        )
    if len(diff.files) > LISTED_FAILURES:
        out.append(f"\n{len(diff.files) - LISTED_FAILURES} more files are in results.json.")
    return out


def problem_lines(problem: str) -> list[str]:
    """A problem's lines, each inert and bounded; a setup command's output stays readable."""
    lines = bounded(problem, PRINTED_LIMIT).splitlines() or [""]
    return [clean(line.rstrip()) for line in lines[:PROBLEM_LINES]] + (
        [f"[... {len(lines) - PROBLEM_LINES} more lines in results.json]"]
        if len(lines) > PROBLEM_LINES
        else []
    )


def _cell(text: str) -> str:
    """Text safe inside a code span of one Markdown table cell: its first line, no raw
    control character."""
    return table_cell(first_line(text)[:300])


def _text(text: str) -> str:
    """A message, note or problem in the summary's running text or a table cell: its
    first line as it is, no character of it read as Markdown or HTML."""
    return markdown_text(first_line(text)[:300])


VERDICT_ORDER = ("flaky", "failing", "undecided", "skipped", "stable")


def _detection_counts(detection: Detection) -> str:
    parts = [f"{detection.count(name)} {name}" for name in VERDICT_ORDER if detection.count(name)]
    return ", ".join(parts) if parts else "no test checked"


def detection_terminal(detection: Detection) -> str:
    """What ``testgate flaky`` prints at the end."""
    lines = [
        "",
        f"testgate flaky: {_detection_counts(detection)} after "
        f"{counted(detection.rounds, 'round')} in {detection.duration_s:.1f} s (stable = "
        f"{detection.runs_needed} passing runs in a row: fails less than "
        f"{detection.max_fail_rate:g} at confidence {detection.confidence:g})",
    ]
    for name in VERDICT_ORDER:
        lines += [
            f"{name.upper()} {clean(test.id)}: {test.statement}"
            for test in detection.tests
            if test.verdict == name
        ]
    if detection.stopped_by == "time-budget":
        lines.append("stopped by the time budget; undecided tests need more rounds")
    lines += [f"quarantine entry now stable: {clean(e)}" for e in detection.quarantine_stable]
    lines += [f"warning: {clean(bounded(w, PRINTED_LIMIT))}" for w in detection.warnings]
    lines += [f"problem: {clean(bounded(p, PRINTED_LIMIT))}" for p in detection.problems]
    return "\n".join(lines) + "\n"


def detection_markdown(detection: Detection) -> str:
    """The job summary of a flaky-detection job."""
    bad = detection.count("flaky") or detection.count("failing")
    out = [
        f"## {'❌' if bad else '✅'} testgate flaky detection",
        "",
        f"**{_detection_counts(detection)}** after {counted(detection.rounds, 'round')} in "
        f"{detection.duration_s:.1f} s. A test is stable after {detection.runs_needed} passing "
        f"runs in a row: it fails less than {detection.max_fail_rate:g} of the time, at "
        f"confidence {detection.confidence:g}.",
        "",
        "| test | verdict | runs | failures | evidence |",
        "| --- | --- | --- | --- | --- |",
    ]
    ranked = sorted(detection.tests, key=lambda test: VERDICT_ORDER.index(test.verdict))
    out += [
        f"| `{_cell(test.id)}` | {test.verdict} | {test.runs} | {test.failures} | "
        f"{_text(test.statement)} |"
        for test in ranked
    ]
    if detection.stopped_by == "time-budget":
        out += ["", "Stopped by the time budget: undecided tests need more rounds."]
    if detection.quarantine_stable:
        out += ["", "### Quarantine entries now proven stable", ""]
        out += [f"- `{_cell(entry)}`" for entry in detection.quarantine_stable]
    return "\n".join(out) + "\n"
