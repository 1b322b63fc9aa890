"""One pytest attempt: run it, read its record, and turn the record into per-test attempts.

Attempt 1 runs the suite. Reruns and order checks run only the tests they name, through
the plugin's selection file, so the user's own pytest arguments and configuration still
apply. Every rerun and replay gets a fresh random seed: ``PYTHONHASHSEED`` always, and
``--randomly-seed`` when pytest-randomly is installed (it reseeds each test from its node
id, so a plain rerun would replay the same random numbers and prove nothing).
"""

from __future__ import annotations

import contextlib
import errno
import json
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from msgspec import structs

from runner import coverage_data, environment, execute
from runner.errors import ConfigError, InfraError
from runner.output import emit
from runner.plural import counted
from runner.pytest_config import switched_off
from runner.record import AttemptRecord, RecordedTest, describe_exit, read_record
from runner.results import BROKEN
from runner.settings import Settings

_SEEDS = random.SystemRandom()
INTERNAL_ERROR = "pytest internal error: "
TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED: a test failed or errored


@dataclass(frozen=True)
class Session:
    """What every pytest attempt of one command shares."""

    settings: Settings
    environ: Mapping[str, str]
    project_env: environment.ProjectEnv
    cov_args: tuple[str, ...]
    work: Path
    deadline: float | None = None
    xdist_off: str | None = None  # where the project's -p no:xdist is, if it has one


@dataclass(frozen=True)
class AttemptRun:
    """One finished pytest process and what it recorded."""

    number: int
    record: AttemptRecord
    completed: execute.Completed
    coverage_dir: Path


def run_attempt(
    session: Session,
    *,
    number: int,
    select: Sequence[str] | None = None,
    ordered: bool = False,
    workers: str | None = None,
    reseed: bool = False,
    label: str | None = None,
    rounds: Sequence[Sequence[str]] = (),
    schedule: Path | None = None,
    prefixes: bool = False,
) -> AttemptRun:
    """Run attempt ``number``; with ``select``, only those tests (in order when ``ordered``).

    ``reseed`` gives the run fresh random seeds; ``label`` is printed before its output;
    ``rounds`` (orders of ``select``) runs every test once per round, in one process;
    ``schedule`` names the plugin's shard and ordering plan; ``prefixes`` lets an entry
    of ``select`` name every test below it (else each names one test, exactly).
    """
    directory = session.work / f"attempt-{number}"
    directory.mkdir(parents=True)
    select_path = None
    extra_args: list[str] = []
    extra_env: dict[str, str] = {}
    if select is not None:
        select_path = directory / "select.json"
        wanted = {
            "ids": list(select),
            "ordered": ordered,
            "rounds": [list(o) for o in rounds],
            "prefixes": prefixes,
        }
        select_path.write_text(json.dumps(wanted), "utf-8")
    if reseed:
        seed = _SEEDS.randrange(1, 2**32)
        extra_env["PYTHONHASHSEED"] = str(seed)
        if session.project_env.has_randomly and not randomly_off(
            session.settings.project,
            pytest_args=session.settings.pytest_args,
            environ=session.environ,
        ):
            extra_args.append(f"--randomly-seed={seed}")
    if schedule is not None:
        extra_env[execute.SCHEDULE_ENV] = str(schedule)
    # as -n takes it (a count, auto, logical): the plugin applies it after the project's own
    extra_env[execute.WORKERS_ENV] = session.settings.workers if workers is None else workers
    if execute.timeouts_wanted(session.settings):
        extra_env[execute.TIMEOUTS_ENV] = execute.timeouts_plan(session.settings)
    if label is not None:
        emit(f"\ntestgate: {label}\n")
    command = environment.pytest_command(
        settings=session.settings,
        env=session.project_env,
        cov_args=session.cov_args,
        workers=workers,
        extra_args=extra_args,
    )
    record_path = directory / "record.jsonl"
    before = coverage_data.project_data_files(session.settings.project)
    completed = execute.run_pytest(
        command,
        cwd=session.settings.project,
        environ=session.project_env.environ(session.environ),
        record=record_path,
        coverage_file=directory / ".coverage",
        select=select_path,
        extra_env=extra_env,
        deadline=session.deadline,
    )
    _take_project_data(session.settings.project, before=before, directory=directory)
    record = read_record(record_path)
    if completed.stopped is None:  # stopped before it began, it simply recorded nothing
        _raise_if_never_started(record, completed.exit_code, record_path)
    return AttemptRun(number, record, completed, directory)


def _take_project_data(project: Path, *, before: Mapping[Path, int], directory: Path) -> None:
    """Copy the data files the attempt's processes wrote at the project's own data file
    (``coverage_data.project_data_files``: a subprocess a test started with an environment
    of its own) beside the attempt's, where they are combined with it. They stay where they
    were written: testgate removes nothing it did not write."""
    after = coverage_data.project_data_files(project)
    written = sorted(path for path, mtime in after.items() if before.get(path) != mtime)
    lines_only = []
    for number, path in enumerate(written):
        copy = directory / f".coverage.project-{number}"
        with contextlib.suppress(OSError):  # gone already: it holds nothing to count
            shutil.copyfile(path, copy)
            if not coverage_data.measures_branches(copy):
                copy.unlink()
                lines_only.append(path)
    if lines_only:
        emit(
            f"testgate: not counted: {counted(len(lines_only), 'coverage data file')} a process "
            f"of the tests wrote with the project's coverage configuration "
            f"({', '.join(str(p.relative_to(project)) for p in lines_only)}) measured lines "
            "only; set [run] branch = true to count them\n"
        )


