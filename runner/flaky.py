"""``testgate flaky``: repeat tests until each has a verdict, or the time budget ends.

Each round runs the pool in a shuffled order with fresh seeds (coverage off: only
outcomes matter here). A test leaves the pool at its first flip (``flaky``, with its
observed failure rate and a 95 % Wilson interval), after n passing runs in a row
(``stable``: "fails less than p of the time, at confidence c"), or after n failing runs
in a row (``failing``), where n = ceil(ln(1 - c) / ln(1 - p)). ``--time-budget`` stops it
with the verdicts reached so far, inside a round when need be (it is the pytest process's
deadline); the rest are ``undecided``. A signal stops it the same way, but the job is
then ``interrupted`` (exit 3), as is one that reaches ``timeout-run`` first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner import (
    environment,
    history_run,
    interrupts,
    owned_dir,
    parallelism,
    pytest_config,
    render,
)
from runner.attempts import Session, problems, recorded_tests, run_attempt
from runner.errors import ConfigError, TestgateError
from runner.github.commands import on_github
from runner.github.step import report_detection
from runner.output import emit
from runner.plural import counted
from runner.quarantine import Quarantine, read_quarantine
from runner.results import BROKEN, classify, read_results
from runner.services.served import ProjectServices
from runner.settings import Settings
from runner.stability import (
    Detection,
    TestVerdict,
    encode_detection,
    runs_needed,
    wilson_interval,
)

_SHUFFLE = random.SystemRandom()


@dataclass
class Tally:
    """Runs and failures of one test so far, and its verdict once it has one."""

    runs: int = 0
    failures: int = 0
    verdict: str | None = None
    line: int | None = None
    from_history: int = 0


def candidates(
    settings: Settings,
    *,
    only: Sequence[str],
    from_quarantine: bool,
    from_results: Path | None,
    quarantine: Quarantine,
) -> list[str] | None:
    """The tests to check, in the order asked; None means the whole suite."""
    chosen = list(only)
    if from_quarantine:
        if settings.quarantine is None:
            raise ConfigError(
                "--from-quarantine needs a quarantine file: set --quarantine FILE "
                "(or quarantine in [tool.testgate])."
            )
        chosen += quarantine.entries
    if from_results is not None:
        chosen += failed_in(from_results)
    if not (only or from_quarantine or from_results):
        return None
    return list(dict.fromkeys(chosen))


def failed_in(directory: Path) -> list[str]:
    """The tests that failed, errored, flaked or were quarantined in an earlier run."""
    path = directory / "results.json"
    if not path.is_file():
        raise ConfigError(
            f"--from-results {directory}: no results.json there; point it at the reports "
            "dir of an earlier testgate run."
        )
    return [
        test.id
        for test in read_results(path).tests
        if test.outcome in ("failed", "error", "flaky", "quarantined")
    ]


def detect(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    services: ProjectServices,
    only: Sequence[str] = (),
    from_quarantine: bool = False,
    from_results: Path | None = None,
) -> int:
    """Run the flaky-detection job, write flaky.json and summary.md; return the exit code.

    ``services`` (booting meanwhile) are awaited once the project is installed.
    """
    clock = time.monotonic()
    quarantine = read_quarantine(settings.quarantine)
    wanted = candidates(
        settings,
        only=only,
        from_quarantine=from_quarantine,
        from_results=from_results,
        quarantine=quarantine,
    )
    needed = runs_needed(confidence=settings.confidence, max_fail_rate=settings.max_fail_rate)
    # The work dir goes however detection ends; a signal before the first round (or a
    # failure) also takes the reports dir if this made it and it holds nothing else.
    with owned_dir.claimed_scratch(
        settings.reports_dir,
        fresh=("flaky.json",),
        abandon=(interrupts.Interrupted, TestgateError),
    ) as work:
        tallies: dict[str, Tally] = {}
        earlier: Mapping[str, Sequence[str]] = {}
        found_problems: list[str] = []
        # deselected: what the project deselected, for a wanted name that matched no test
        rounds, stopped_by, per_round, deselected = 0, "verdicts", 0.0, ""
        if wanted != []:
            project_env = environment.probe(settings, environ)
            earlier = history_run.unchanged_outcomes(
                settings, environ=environ, environment=project_env.fingerprint
            )
            environ = services.environ(project_env)
            session = Session(
                settings=settings,
                environ=environ,
                project_env=project_env,
                cov_args=(),
                work=work,
                deadline=min(
                    (
                        clock + limit
                        for limit in (settings.time_budget, settings.timeout_run)
                        if limit
                    ),
                    default=None,
                ),
                xdist_off=pytest_config.switched_off(
                    settings.project, pytest_args=settings.pytest_args, environ=environ
                ).get("xdist"),
            )
            pool, batch, processes = wanted, 1, 0
            while pool is None or pool:
                size = _batch_size(pool, tallies, batch=batch, needed=needed)
                orders = (
                    [] if pool is None else [_SHUFFLE.sample(pool, len(pool)) for _ in range(size)]
                )
                if session.xdist_off is not None:  # the project's suite runs serially
                    workers = parallelism.switched_off(session.xdist_off)
                elif pool is None:  # the whole suite, as testgate run would decide it
                    workers = parallelism.suite_decision(
                        settings.workers,
                        durations={},
                        project=settings.project,
                        pytest_args=settings.pytest_args,
                    )
                else:
                    workers = parallelism.decide(
                        settings.workers,
                        expected_s=per_round * size,
                        count=len(pool) * size,
                        basis=f"{counted(size, 'round')} of {counted(len(pool), 'test')}",
                    )
                processes += 1
                done = run_attempt(
                    session,
                    number=processes,
                    select=orders[0] if orders else None,
                    ordered=True,
                    workers=workers.workers,
                    reseed=True,
                    rounds=orders if size > 1 else (),
                    # quarantine entries and --only may name a module, a class; the ids of
                    # --from-results name one test each
                    prefixes=bool(only or from_quarantine),
                    label=f"flaky detection, rounds {rounds + 1}-{rounds + size} of at most "
                    f"{needed}; {workers.reason}",
                )
                per_round = done.completed.duration_s / size
                deselected = done.record.deselected_note or deselected
                found_problems += [f"rounds from {rounds + 1}: {p}" for p in problems(done)]
                for test in sorted(recorded_tests(done, kind="rerun"), key=lambda t: t.round or 0):
                    tally = tallies.get(test.test_id) or _from_history(
                        earlier, test.test_id, needed
                    )
                    tally.line = test.def_line if tally.line is None else tally.line
                    tallies[test.test_id] = tally
                    if tally.verdict is None:
                        _count(tally, classify(test.attempt), needed)
                rounds += size
                if interrupts.reason() is not None:  # what it never reached has no verdict
                    for test_id in done.record.collected_ids or pool or ():
                        tallies.setdefault(test_id, Tally())
                    stopped_by = _stopped_by(settings, interrupts.reason() or "")
                    if stopped_by != "time-budget":
                        found_problems.append(f"flaky detection was {stopped_by}")
                    break
                batch *= 2
                pool = [test_id for test_id, tally in tallies.items() if tally.verdict is None]
    detection = Detection.of(
        confidence=settings.confidence,
        max_fail_rate=settings.max_fail_rate,
        runs_needed=needed,
        rounds=rounds,
        duration_s=time.monotonic() - clock,
        stopped_by=stopped_by,
        tests=tuple(
            verdict_of(test_id, tallies[test_id], settings, needed) for test_id in sorted(tallies)
        ),
        quarantine_stable=_stable_entries(quarantine, tallies),
        warnings=tuple(
            f"{entry!r} matches no test{deselected}"
            for entry in Quarantine(tuple(wanted or ())).unmatched(tallies)
        ),
        problems=tuple(found_problems),
    )
    write_detection(detection, settings.reports_dir)
    emit(render.detection_terminal(detection))
    if on_github(environ):
        emit(
            report_detection(
                detection,
                markdown=render.detection_markdown(detection),
                root=str(settings.project),
                environ=environ,
                annotations=settings.annotations,
                reports_dir=str(settings.reports_dir),
            ),
            commands=True,
        )
    if stopped_by not in ("verdicts", "time-budget"):
        return 3
    return 1 if detection.count("flaky") or detection.count("failing") else 0


def _stopped_by(settings: Settings, reason: str) -> str:
    """``time-budget`` when the budget's deadline stopped the job, else why it was stopped."""
    budget, hard = settings.time_budget, settings.timeout_run
    if reason == "timeout-run" and budget is not None and (hard is None or budget <= hard):
        return "time-budget"
    return f"interrupted by {reason}"


