"""Coverage of the lines a change touched: the numbers behind the ``fail-under-diff`` gate.

A changed line counts only when coverage.py counts it: a statement of a file it measured
(so files its configuration omits, lines it excludes such as ``# pragma: no cover``, and
blank lines, comments and docstrings never count). With branch coverage, the branches
that start on changed lines count too, and the percentage combines both the way
coverage.py's own total does. Deleted lines never count; in a renamed file only the
lines the rename changed do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from runner.results import DiffCoverage, FileDiff

_HUNK = re.compile(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@")


def added_lines(diff_text: str) -> dict[str, set[int]]:
    """The lines each file gained in a zero-context unified diff, by new path."""
    changed: dict[str, set[int]] = {}
    current: set[int] | None = None
    for line in diff_text.splitlines():
        if line.startswith("+++ "):
            path = line[4:].split("\t", 1)[0]
            current = None if path == "/dev/null" else changed.setdefault(path[2:], set())
        elif current is not None and (hunk := _HUNK.match(line)):
            start, count = int(hunk[1]), int(hunk[2] or 1)
            current.update(range(start, start + count))
    return changed


def ranges(lines: Iterable[int]) -> list[list[int]]:
    """Sorted lines as contiguous ``[first, last]`` ranges."""
    spans: list[list[int]] = []
    for line in sorted(set(lines)):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return spans


def measure(
    changed: Mapping[str, set[int]], measured: Mapping[str, Any], *, base: str, merge_base: str
) -> DiffCoverage:
    """Intersect the changed lines with coverage.py's JSON report (its ``files`` table).

    ``percent`` counts covered changed statements and branches over all of them (as
    coverage.py's total does), ``line_percent`` statements alone (as diff-cover does).
    """
    files = []
    for path in sorted(changed):
        report = measured.get(path)
        lines = changed[path]
        if report is None:
            continue
        statements = (set(report["executed_lines"]) | set(report["missing_lines"])) & lines
        missing = set(report["missing_lines"]) & lines
        taken = [tuple(arc) for arc in report.get("executed_branches", []) if arc[0] in lines]
        not_taken = [tuple(arc) for arc in report.get("missing_branches", []) if arc[0] in lines]
        if not statements and not taken and not not_taken:
            continue
        files.append(
            FileDiff(
                path=path,
                statements=len(statements),
                covered_statements=len(statements - missing),
                missing_ranges=tuple((first, last) for first, last in ranges(missing)),
                branches=len(taken) + len(not_taken),
                covered_branches=len(taken),
                missing_branches=tuple(sorted((int(a), int(b)) for a, b in not_taken)),
            )
        )
    changed_statements = sum(file.statements for file in files)
    changed_branches = sum(file.branches for file in files)
    covered = sum(file.covered_statements for file in files)
    total = changed_statements + changed_branches
    return DiffCoverage(
        base=base,
        merge_base=merge_base,
        percent=100.0 * (covered + sum(file.covered_branches for file in files)) / total
        if total
        else None,
        line_percent=100.0 * covered / changed_statements if changed_statements else None,
        statements=changed_statements,
        branches=changed_branches,
        files=tuple(files),
    )
