"""``testgate run``: from settings to reports and a verdict.

settings → probe the project's environment → pytest (xdist, coverage, the recording
plugin) → read the record → classify → combine coverage → gates → reports. Every step
but the first pytest start and the report writing is a function from data to data.
Whatever the run produced is written even when pytest crashed, and the problem is
named in the results and the exit code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from runner import coverage_data, execute, gates, render
from runner.errors import ConfigError, InfraError
from runner.junit import write_junit
from runner.record import AttemptRecord, read_record
from runner.results import Attempt, RunInfo, RunResult, TestResult, classify
from runner.settings import Settings

REPORT_FILES = (
    "results.json",
    "junit.xml",
    "coverage.xml",
    "coverage.json",
    ".coverage",
    "durations.json",
    "summary.md",
)
WORK_DIR = ".testgate-work"


@dataclass(frozen=True)
class Outcome:
    """What a command produced: the result (when there is one) and the exit code."""

    result: RunResult | None
    exit_code: int


def run(settings: Settings, *, environ: Mapping[str, str]) -> Outcome:
    """Run the suite once, write every report, and return the verdict's exit code."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    reports = settings.reports_dir
    work = reports / WORK_DIR
    _prepare(reports, work)
    project_env = execute.probe(settings, environ)
    command = execute.pytest_command(
        settings=settings,
        env=project_env,
        environ=environ,
        cov_args=coverage_data.cov_arguments(settings.project),
    )
    record_path = work / "attempt-1.jsonl"
    coverage_file = work / "attempt-1" / ".coverage"
    coverage_file.parent.mkdir(parents=True)
    completed = execute.run_pytest(
        command,
        cwd=settings.project,
        environ=environ,
        record=record_path,
        coverage_file=coverage_file,
    )
    record = read_record(record_path)
    _raise_if_never_started(record, completed.exit_code, record_path)
    problems = _problems(record, completed.exit_code)
    tests = build_tests(record, exit_code=completed.exit_code)
    coverage = coverage_data.combine_and_report(
        project=settings.project,
        data_files=sorted(coverage_file.parent.glob(".coverage*")),
        reports_dir=reports,
    )
    info = RunInfo(
        started=started.isoformat(timespec="seconds"),
        duration_s=time.monotonic() - clock,
        suite_duration_s=completed.duration_s,
        commit=commit_of(settings.project, environ),
        python=project_env.python,
        platform=project_env.platform,
        variant=f"py{project_env.python}-{project_env.platform}",
        pytest_exit_code=completed.exit_code,
        problems=problems,
    )
    verdicts = gates.evaluate(
        settings=settings,
        tests=tests,
        coverage=coverage,
        suite_duration_s=completed.duration_s,
    )
    result = RunResult(run=info, tests=tests, coverage=coverage, gates=verdicts)
    write_reports(result, reports)
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(render.terminal(result, reports_dir=_shown(reports)))
    if problems:
        return Outcome(result, InfraError.exit_code)
    return Outcome(result, 0 if result.passed else 1)


def _prepare(reports: Path, work: Path) -> None:
    """Remove the reports of an earlier run, so that no stale file can be mistaken for ours."""
    try:
        reports.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            (reports / name).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
    except OSError as error:
        raise ConfigError(f"cannot write the reports dir {reports}: {error}") from None


def _raise_if_never_started(record: AttemptRecord, exit_code: int, path: Path) -> None:
    if record.started:
        if record.exit_status == 4:
            raise ConfigError(
                "pytest rejected its arguments (exit 4), see its message above: "
                "check pytest-args and the paths given to pytest."
            )
        return
    if exit_code == 4:
        raise ConfigError(
            "pytest rejected its arguments (exit 4), see its message above: "
            "check pytest-args and the project's pytest configuration."
        )
    raise InfraError(
        f"pytest did not start in the project's environment (exit {exit_code}; no record "
        f"at {path}); see the output above. Does 'uv run pytest' work in the project?"
    )


def _problems(record: AttemptRecord, exit_code: int) -> tuple[str, ...]:
    """What went wrong with pytest itself, as opposed to with the tests."""
    problems = ["pytest internal error: " + _last_line(text) for text in record.internal_errors]
    if record.unfinished is not None:
        problems.append(
            f"the pytest process died (exit {exit_code}) while running {record.unfinished.id}"
        )
    elif record.exit_status is None:
        problems.append(f"the pytest process ended (exit {exit_code}) before its session finished")
    elif record.exit_status == 2 and not record.collect_errors:
        problems.append("pytest was interrupted before the suite finished (exit 2)")
    return tuple(problems)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no message)"


def build_tests(record: AttemptRecord, *, exit_code: int) -> tuple[TestResult, ...]:
    """One result per test of a single attempt: collection errors, tests, then any test
    the pytest process died in (an error, whatever its phases had said so far)."""
    tests = [
        result_of(recorded.id, recorded.attempt, def_line=recorded.def_line)
        for recorded in (*record.collect_errors, *record.tests)
    ]
    if record.unfinished is not None:
        message = f"the pytest process died (exit {exit_code}) while this test ran"
        died = replace(record.unfinished.attempt, message=message)
        tests.append(result_of(record.unfinished.id, died, def_line=record.unfinished.def_line))
    return tuple(tests)


def result_of(test_id: str, attempt: Attempt, *, def_line: int | None) -> TestResult:
    """A test's result from its one attempt; the line is the failing frame, else the def."""
    return TestResult(
        id=test_id,
        file=test_id.split("::", maxsplit=1)[0],
        line=attempt.line if attempt.line is not None else def_line,
        outcome=classify(attempt),
        attempts=(attempt,),
    )


def commit_of(project: Path, environ: Mapping[str, str]) -> str | None:
    """The commit under test: GitHub's ``GITHUB_SHA``, else the project's git HEAD."""
    if environ.get("GITHUB_SHA"):
        return environ["GITHUB_SHA"]
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # pragma: no cover - git is installed wherever testgate's tests run
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def write_reports(result: RunResult, reports: Path) -> None:
    """results.json, junit.xml, durations.json and summary.md (coverage wrote its own)."""
    (reports / "results.json").write_text(
        json.dumps(result.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_junit(result, reports / "junit.xml")
    durations = {
        test.id: round(test.attempts[-1].duration_s, 6)
        for test in result.tests
        if test.attempts[-1].phase != "collect"
    }
    (reports / "durations.json").write_text(json.dumps(durations, indent=1) + "\n", "utf-8")
    (reports / "summary.md").write_text(render.markdown(result), encoding="utf-8")


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to where they are, when it is below."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
