"""``testgate merge DIR...``: one verdict from the reports of several runs.

Matrix shards and variants (Python versions, OSes, taken from each run's metadata) are
merged so that nothing is lost or counted twice: coverage data is combined exactly by
coverage.py (``[paths]`` remapping applies), a test's result from each variant stays its
own result, and ``--expect-shards N`` and ``--expect-variants N`` make a missing or doubled
shard, or a whole missing variant, an error instead of a silently smaller suite. Gates,
the diff coverage and the summary then run on the merged result, and a new
``durations.json`` plans the next run.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from runner import coverage_data, interrupts, owned_dir
from runner.errors import ConfigError, InfraError
from runner.junit import read_junit, write_junit
from runner.report import Outcome, conclude, measure_change
from runner.results import RunInfo, RunResult, TestResult, Totals, read_results
from runner.settings import Settings
from runner.thresholds import with_stated_threshold

SEVERITY = ("error", "failed", "flaky", "quarantined", "xpassed", "passed", "xfailed", "skipped")


@dataclass(frozen=True)
class Part:
    """One run's reports dir and what it holds."""

    directory: Path
    result: RunResult

    @property
    def variant(self) -> str:
        return self.result.run.variant or "default"


def read_part(directory: Path, *, project: Path, strings: dict[str, str]) -> Part:
    """A run's reports dir; what is missing or malformed is an error that names it.

    A dir with only a ``junit.xml`` (another tool's run) is read from that, as the
    variant ``junit:<dir name>``: its tests count, it brings no coverage.
    """
    path = directory / "results.json"
    if not path.is_file() and (directory / "junit.xml").is_file():
        tests = read_junit(directory / "junit.xml", project=project)
        info = RunInfo(
            started="",
            duration_s=0.0,
            suite_duration_s=sum(test.attempts[0].duration_s for test in tests),
            commit=None,
            python=None,
            platform=None,
            variant=f"junit:{directory.name}",
        )
        return Part(directory, RunResult(run=info, tests=tests, coverage=None, gates=()))
    if not path.is_file():
        raise InfraError(
            f"{directory} holds no results.json (nor junit.xml): is it the reports dir of a "
            "testgate run, or did that job fail before writing it?"
        )
    return Part(directory=directory, result=read_results(path, strings=strings))


def merged_run(part: Part, *, project: Path) -> str:
    """``py3.12-linux shard 1/2 (testgate-reports-1)``: one merged run, for the summary."""
    shard = f" shard {part.result.run.shard}" if part.result.run.shard else ""
    try:
        where = part.directory.resolve().relative_to(project.resolve()).as_posix()
    except ValueError:
        where = str(part.directory)
    return f"{part.variant}{shard} ({where})"


def merged_environment(runs: Sequence[RunInfo]) -> str | None:
    """One fingerprint of the parts' environments, None when a part has none (an old
    results.json, a junit.xml): the history compares merged runs by it."""
    found = sorted({run.environment or "" for run in runs})
    if "" in found:
        return None
    return hashlib.sha256("\0".join(found).encode()).hexdigest()[:16]


def check_variants(parts: Sequence[Part], *, expect: int | None) -> None:
    """The merge holds as many variants as the matrix runs (when they are expected).

    When every shard of one variant failed before writing reports, the other variants'
    shards are complete on their own: only the count of variants shows the hole.
    """
    variants = sorted({part.variant for part in parts})
    if expect is None or len(variants) == expect:
        return
    what = "missing" if len(variants) < expect else "more than the matrix runs"
    raise InfraError(
        f"expected {expect} variants, got {len(variants)} ({', '.join(variants)}): {what}. "
        "A matrix job that failed before writing its reports leaves none; merge only after "
        "every variant ran, or set expect-variants to the matrix's number of variants."
    )


def check_shards(parts: Sequence[Part], *, expect: int | None) -> None:
    """Every variant has each shard exactly once (when shards are expected)."""
    seen: dict[tuple[str, str | None], Path] = {}
    for part in parts:
        key = (part.variant, part.result.run.shard)
        if key in seen:
            what = f"shard {key[1]}" if key[1] else "an unsharded run"
            raise InfraError(
                f"{what} of {key[0]} appears twice: {seen[key]} and {part.directory}; "
                "each run's reports must be merged once."
            )
        seen[key] = part.directory
    _check_plans(parts)
    if expect is None:
        return
    for variant in sorted({part.variant for part in parts}):
        shards = {shard for (name, shard) in seen if name == variant}
        wanted = {f"{index}/{expect}" for index in range(1, expect + 1)}
        missing = sorted(wanted - shards, key=lambda shard: int(shard.split("/")[0]))
        if missing:
            raise InfraError(
                f"shard {missing[0]} of {variant} is missing: no reports dir given holds it "
                f"(got {', '.join(sorted(s or 'unsharded' for s in shards))}). A failed or "
                "cancelled matrix job leaves no reports; merge only after all shards ran."
            )
        if shards - wanted:
            odd = sorted(s or "unsharded" for s in shards - wanted)
            raise InfraError(
                f"{variant} has runs that are not shards of {expect}: {', '.join(odd)}"
            )


def _check_plans(parts: Sequence[Part]) -> None:
    """The shards of each variant were planned from the same durations, so none overlap."""
    plans: dict[str, dict[str | None, list[str]]] = {}
    for part in parts:
        shard = part.result.run.shard
        if shard is not None:
            plans.setdefault(part.variant, {}).setdefault(part.result.run.plan, []).append(shard)
    for variant, seen in sorted(plans.items()):
        if len(seen) > 1:
            groups = "; ".join(
                f"{', '.join(sorted(shards))} from {plan or 'unknown durations'}"
                for plan, shards in sorted(seen.items(), key=lambda item: sorted(item[1]))
            )
            raise InfraError(
                f"the shards of {variant} were planned from different durations ({groups}), so "
                "some tests may have run in two shards and others in none. Give every shard "
                "job the same durations.json (restore it once, with one cache key, before the "
                "matrix), then run the shards again."
            )


