"""``testgate gate``: judge the gates again on the results a run or a merge wrote.

The thresholds are those set now (flags, ``TESTGATE_*``, ``[tool.testgate]``): a workflow
that runs the suite once can judge it in a later step with other thresholds, or judge a
merge's results again without merging. Nothing runs again: the tests, their attempts
and the coverage are those of ``results.json`` (read as untrusted input, bounded and
schema-checked); diff coverage is measured again from the reports dir's ``coverage.json``
against ``diff-base``, as the run measured it. ``results.json``, ``junit.xml``,
``durations.json`` and ``summary.md`` are written again with the new verdicts, the
table is printed, and on a runner the annotations, step summary and outputs follow;
coverage.py's reports stay as they are, and the history gets no second run.

A shard's results keep the shard's gates deferred, as its run did: the suite-wide gates
are judged on the merge. Exit codes are those of the run: 0 passed, 1 a gate failed, 2 a
configuration error (no results there), 3 a problem the results hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import msgspec

from runner import interrupts, owned_dir
from runner.coverage_data import misconfigured
from runner.errors import ConfigError
from runner.git import Git
from runner.report import Outcome, conclude, measure_change, misconfiguration, shown
from runner.results import DiffCoverage, RunInfo, RunResult, Totals, read_results
from runner.settings import Settings
from runner.thresholds import with_stated_threshold

# Verdicts no threshold decides: judging again keeps them as they were.
KEPT = frozenset({"sonar-quality-gate"})


def gate(settings: Settings, *, environ: Mapping[str, str]) -> Outcome:
    """Judge the reports dir's ``results.json`` with ``settings``; see the module doc.

    Raises ConfigError when the reports dir holds no results, InfraError when its
    ``results.json`` is not testgate's.
    """
    reports = settings.reports_dir
    path = reports / "results.json"
    if not path.is_file():
        raise ConfigError(
            f"{shown(reports)}: no results.json there to judge; run 'testgate run' (or "
            "'testgate merge') first, or point --reports-dir at the reports it wrote."
        )
    result = read_results(path)
    owned_dir.claim(reports)  # a dir holding other files than testgate's is refused
    settings = with_stated_threshold(replace(settings, shard=result.run.shard), environ=environ)
    measured = result.coverage is not None
    if settings.shard is None and measured:
        _same_commit(settings, result.run, environ=environ)
    info = _coverage_configuration(settings, result, environ=environ)
    # From here the reports are rewritten: a signal only marks the command stopped, and
    # it ends whole (exit 3, cli.ended).
    interrupts.hold()
    diff: tuple[DiffCoverage | None, str] = (
        None,
        f"deferred to testgate merge (shard {settings.shard})",
    )
    if settings.shard is None:
        diff = measure_change(settings, environ=environ, measured=measured)
    return conclude(
        settings=settings,
        info=info,
        tests=result.tests,
        coverage=result.coverage,
        diff=diff,
        environ=environ,
        again=True,
        kept=tuple(verdict for verdict in result.gates if verdict.name in KEPT),
    )


def _same_commit(settings: Settings, info: RunInfo, *, environ: Mapping[str, str]) -> None:
    """Refuse (exit 2) to measure the change up to a commit other than the one that ran:
    coverage.py's data knows the lines of the commit that ran, so the lines changed since
    (a file added, code appended) would be missing from it and count as nothing changed."""
    now = environ.get("GITHUB_SHA") or Git(settings.project, environ).head()  # as the run
    if info.commit is not None and now is not None and now != info.commit:
        raise ConfigError(
            f"{shown(settings.reports_dir / 'results.json')} holds the run of commit "
            f"{info.commit}, but the commit under test here is {now}: the diff coverage of "
            "that run cannot be measured on this one. Check out the commit that ran, or run "
            "the suite again."
        )


def _coverage_configuration(
    settings: Settings, result: RunResult, *, environ: Mapping[str, str]
) -> RunInfo:
    """The run's info with a coverage source entry that measured nothing judged again as
    the run (or the merge) judges it with the thresholds set now: with a coverage threshold
    an error that leaves the coverage gates not judged (exit 2), without one a warning."""
    info = result.run
    measured = result.coverage is not None and Totals.of(result.tests).ran > 0
    if info.merged:  # a merge looks at the whole, whatever pytest's arguments chose
        data = settings.reports_dir / ".coverage"
        found, judged = (
            misconfigured(settings.project, data, chosen=False) if measured else (None, False)
        )
    else:
        found, judged = misconfiguration(
            settings, measured=measured, reports=settings.reports_dir, environ=environ
        )
    gated = settings.fail_under_line > 0 or settings.fail_under_branch > 0
    error = found if gated and judged else None
    warned = tuple(  # found stays where the run said it while it is a warning
        warning
        for warning in info.warnings
        if (error is None if warning == found else warning != info.coverage_misconfigured)
    )
    if found and error is None and found not in warned:
        warned += (found,)
    return msgspec.structs.replace(info, warnings=warned, coverage_misconfigured=error)
