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

from runner import interrupts, owned_dir
from runner.errors import ConfigError
from runner.report import Outcome, conclude, measure_change, shown
from runner.results import DiffCoverage, read_results
from runner.settings import Settings


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
    settings = replace(settings, shard=result.run.shard)
    # From here the reports are rewritten: a signal only marks the command stopped, and
    # it ends whole (exit 3, cli.ended).
    interrupts.hold()
    diff: tuple[DiffCoverage | None, str] = (
        None,
        f"deferred to testgate merge (shard {settings.shard})",
    )
    if settings.shard is None:
        diff = measure_change(settings, environ=environ, measured=result.coverage is not None)
    return conclude(
        settings=settings,
        info=result.run,
        tests=result.tests,
        coverage=result.coverage,
        diff=diff,
        environ=environ,
        again=True,
    )
