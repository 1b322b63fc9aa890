"""``testgate run``: from settings to reports and a verdict.

settings → the services start in the background → install and probe the project's
environment meanwhile → await the services → attempt 1 (the suite: xdist, coverage, the
recording plugin) → reruns of what failed, each in a fresh process with a new seed → an
order check for what turned out flaky → classify → combine the coverage of every attempt
→ gates → reports, with the time each phase took (``run.phases``). Whatever the run
produced is written even when pytest crashed, and the problem is named in the results
and the exit code.

A signal or the run's deadline (``timeout-run``) stops pytest; what was recorded is
reported, the run is ``interrupted`` and names the tests that never ran (exit 3). The
tests a crashed xdist worker had finished lost their coverage with it: they are run
again in a process of their own, so that it joins the combined data, or the coverage is
incomplete and its gates say so (exit 3), never judged as if it were whole.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from runner import (
    coverage_data,
    environment,
    faults,
    gates,
    history_run,
    interrupts,
    owned_dir,
    parallelism,
    process_group,
    pytest_config,
    render,
    rerun_budget,
)
from runner.attempts import (
    INTERNAL_ERROR,
    AttemptRun,
    Session,
    problems,
    recorded_tests,
    run_attempt,
)
from runner.crash import crash_problem
from runner.errors import InfraError, TestgateError
from runner.git import Git
from runner.github import client, step
from runner.github.commands import on_github
from runner.output import emit
from runner.plural import counted, these
from runner.quarantine import Quarantine, read_quarantine
from runner.record import PYTEST_WARNED, collection_notes, missing_dependency, unrun_loaders
from runner.report import (
    Outcome,
    conclude,
    measure_change,
    misconfiguration,
    shown,
    write_reports,
)
from runner.results import (
    BROKEN,
    Attempt,
    CoverageSummary,
    Phases,
    RunInfo,
    RunResult,
    TestResult,
    Totals,
    classify,
    variant_name,
)
from runner.services.served import ProjectServices, ServicesFailed, project_services
from runner.settings import Settings
from runner.sharding import plan_of, read_durations
from runner.thresholds import with_stated_threshold
from runner.verdicts import ORDER_CHECKS, verdict

REPORT_FILES = (
    "results.json",
    "junit.xml",
    "coverage.xml",
    "coverage.json",
    ".coverage",
    "durations.json",
    "summary.md",
    history_run.SUGGESTED,
)
REPLAY_LIMIT = 1000
COV_ON = ("-p", "pytest_cov")  # after the project's -p no:cov, pytest-cov is back on
LAST_RERUN = parallelism.Decision(
    "0",
    "no xdist: the last rerun runs alone, so that a test failing only beside others shows as flaky",
)
SERVICES_FAILED = "the services failed, so no test ran (see the problem)"


@dataclass
class History:
    """Every attempt of every test, in the order attempt 1 ran them."""

    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    def_lines: dict[str, int | None] = field(default_factory=dict)
    runs: list[AttemptRun] = field(default_factory=list)

    def add(self, run: AttemptRun, *, kind: str, only: set[str] | None = None) -> None:
        self.runs.append(run)
        for test in sorted(recorded_tests(run, kind=kind), key=lambda t: t.round or 0):
            if only is not None and test.test_id not in only:
                continue
            self.attempts.setdefault(test.test_id, []).append(test.attempt)
            if self.def_lines.get(test.test_id) is None:
                self.def_lines[test.test_id] = test.def_line

    def still_failing(self, ids: list[str]) -> list[str]:
        return [i for i in ids if classify(self.attempts[i][-1]) in BROKEN]

    def flaky(self) -> list[str]:
        return [i for i, tried in self.attempts.items() if verdict(tried).outcome == "flaky"]


def run(settings: Settings, *, environ: Mapping[str, str]) -> Outcome:
    """Run the suite with its services (``--service``, or an earlier ``services up``).

    The services start first, in the background: they boot while the project installs,
    and are awaited only before the suite needs them. Services that fail (one never ready,
    a ``service-setup`` command that fails) are the run's problem: its reports say why
    (``run.problems``, the summary), and exit 3.
    """
    notes: list[str] = []
    with project_services(settings, environ=environ, notes=notes) as services:
        try:
            return _run(settings, environ=environ, services=services, notes=notes)
        except ServicesFailed as error:
            return services_failed(settings, environ=environ, problem=f"services: {error.message}")


def services_failed(settings: Settings, *, environ: Mapping[str, str], problem: str) -> Outcome:
    """The reports of a run whose services failed before any test ran: exit 3.

    Every gate is failed as not evaluated, and the history is not extended: this was no
    run of the suite. On GitHub the error is an annotation too, as before any report.
    """
    interrupts.hold()  # its reports are written whole; a signal meanwhile makes it exit 3
    owned_dir.claim(settings.reports_dir, fresh=REPORT_FILES)
    info = RunInfo(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=0.0,
        suite_duration_s=0.0,
        commit=commit_of(settings.project, environ),
        shard=settings.shard,
        root=str(settings.project),
        problems=(problem,),
    )
    verdicts = gates.evaluate(
        settings=settings, tests=(), coverage=None, suite_duration_s=0.0, diff=None,
        diff_skipped=SERVICES_FAILED,
    )  # fmt: skip
    not_evaluated = f"not evaluated: {SERVICES_FAILED}"
    result = RunResult(
        run=info,
        tests=(),
        coverage=None,
        gates=tuple(
            msgspec.structs.replace(gate, actual=None, status="fail", message=not_evaluated)
            for gate in verdicts
        ),
    )
    markdown = render.markdown(result)
    write_reports(result, settings.reports_dir, markdown=markdown)
    emit(render.terminal(result, reports_dir=shown(settings.reports_dir)))
    if on_github(environ):  # the summary, the outputs, and the error as an annotation
        emit(
            step.report(
                result, markdown=markdown, reports_dir=str(settings.reports_dir),
                environ=environ, api=client.connect(environ), annotations=settings.annotations,
            ),
            commands=True,
        )  # fmt: skip
    return Outcome(result, InfraError.exit_code)


def _combined_coverage(
    settings: Settings, *, history: History, reports: Path, python: str
) -> tuple[CoverageSummary | None, str | None, bool]:
    """Every attempt's coverage combined and reported; or None and why coverage.py could
    not report it (a coverage plugin it could not load), so that the tests' results stand;
    and whether any process wrote a data file at all."""
    data_files = [path for done in history.runs for path in done.coverage_dir.glob(".coverage*")]
    recorded = any(path.is_file() for path in data_files)
    try:
        coverage = coverage_data.combine_and_report(
            project=settings.project, data_files=data_files, reports_dir=reports, python=python
        )
    except coverage_data.CoverageNotReported as error:
        return None, error.message, recorded
    return coverage, None, recorded


def _run(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    services: ProjectServices,
    notes: list[str],
) -> Outcome:
    """Run the suite, rerun what failed, write every report, return the verdict's exit code."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    settings = with_stated_threshold(settings, environ=environ)
    quarantine = read_quarantine(settings.quarantine)
    reports = settings.reports_dir
    durations, durations_warning = read_durations(settings.durations or reports / "durations.json")
    installing = time.monotonic()
    _stop_orphans(reports)
    # The run's work dir goes however the run ends: a failure after pytest (a full disk
    # cut its record short) leaves no scratch files holding the space. Until pytest starts
    # (interrupts.hold) a signal raises Interrupted: nothing of this run is reported then,
    # so a reports dir it made goes too. One scope from the work dir's making on: a signal
    # between two scopes would leave both.
    with owned_dir.claimed_scratch(
        reports, fresh=REPORT_FILES, abandon=(interrupts.Interrupted, TestgateError)
    ) as work:
        cov_args, project_env = _install(settings, environ)
        install_s = time.monotonic() - installing
        gated = settings.fail_under_line > 0 or settings.fail_under_branch > 0
        whole_folder = _said_at_once(coverage_data.whole_folder_warning(cov_args, gated=gated))
        try:
            environ = services.environ(project_env)  # booted meanwhile
        except ServicesFailed:  # the run's reports say so (run): no work of this run is left
            shutil.rmtree(work, ignore_errors=True)
            raise
        cov_args, xdist_off = _switched_off(settings, environ, cov_args=cov_args)
        workers = suite_workers(settings, durations, project_env=project_env, xdist_off=xdist_off)
        emit(f"testgate: {workers.reason}\n")
        schedule = write_schedule(
            settings, durations, work / "schedule.json", parallel=workers.count > 0
        )
        session = Session(
            settings=settings,
            environ=environ,
            project_env=project_env,
            cov_args=cov_args,
            work=work,
            deadline=None if settings.timeout_run is None else clock + settings.timeout_run,
            xdist_off=xdist_off,
        )
        history = History()
        first = run_attempt(session, number=1, schedule=schedule, workers=workers.workers)
        history.add(first, kind="run")
        reruns_stopped = rerun_failures(session, history)
        lost = remeasure(session, history, lost=set(first.record.lost))
        if interrupts.reason() is None:
            check_order(session, history, first)
        reporting = time.monotonic()
        tests = classify_all(history, quarantine)
        stop = faults.stopped(
            settings,
            first.record.collected_ids,
            done=history.attempts,
            exit_code=first.completed.exit_code,
            collection_stopped=bool(first.record.collect_errors) and first.record.exit_status == 2,
            died=first.record.exit_status is None,
            collection_done=first.record.collected is not None,
            ended_by=faults.ended_by(first.record),
        )
        coverage, unreported, recorded = _combined_coverage(
            settings, history=history, reports=reports, python=project_env.executable
        )
        misconfigured, judged = misconfiguration(
            settings,
            measured=unreported is None and Totals.of(tests).ran > 0,
            reports=reports,
            environ=environ,
        )
        diff, diff_skipped = None, f"deferred to testgate merge (shard {settings.shard})"
        if settings.shard is None:
            diff, diff_skipped = measure_change(
                settings, environ=environ, measured=coverage is not None
            )
        crash = crash_problem(first.record.internal_errors, parallel=workers.count > 0)
        found_problems = ((crash,) if crash else ()) + tuple(
            problem
            for done in history.runs
            for problem in problems(done)
            if done is not first or not problem.startswith(INTERNAL_ERROR)  # said by crash
        )
        incomplete = (
            unreported
            or faults.incomplete_coverage(
                lost,
                crashes=first.record.crashes,
                reruns=settings.reruns,
                interrupted=stop.why is not None,
                never_ran=len(stop.not_run),
            )
            or faults.nothing_recorded(
                recorded=recorded, gated=gated, stopped_at=faults.collection_stop(first.record)
            )
        )
        # pytest stopped at a test file that fails to collect: the failed-tests gate fails
        # the run (exit 1), its coverage is not judged, and no process of the run failed
        stopped = incomplete is not None and incomplete.startswith(faults.STOPPED_AT_COLLECTION)
        found_problems += tuple(
            text for text in (stop.problem, None if stopped else incomplete) if text
        )
        rerun_s = sum(done.completed.duration_s for done in history.runs[1:])
        info = RunInfo(
            started=started.isoformat(timespec="seconds"),
            duration_s=time.monotonic() - clock,
            suite_duration_s=first.completed.duration_s,
            rerun_duration_s=rerun_s,
            phases=Phases(
                install_s=install_s,
                services_s=services.waited_s,
                services_ready_s=services.ready_s,
                tests_s=first.completed.duration_s,
                reruns_s=rerun_s,
                reports_s=time.monotonic() - reporting,
            ),
            commit=commit_of(settings.project, environ),
            python=project_env.python,
            platform=project_env.platform,
            variant=variant_name(python=project_env.python, platform=project_env.platform),
            shard=settings.shard,
            plan=None if settings.shard is None else plan_of(durations),
            root=str(settings.project),
            pytest_exit_code=first.completed.exit_code,
            problems=found_problems,
            warnings=tuple(PYTEST_WARNED + text for text in first.record.warnings)
            + collection_notes(first.record)
            + unrun_loaders(settings.project, first.record)
            + tuple(
                f"quarantine entry {entry!r} matches no test of this run"
                f"{first.record.deselected_note}"
                for entry in quarantine.unmatched(history.attempts)
            )
            + ((durations_warning,) if durations_warning else ())
            + ((whole_folder,) if whole_folder else ())
            + ((misconfigured,) if misconfigured and not (gated and judged) else ())  # an error
            + tuple(f"services: {note}" for note in notes)
            + faults.leftover_warnings([done.completed for done in history.runs]),
            interrupted=stop.why,
            not_run=stop.not_run,
            deselected=first.record.deselected,
            coverage_incomplete=incomplete,
            coverage_misconfigured=misconfigured if gated and judged else None,
            workers=workers.count,
            workers_reason=workers.reason,
            reruns_stopped=reruns_stopped,
            environment=project_env.fingerprint,
        )
        shutil.rmtree(work, ignore_errors=True)
        return conclude(
            settings=settings,
            info=info,
            tests=tests,
            coverage=coverage,
            diff=(diff, diff_skipped),
            environ=environ,
        )


