"""Trends for the job summary: Mermaid ``xychart-beta`` charts GitHub renders in Markdown.

Three small charts over the last runs on the base branch, one unit each (xychart-beta has
one y-axis): line and branch coverage in percent, the suite's duration in seconds, and the
count of flaky tests. Then the tests with the highest flip rate, with their intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.history import History, Rate, Run, flip_rates
from runner.output import table_cell
from runner.plural import counted

CHART_RUNS = 30
LISTED_FLIPS = 10


def _axis(runs: Sequence[Run]) -> str:
    labels = [f'"{(run.commit or "local")[:7]}"' for run in runs]
    return "  x-axis [" + ", ".join(labels) + "]"


def _series(values: Sequence[float | None]) -> str:
    # xychart-beta wants a number for every x; a run without coverage shows as 0.
    return "[" + ", ".join(f"{value or 0:g}" for value in values) + "]"


def charts(runs: Sequence[Run]) -> list[str]:
    """Markdown lines: the three charts as ```mermaid blocks (nothing for under two runs)."""
    runs = list(runs)[-CHART_RUNS:]
    if len(runs) < 2:
        return []
    axis = _axis(runs)
    top = max(run.duration_s for run in runs)
    most = max(run.flaky for run in runs)
    return [
        "```mermaid",
        "xychart-beta",
        '  title "Coverage (line, branch), percent"',
        axis,
        '  y-axis "percent" 0 --> 100',
        "  line " + _series([run.line_percent for run in runs]),
        "  line " + _series([run.branch_percent for run in runs]),
        "```",
        "",
        "```mermaid",
        "xychart-beta",
        '  title "Suite duration, seconds"',
        axis,
        f'  y-axis "seconds" 0 --> {max(1.0, round(top * 1.1, 1)):g}',
        "  line " + _series([round(run.duration_s, 2) for run in runs]),
        "```",
        "",
        "```mermaid",
        "xychart-beta",
        '  title "Flaky tests"',
        axis,
        f'  y-axis "tests" 0 --> {max(1, most)}',
        "  bar " + _series([run.flaky for run in runs]),
        "```",
    ]


def flip_table(rates: Sequence[tuple[str, Rate]]) -> list[str]:
    """Markdown lines: the tests with the highest flip rate and their 95 % intervals."""
    if not rates:
        return []
    out = ["| test | flips | flip rate | 95 % interval |", "| --- | --- | --- | --- |"]
    for test_id, rate in rates[:LISTED_FLIPS]:
        low, high = rate.interval
        out.append(
            f"| `{table_cell(test_id)}` | {rate.count} of {rate.runs} | "
            f"{rate.count / rate.runs:.0%} | {low:.0%} to {high:.0%} |"
        )
    return out


def section(history: History, *, branch: str | None) -> list[str]:
    """The summary's history section: charts and flip rates over the runs on ``branch``."""
    runs = [run for run in history.runs if branch is None or run.branch == branch]
    chart = charts(runs)
    flips = flip_table(flip_rates(history, branch=branch))
    if not (chart or flips):
        return []
    where = f"on {branch}" if branch else "recorded"
    shown = counted(min(len(runs), CHART_RUNS), "run")
    out = ["", f"### Trends over the last {shown} {where}", ""]
    out += chart
    if flips:
        out += ["", "Highest flip rates:", "", *flips]
    return out
