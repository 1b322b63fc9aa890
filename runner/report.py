"""The end every command shares: judge a result, write its reports, show it.

``testgate run``, ``merge`` and ``gate`` end in ``conclude``: the gates, the history,
``results.json``, ``junit.xml``, ``durations.json`` and ``summary.md``, the table printed,
and on GitHub the annotations, step summary and outputs. ``flaky`` and ``sonar`` use its
parts (``write_reports``, ``shown``). It sits above the model, the gates and the
renderers, and below the commands: nothing here imports a command's module.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from pathlib import Path

import msgspec

from runner import coverage_data, faults, gates, history_run, owned_dir, render
from runner.crash import CRASHED, not_evaluated
from runner.diff_coverage import added_lines, measure
from runner.errors import ConfigError, InfraError
from runner.git import Git, default_base, merge_base
from runner.git import diff as diff_text
from runner.github import client, step
from runner.github.commands import on_github
from runner.junit import write_junit
from runner.output import emit
from runner.pytest_config import added_options, selects_tests
from runner.results import (
    ENCODE_BATCH,
    CoverageSummary,
    DiffCoverage,
    GateResult,
    Rounded,
    RunInfo,
    RunResult,
    TestResult,
    encode,
)
from runner.settings import Settings
from runner.verdicts import flaky_on_rerun


@dataclass(frozen=True)
class Outcome:
    """What a command produced: the result and the exit code."""

    result: RunResult
    exit_code: int


def conclude(
    *,
    settings: Settings,
    info: RunInfo,
    tests: tuple[TestResult, ...],
    coverage: CoverageSummary | None,
    diff: tuple[DiffCoverage | None, str],
    environ: Mapping[str, str],
    again: bool = False,
    kept: tuple[GateResult, ...] = (),
) -> Outcome:
    """Judge a result, write its reports, print its table: the end of run, merge and gate.

    ``again`` (``testgate gate``) judges a result that was concluded before: what that
    conclusion added (the previous attempt's verdicts, the history's labels and warnings)
    is in it already, and the history gets no second run. The time judging takes joins the
    run's ``reports`` phase. ``kept``: verdicts no threshold decides (SonarQube's quality
    gate), which judging again keeps as they were.
    """
    clock = time.monotonic()
    if coverage is not None:  # the change measured now (gate: again, perhaps against another base)
        coverage = msgspec.structs.replace(
            coverage, diff_percent=None if diff[0] is None else diff[0].percent
        )
    api = client.connect(environ) if on_github(environ) else None
    past = history_run.prepare(settings, commit=info.commit, environ=environ)
    if not again:
        if on_github(environ):
            previous, notices = step.previous_attempt(
                environ, api=api, environment=info.environment
            )
            if previous is not None:
                tests = flaky_on_rerun(tests, failed_before=previous.failed, note=previous.note)
            info = msgspec.structs.replace(info, warnings=(*info.warnings, *notices))
        tests = history_run.label_tests(past, tests, settings=settings, info=info)
        found = history_run.warnings(
            past, reports=settings.reports_dir, environment=info.environment
        )
        info = msgspec.structs.replace(info, warnings=(*info.warnings, *found))
    verdicts = gates.evaluate(
        settings=settings,
        tests=tests,
        coverage=coverage,
        suite_duration_s=info.suite_duration_s,
        diff=diff[0],
        diff_skipped=diff[1],
        deselected=info.deselected,
    ) + history_run.history_gates(settings, today=datetime.now(UTC).date())
    if any(problem.startswith(CRASHED) for problem in info.problems):
        verdicts = not_evaluated(verdicts)
    elif info.coverage_incomplete is not None:
        verdicts = faults.not_judged(
            verdicts, why=info.coverage_incomplete, interrupted=info.interrupted is not None
        )
    elif info.coverage_misconfigured is not None:
        verdicts = faults.not_judged(verdicts, why=info.coverage_misconfigured)
    verdicts += kept
    if info.phases is not None:
        phases = info.phases
        judged = phases.reports_s + time.monotonic() - clock
        info = msgspec.structs.replace(
            info, phases=msgspec.structs.replace(phases, reports_s=judged)
        )
    result = RunResult(
        run=info,
        tests=tests,
        coverage=coverage,
        gates=verdicts,
        diff_coverage=diff[0],
    )
    if not again:
        past = history_run.record(past, result=result, settings=settings)
    markdown = render.markdown(result) + history_run.markdown(
        past, settings=settings, tests=result.tests
    )
    write_reports(result, settings.reports_dir, markdown=markdown)
    history_run.write_suggestions(past, settings=settings)
    emit(render.terminal(result, reports_dir=shown(settings.reports_dir)))
    if on_github(environ):
        emit(
            step.report(
                result,
                markdown=markdown,
                reports_dir=str(settings.reports_dir),
                environ=environ,
                api=api,
                annotations=settings.annotations,
            ),
            commands=True,
        )
    if info.problems:
        return Outcome(result, InfraError.exit_code)
    if info.coverage_misconfigured is not None:  # the project's configuration, not the suite
        return Outcome(result, ConfigError.exit_code)
    return Outcome(result, 0 if result.passed else 1)


def measure_change(
    settings: Settings, *, environ: Mapping[str, str], measured: bool
) -> tuple[DiffCoverage | None, str]:
    """Coverage of the lines changed since the merge base with diff-base, or why there is none."""
    if not measured:
        return None, "no coverage data"
    git = Git(settings.project, environ)
    if not git.is_repository():
        return None, "not a git repository, so no change to measure"
    base = settings.diff_base or default_base(git)
    if base is None:
        return None, "no diff base: none of origin/HEAD, main or master exists; set diff-base"
    since = merge_base(git, base)
    report = coverage_data.read_report(settings.reports_dir / "coverage.json")
    changed = added_lines(diff_text(git, since))
    return measure(changed, report["files"], base=base, merge_base=since), ""


def misconfiguration(
    settings: Settings, *, measured: bool, reports: Path, environ: Mapping[str, str]
) -> tuple[str | None, bool]:
    """A coverage source entry that measured nothing (``coverage_data.misconfigured``), and
    whether it makes the coverage gates not judged (``testgate run``, and ``gate`` again).

    It is not looked for when nothing was measured (min-tests says so) or in a shard, whose
    tests import only part of the code (the merge looks at the whole). Whether pytest's
    arguments (the command line's, ``addopts``, ``PYTEST_ADDOPTS``) chose some of the tests
    decides what a package of the project that no test imported means.
    """
    if not measured or settings.shard is not None:
        return None, False
    added = added_options(settings.project, pytest_args=settings.pytest_args, environ=environ)
    words = [*(word for _, found in added for word in found), *settings.pytest_args]
    chosen = selects_tests(settings.project, words)
    return coverage_data.misconfigured(settings.project, reports / ".coverage", chosen=chosen)


def write_reports(result: RunResult, reports: Path, *, markdown: str) -> None:
    """results.json, junit.xml, durations.json and summary.md (coverage wrote its own).

    One that cannot be written (a full disk) does not stop the others: each is named after.
    """
    failures = owned_dir.Failures()
    with failures.kept(), owned_dir.open_binary(reports / "results.json") as out:
        out.writelines(encode(result))
    with failures.kept():
        write_junit(result, reports / "junit.xml")
    with failures.kept():
        write_durations(result.tests, reports / "durations.json")
    with failures.kept():
        owned_dir.write_text(reports / "summary.md", markdown)
    failures.raise_any()


def write_durations(tests: tuple[TestResult, ...], path: Path) -> None:
    """``durations.json``: each test's seconds, to plan the next run's shards.

    After a merge, a test's longest time over its variants (never below 0).
    """
    ran = [test for test in tests if test.attempts[0].phase != "collect"]
    rounded = Rounded()
    durations = {test.id: rounded[test.attempts[0].duration_s] for test in ran}
    if len(durations) < len(ran) or any(seconds < 0 for seconds in durations.values()):
        durations = {}  # an id more than once (variants), or a time below 0: the longest
        for test in ran:
            seconds = rounded[test.attempts[0].duration_s]
            durations[test.id] = max(seconds, durations.get(test.id, 0.0))
    with owned_dir.open_text(path) as out:
        out.writelines(_durations_json(durations))


def _durations_json(durations: dict[str, float]) -> Iterator[str]:
    """One test a line, as ``json.dumps(indent=1)`` writes it, each time as ``repr`` does.

    msgspec writes a few thousand tests at a time in C (a large run never exists as one
    string), and a float as ``repr`` does from 1e-4 up to 1e16; a time outside that
    (``5e-05``) is written as ``repr`` writes it. A time that is no JSON number (``inf``)
    is left to the line-by-line format, which writes ``inf`` as it always did.
    """
    values = durations.values()
    if not durations:
        yield "{}\n"
        return
    if not all(map(math.isfinite, values)):
        pairs = zip(map(encode_basestring, durations), map(repr, values), strict=True)
        yield "{\n " + ",\n ".join(map(": ".join, pairs)) + "\n}\n"
        return
    odd: dict[str, msgspec.Raw] = {}
    if min(filter(None, values), default=1.0) < 1e-4 or max(values) >= 1e16:  # seldom
        odd = {
            test_id: msgspec.Raw(repr(seconds).encode())
            for test_id, seconds in durations.items()
            if seconds and not 1e-4 <= seconds < 1e16
        }
    items = iter({**durations, **odd}.items() if odd else durations.items())
    separator = "{\n"
    while batch := dict(itertools.islice(items, ENCODE_BATCH)):
        # {\n "id": 0.1,\n ...\n}: the lines between the braces
        yield separator + msgspec.json.format(msgspec.json.encode(batch), indent=1)[2:-2].decode()
        separator = ",\n"
    yield "\n}\n"


def shown(path: Path) -> str:
    """A path as a user would type it: relative to where they are, when it is below."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