def _switched_off(
    settings: Settings, environ: Mapping[str, str], *, cov_args: tuple[str, ...]
) -> tuple[tuple[str, ...], str | None]:
    """The coverage arguments and where xdist is switched off, for a project whose pytest
    options block a plugin testgate runs (``-p no:cov``, ``-p no:xdist``): pytest-cov is
    switched back on, as testgate measures with it and it changes no test; xdist stays
    off, as the project's suite is meant to run serially (runner.parallelism)."""
    off = pytest_config.switched_off(
        settings.project, pytest_args=settings.pytest_args, environ=environ
    )
    if "cov" in off and cov_args:
        cov_args = (*COV_ON, *cov_args)
        emit(
            f"testgate: -p no:cov in {off['cov']} switches pytest-cov off: testgate "
            "switches it back on for its coverage (-p pytest_cov)\n"
        )
    return cov_args, off.get("xdist")


def suite_workers(
    settings: Settings,
    durations: Mapping[str, float],
    *,
    project_env: environment.ProjectEnv,
    xdist_off: str | None = None,
) -> parallelism.Decision:
    """The suite's xdist workers and why (``runner.parallelism``)."""
    if xdist_off is not None:
        return parallelism.switched_off(xdist_off)
    if project_env.early:
        return parallelism.Decision(
            "0",
            "no xdist: pytest imports the project before any plugin, so 'coverage run' "
            "measures it from the process start, serially",
        )
    shards = 1 if settings.shard is None else int(settings.shard.split("/")[1])
    return parallelism.suite_decision(
        settings.workers,
        durations=durations,
        project=settings.project,
        pytest_args=settings.pytest_args,
        shards=shards,
    )