def _batch_size(
    pool: list[str] | None, tallies: Mapping[str, Tally], *, batch: int, needed: int
) -> int:
    """Rounds for the next process: doubling, never more than any test still needs."""
    if pool is None:
        return 1
    most = needed - min(tallies.get(test_id, Tally()).runs for test_id in pool)
    return max(1, min(batch, most))


def _from_history(earlier: Mapping[str, Sequence[str]], test_id: str, needed: int) -> Tally:
    """A test's tally from the runs the history holds of the code as it is now.

    A flip there is a flaky verdict; passes (or failures) count up to one short of a
    verdict, so that this job's own run of the test always has its say.
    """
    tally = Tally()
    for outcome in earlier.get(test_id, ()):
        if tally.verdict is None:
            _count(tally, outcome, needed)
    if tally.verdict in ("stable", "failing"):
        tally.runs = tally.failures = needed - 1
        tally.failures *= tally.verdict == "failing"
        tally.verdict = None
    tally.from_history = tally.runs
    return tally


def _count(tally: Tally, outcome: str, needed: int) -> None:
    """Add one run's outcome; a verdict ends the test's part in the job."""
    if outcome in ("skipped", "xfailed"):
        tally.verdict = "skipped"
        return
    tally.runs += 1
    tally.failures += outcome in BROKEN
    passes = tally.runs - tally.failures
    if tally.failures and passes:
        tally.verdict = "flaky"
    elif tally.runs >= needed:
        tally.verdict = "stable" if passes else "failing"