def randomly_off(project: Path, *, pytest_args: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the user switched pytest-randomly off (then pytest refuses --randomly-seed):
    in the arguments, the ``addopts`` of pytest's configuration file or ``PYTEST_ADDOPTS``."""
    return "randomly" in switched_off(project, pytest_args=pytest_args, environ=environ)


def recorded_tests(run: AttemptRun, *, kind: str) -> list[RecordedTest]:
    """Every test of an attempt, each attempt stamped with its number and kind.

    A test the pytest process died in becomes an error that says so, as does one that
    stopped pytest's session with a KeyboardInterrupt of its own; one that testgate cut
    short (a signal, the run's deadline) did not finish, and is not counted.
    """
    found = list(run.record.tests)
    if run.number == 1:  # a rerun's collection error names a file, not the test rerun
        found = [*run.record.collect_errors, *found]
    stamped = [
        replace(test, attempt=structs.replace(test.attempt, number=run.number, kind=kind))
        for test in found
    ]
    if run.completed.stopped is not None:
        return [test for test in stamped if not _crash_report(test)]
    unfinished = run.record.unfinished
    if unfinished is not None:
        how = describe_exit(run.completed.exit_code)
        message = f"the pytest process died ({how}) while this test ran"
        died = structs.replace(unfinished.attempt, message=message, number=run.number, kind=kind)
        stamped.append(replace(unfinished, attempt=died))
    interrupted = run.record.interrupted_in
    if interrupted is not None:  # it raised the KeyboardInterrupt that stopped pytest
        attempt = structs.replace(interrupted.attempt, number=run.number, kind=kind)
        stamped.append(replace(interrupted, attempt=attempt))
    return stamped


def problems(run: AttemptRun) -> tuple[str, ...]:
    """What went wrong with pytest itself in this attempt, as opposed to with the tests.

    In a rerun, a process that dies inside a test is evidence about that test (an error
    attempt), not a problem: the suite's own run already said whether tests were lost.
    """
    record, how = run.record, describe_exit(run.completed.exit_code)
    found = [INTERNAL_ERROR + _last_line(text) for text in record.internal_errors]
    if run.completed.stopped is not None:
        pass  # the command says why it stopped pytest, and which tests never ran
    elif record.unfinished is not None and run.number == 1:
        found.append(f"the pytest process died ({how}) while running {record.unfinished.id}")
    elif record.exit_status is None and record.unfinished is None:
        raised = f": {record.uncaught}" if record.uncaught else ""
        found.append(f"the pytest process ended ({how}) before its session finished{raised}")
    elif record.exit_status == 2 and record.interrupted_in is not None:
        found.append(
            f"{record.interrupt}, raised in {record.interrupted_in.id}, stopped pytest before "
            "the suite finished (exit 2)"
        )
    elif record.exit_status == 2 and record.interrupted_worker is not None:
        found.append(
            f"a KeyboardInterrupt in {record.interrupted_worker} stopped pytest before the "
            "suite finished (exit 2)"
        )
    elif record.exit_status == 2 and not record.collect_errors:
        found.append("pytest was interrupted before the suite finished (exit 2)")
    elif record.uncaught is not None:  # raised after the recorder's sessionfinish
        found.append(
            f"the pytest process ended ({how}) on an exception pytest did not handle: "
            f"{record.uncaught}{_closed_output(record.uncaught)}"
        )
    elif TESTS_FAILED in (run.completed.exit_code, record.exit_status) and not _any_failed(record):
        found.append(
            "pytest reported failed tests (exit 1) that testgate's record of each test does "
            "not show: see pytest's summary above; a plugin that reports tests its own way "
            "(or a test that changed the record) hides them"
        )
    if record.forked is not None:
        found.append(
            f"a process {record.forked}: its results, which pytest printed, are not counted; "
            "a forked child that runs Python should end with os._exit()"
        )
    if run.number > 1:
        return tuple(f"attempt {run.number}: {problem}" for problem in found)
    return tuple(found)


def _closed_output(uncaught: str) -> str:
    """What likely raised an EBADF in pytest: a test that closed its output."""
    if uncaught.startswith(f"OSError: [Errno {errno.EBADF}]"):
        return "; a test may have closed pytest's own output (file descriptor 1 or 2, under -s)"
    return ""


def _any_failed(record: AttemptRecord) -> bool:
    """Whether the record holds a failure that pytest's exit 1 (``TESTS_FAILED``) counts."""
    return bool(record.collect_errors) or any(
        test.attempt.outcome in BROKEN for test in record.tests
    )


def _crash_report(test: RecordedTest) -> bool:
    """xdist's report for a test whose worker died: when testgate stopped the run, that is
    the stop, not the test."""
    return (test.attempt.message or "").startswith("the xdist worker ")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no message)"


def _raise_if_never_started(record: AttemptRecord, exit_code: int, path: Path) -> None:
    if record.conftest_error is not None:  # the project's environment, not testgate's options
        raise InfraError(
            f"pytest could not import the conftest {record.conftest_error} (exit 4, see its "
            "message above): install what it imports in the project's environment (add the "
            "missing package to the project's dependencies or its dev group), or fix the "
            "import."
        )
    if record.exit_status == 4 or (not record.started and exit_code == 4):
        raise ConfigError(
            "pytest rejected its arguments (exit 4), see its message above: check "
            "pytest-args, the paths given to pytest and the project's pytest configuration."
        )
    if not record.started:
        raise InfraError(
            f"pytest did not start in the project's environment (exit {exit_code}; no record "
            f"at {path}); see the output above. Does 'uv run pytest' work in the project?"
        )