def write_schedule(
    settings: Settings, durations: Mapping[str, float], path: Path, *, parallel: bool
) -> Path:
    """The plugin's plan: the durations, this run's shard, and whether to order by them.

    Without durations there is nothing to order by, nor without xdist, so pytest's own
    order stays.
    """
    shard = None if settings.shard is None else [int(part) for part in settings.shard.split("/")]
    order = bool(durations) and parallel
    path.write_text(json.dumps({"durations": durations, "shard": shard, "order": order}), "utf-8")
    return path


def rerun_failures(session: Session, history: History) -> str | None:
    """Rerun what failed (not collection errors, nor skips for a missing plugin or module,
    which the same environment would only repeat), up to ``reruns`` times, while it fails;
    return why the failures were not rerun (``runner.rerun_budget``), if they were not.

    Each rerun is a fresh process with new seeds, under xdist when the tests' first
    durations repay its start-up (``runner.parallelism``). The last one runs without
    xdist, so a test that fails only beside others (a shared file, a port) shows as
    flaky, not broken. A signal or the deadline ends the reruns.
    """
    settings = session.settings
    failing = [
        test_id
        for test_id in history.still_failing(list(history.attempts))
        if history.attempts[test_id][0].phase != "collect"
        and not missing_dependency(history.attempts[test_id][0])
    ]
    suite = len(history.attempts)
    for number in range(2, settings.reruns + 2):
        if not failing or interrupts.reason() is not None:
            return None
        latest = [history.attempts[test_id][-1] for test_id in failing]
        stop = rerun_budget.stop_reason(latest, suite=suite, limit=settings.max_reruns)
        if stop is not None:
            emit(f"\ntestgate: {stop}\n")
            return stop
        workers = LAST_RERUN
        if number < settings.reruns + 1 and session.xdist_off is not None:
            workers = parallelism.switched_off(session.xdist_off)
        elif number < settings.reruns + 1:
            workers = parallelism.decide(
                settings.workers,
                expected_s=sum(history.attempts[test_id][0].duration_s for test_id in failing),
                count=len(failing),
                basis=f"the first run of {these(len(failing), 'test')}",
            )
        rerun = run_attempt(
            session,
            number=number,
            select=failing,
            workers=workers.workers,
            reseed=True,
            label=f"attempt {number}, rerun of {counted(len(failing), 'test')}; {workers.reason}",
        )
        history.add(rerun, kind="rerun", only=set(failing))
        failing = history.still_failing(failing)
    return None