def verdict_of(test_id: str, tally: Tally, settings: Settings, needed: int) -> TestVerdict:
    """One test's verdict and the statement that gives its evidence, from its tally."""
    verdict = tally.verdict or "undecided"
    runs, failures = tally.runs, tally.failures
    if verdict == "stable":
        statement = (
            f"passed {counted(runs, 'run')} in a row: fails less than "
            f"{settings.max_fail_rate:g} of the time, at confidence {settings.confidence:g}"
        )
    elif verdict == "flaky":
        low, high = wilson_interval(failures, runs)
        statement = (
            f"failed {failures} of {counted(runs, 'run')}: failure rate {failures / runs:.0%} "
            f"(95 % Wilson interval {low:.0%} to {high:.0%})"
        )
    elif verdict == "failing":
        statement = f"failed all {counted(runs, 'run')}"
    elif verdict == "skipped":
        statement = "skipped: cannot be judged"
    elif runs:
        same = "failed" if failures else "passed"
        statement = f"{same} {counted(runs, 'run')} in a row so far; {needed} needed for a verdict"
    else:
        statement = (
            f"never ran before the job was stopped; {counted(needed, 'run')} needed for a verdict"
        )
    if tally.from_history:
        statement += f" ({tally.from_history} of the runs recorded in the test history)"
    return TestVerdict.of(
        id=test_id,
        verdict=verdict,
        runs=runs,
        failures=failures,
        statement=statement,
        line=tally.line,
        from_history=tally.from_history,
    )


def _stable_entries(quarantine: Quarantine, tallies: Mapping[str, Tally]) -> tuple[str, ...]:
    """Quarantine entries all of whose tests are now proven stable."""
    stable = []
    for entry in quarantine.entries:
        matched = [
            tally for test_id, tally in tallies.items() if Quarantine((entry,)).matches(test_id)
        ]
        if matched and all(tally.verdict == "stable" for tally in matched):
            stable.append(entry)
    return tuple(stable)


def write_detection(detection: Detection, reports: Path) -> None:
    """``flaky.json`` and the Markdown summary."""
    owned_dir.claim(reports)
    with owned_dir.open_binary(reports / "flaky.json") as out:
        out.write(encode_detection(detection))
    owned_dir.write_text(reports / "summary.md", render.detection_markdown(detection))