def merged_tests(parts: Sequence[Part]) -> tuple[TestResult, ...]:
    """Every test of every part; with several variants, each result names its variant."""
    if len({part.variant for part in parts}) == 1:  # each result as it is
        return tuple(itertools.chain.from_iterable(part.result.tests for part in parts))
    return tuple(
        msgspec.structs.replace(test, variant=part.variant)
        for part in parts
        for test in part.result.tests
    )


def sonar_tests(tests: Sequence[TestResult]) -> tuple[TestResult, ...]:
    """One result per test, the worst across variants: SonarQube counts each file once."""
    if all(test.variant is None for test in tests) and len({t.id for t in tests}) == len(tests):
        return tuple(tests)  # one run's tests, each once: as they are
    chosen: dict[str, TestResult] = {}
    for test in tests:
        held = chosen.get(test.id)
        if held is None or SEVERITY.index(test.outcome) < SEVERITY.index(held.outcome):
            chosen[test.id] = test
    return tuple(
        test if test.variant is None else msgspec.structs.replace(test, variant=None)
        for test in chosen.values()
    )


def merge(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    directories: Sequence[Path],
    expect_shards: int | None,
    expect_variants: int | None = None,
) -> Outcome:
    """Merge the reports dirs into the settings' reports dir and judge the result."""
    if not directories:
        raise ConfigError("testgate merge needs at least one reports dir: testgate merge DIR...")
    settings = with_stated_threshold(settings, environ=environ)  # as the runs judged
    started = datetime.now(UTC)
    clock = time.monotonic()
    strings: dict[str, str] = {}
    parts = [
        read_part(directory, project=settings.project, strings=strings) for directory in directories
    ]
    check_shards(parts, expect=expect_shards)
    check_variants(parts, expect=expect_variants)
    reports = settings.reports_dir
    if reports.resolve() in {part.directory.resolve() for part in parts}:
        raise ConfigError(
            f"the merged reports would overwrite the input {reports}: set --reports-dir to "
            "another directory."
        )
    # From here the merge rewrites the reports dir: a signal no longer raises (it would leave
    # the new coverage reports beside the old results.json); the merge ends, whole, and the
    # command exits 3 (cli.ended).
    interrupts.hold()
    owned_dir.claim(reports)
    unreported = None
    try:  # no project environment here: a coverage plugin must be beside testgate
        coverage = coverage_data.combine_and_report(
            project=settings.project,
            data_files=[part.directory / ".coverage" for part in parts],
            reports_dir=reports,
            other_roots=[part.result.run.root for part in parts if part.result.run.root],
        )
    except coverage_data.CoverageNotReported as error:  # the tests' results still stand
        coverage, unreported = None, error.message
    diff, diff_skipped = measure_change(settings, environ=environ, measured=coverage is not None)
    tests = merged_tests(parts)
    runs = [part.result.run for part in parts]
    misconfigured, judged = None, False  # on the whole: a shard imports only part of the code
    if unreported is None and Totals.of(tests).ran > 0:
        misconfigured, judged = coverage_data.misconfigured(
            settings.project, reports / ".coverage", chosen=False
        )
    gated = settings.fail_under_line > 0 or settings.fail_under_branch > 0
    info = RunInfo(
        started=started.isoformat(timespec="seconds"),
        duration_s=time.monotonic() - clock,
        suite_duration_s=max(run.suite_duration_s for run in runs),
        rerun_duration_s=max(run.rerun_duration_s for run in runs),
        commit=environ.get("GITHUB_SHA") or runs[0].commit,
        python=None,
        platform=None,
        variant=", ".join(sorted({part.variant for part in parts})),
        shard=None,
        root=str(settings.project),
        pytest_exit_code=None,
        problems=tuple(f"{part.directory}: {p}" for part in parts for p in part.result.run.problems)
        + ((unreported,) if unreported else ()),
        warnings=tuple(f"{part.directory}: {w}" for part in parts for w in part.result.run.warnings)
        + ((misconfigured,) if misconfigured and not (gated and judged) else ()),  # else an error
        merged=tuple(merged_run(part, project=settings.project) for part in parts),
        interrupted=next((run.interrupted for run in runs if run.interrupted), None),
        not_run=tuple(test_id for run in runs for test_id in run.not_run),
        deselected=max(run.deselected for run in runs),  # shards deselect the same tests
        coverage_incomplete=unreported
        or next(  # a part known to be partial makes the whole partial
            (
                f"{part.directory}: {part.result.run.coverage_incomplete}"
                for part in parts
                if part.result.run.coverage_incomplete
            ),
            None,
        ),
        coverage_misconfigured=misconfigured if gated and judged else None,
        environment=merged_environment(runs),
    )
    outcome = conclude(
        settings=replace(settings, shard=None),
        info=info,
        tests=tests,
        coverage=coverage,
        diff=(diff, diff_skipped),
        environ=environ,
    )
    once = sonar_tests(outcome.result.tests)
    if len(once) == len(outcome.result.tests) and all(
        map(operator.is_, once, outcome.result.tests)
    ):
        owned_dir.copy(reports / "junit.xml", reports / "junit-sonar.xml")  # one variant: the same
    else:
        write_junit(
            msgspec.structs.replace(outcome.result, tests=once), reports / "junit-sonar.xml"
        )
    return outcome