def remeasure(session: Session, history: History, *, lost: set[str]) -> set[str]:
    """Run again, in a process of their own, the tests whose coverage died with their
    process (a crashed xdist worker); return those whose coverage is still missing.

    They are rerun like failures (not with ``reruns`` 0, nor once the run is stopped),
    apart from a test that crashed in its call, so that the crash cannot take them down
    again; one that crashed in its teardown had run, and is measured again too.
    """
    if not lost or session.settings.reruns == 0 or interrupts.reason() is not None:
        return lost
    number = len(history.runs) + 1
    rerun = run_attempt(
        session,
        number=number,
        select=sorted(lost),
        workers="0",
        reseed=True,
        label=f"attempt {number}, measuring again the coverage of {counted(len(lost), 'test')} "
        "that a crashed process lost",
    )
    history.add(rerun, kind="rerun", only=lost)
    done = {test.test_id for test in rerun.record.tests}
    return {test_id for test_id in lost if test_id not in done} | set(rerun.record.lost)


def check_order(session: Session, history: History, first: AttemptRun) -> None:
    """Replay, per worker, the tests that ran before each flaky test, then the test.

    A flaky test that passed alone but fails again in every replay after its
    predecessors depends on their order; one that passes a replay failed for some other
    reason.
    """
    flaky = set(history.flaky())
    if not flaky:
        return
    sequences: dict[str | None, list[str]] = {}
    for test in first.record.tests:
        sequences.setdefault(test.attempt.worker, []).append(test.id)
    number = len(history.runs)
    for worker in sorted({history.attempts[test_id][0].worker or "" for test_id in flaky}):
        sequence = sequences[worker or None]
        last = max(index for index, test_id in enumerate(sequence) if test_id in flaky)
        replay = sequence[: last + 1][-REPLAY_LIMIT:]
        number += 1
        done = run_attempt(
            session,
            number=number,
            select=replay,
            ordered=True,
            workers="0",
            reseed=True,
            rounds=[replay] * ORDER_CHECKS,
            label=f"attempt {number}, order check: {ORDER_CHECKS} replays of "
            f"{counted(len(replay), 'test')}",
        )
        history.add(done, kind="order-check", only=flaky & set(replay))


def classify_all(history: History, quarantine: Quarantine) -> tuple[TestResult, ...]:
    """Every test's verdict from its attempts, quarantine applied."""
    return tuple(
        result_of(test_id, attempts, def_line=history.def_lines.get(test_id), quarantine=quarantine)
        for test_id, attempts in history.attempts.items()
    )


def result_of(
    test_id: str,
    attempts: list[Attempt],
    *,
    def_line: int | None,
    quarantine: Quarantine,
) -> TestResult:
    """A test's result; its line is the first failing frame, else the ``def`` line."""
    found = verdict(attempts)
    outcome, note = found.outcome, found.note
    if outcome in ("failed", "error", "flaky") and quarantine.matches(test_id):
        note = f"quarantined ({outcome}" + (f": {note})" if note else ")")
        outcome = "quarantined"
    lines = [attempt.line for attempt in attempts if attempt.line is not None]
    return TestResult(
        id=test_id,
        file=test_id.split("::", 1)[0],
        line=lines[0] if lines else def_line,
        outcome=outcome,
        flaky_kind=found.flaky_kind,
        note=note,
        attempts=tuple(attempts),
    )


def _install(
    settings: Settings, environ: Mapping[str, str]
) -> tuple[tuple[str, ...], environment.ProjectEnv]:
    """The run's coverage arguments and the installed, probed environment.

    A failure here, or a signal (``Interrupted``), comes before anything ran: the run's
    clean-up (``owned_dir.claimed_scratch``) removes the work dir, and a reports dir the
    run made, so a mistyped option or a cancel during the install leaves nothing behind.
    """
    cov_args = coverage_data.cov_arguments(settings.project, package=settings.package)
    sources = coverage_data.infer_sources(settings.project, package=settings.package)
    return cov_args, environment.probe(settings, environ, sources=sources)


def _said_at_once(warning: str | None) -> str | None:
    """A warning printed as it is found (and kept for the reports' warnings)."""
    if warning:
        emit(f"testgate: {warning}\n")
    return warning


def _stop_orphans(reports: Path) -> None:
    """Kill what a killed run's pytest still runs (its work dir's note names it), and say so.

    Only the work dirs in a real reports dir are looked at; claiming the dir (which
    removes them) comes after.
    """
    if reports.is_dir() and not reports.is_symlink():
        left = sorted(reports.glob(f"{owned_dir.SCRATCH_PREFIX}*"))
        if killed := process_group.orphans(left):
            emit(
                f"testgate: warning: an earlier run was killed and its pytest went on; "
                f"testgate killed what it still ran: {'; '.join(killed)}\n"
            )


def commit_of(project: Path, environ: Mapping[str, str]) -> str | None:
    """The commit under test: GitHub's ``GITHUB_SHA``, else the project's git HEAD."""
    return environ.get("GITHUB_SHA") or Git(project, environ).head()
