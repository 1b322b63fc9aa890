"""Matrix shards balanced by durations, and ``testgate merge``: nothing lost or counted twice."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from coverage import Coverage
from junitparser import JUnitXml

from runner.errors import ConfigError
from runner.merge import merge as merge_function
from runner.settings import load_settings
from runner.sharding import read_durations
from tests.conftest import Ran, copy_fixture, environment, once_per_session, run_in_process

RunCli = Callable[..., Ran]
CALC = "tests/test_calc.py"
IDS = [f"{CALC}::test_add", f"{CALC}::test_sign_negative", f"{CALC}::test_sign_positive"]
DURATIONS = ("--durations", "planned.json")


def shard(project: Path, index: int, count: int, *args: str) -> Ran:
    return run_in_process(
        project, "--workers", "0", "--shard", f"{index}/{count}", *args, reports=f"shard-{index}"
    )


def ids(ran: Ran) -> list[str]:
    return sorted(test["id"] for test in ran.results()["tests"])


def planned(project: Path) -> Path:
    """The project with recorded durations in planned.json: test_add alone is half the work."""
    record = project / "planned.json"
    record.write_text(json.dumps({IDS[0]: 9.0, IDS[1]: 1.0, IDS[2]: 1.0}), "utf-8")
    return project


def test_shards_follow_the_recorded_durations(
    tmp_path: Path, merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran]
) -> None:
    """two_shards were planned from planned.json; a shard planned without it is refused."""
    project, first, second = two_shards
    assert ids(first) == [IDS[0]]
    assert ids(second) == sorted(IDS[1:])
    assert first.results()["run"]["shard"] == "1/2"
    assert first.exit_code == 0  # coverage is below 100 % in one shard, and that is for merge
    coverage = first.gate("line-coverage")
    assert (coverage["passed"], coverage["message"]) == (
        True,
        "deferred to testgate merge (shard 1/2)",
    )
    (row,) = [line.split() for line in first.output.splitlines() if line.startswith("line-cov")]
    assert (row[0], row[-1]) == ("line-coverage", "deferred")  # its verdict column
    # A shard planned without those durations split the suite another way: refused.
    unplanned = shard(copy_fixture("passing", tmp_path), 2, 2)
    ran = merge(project, "--expect-shards", "2", str(first.reports), str(unplanned.reports))
    assert ran.exit_code == 3
    plans = (first.results()["run"]["plan"], unplanned.results()["run"]["plan"])
    assert (
        f"were planned from different durations (1/2 from {plans[0]}; 2/2 from {plans[1]}), so "
        "some tests may have run in two shards and others in none" in ran.output
    )


def test_an_empty_shard_writes_valid_empty_reports(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    ran = shard(project, 4, 4, "--", "-k", "add")
    assert ran.exit_code == 0, ran.output
    assert ran.results()["tests"] == []
    (suite,) = list(JUnitXml.fromfile(str(ran.reports / "junit.xml")))
    assert suite.tests == 0
    assert json.loads((ran.reports / "durations.json").read_text("utf-8")) == {}


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ran, Ran]:
    """Shard 1 in one copy of the project, shard 2 in another: two 'machines', both planned
    from the same recorded durations (planned.json).

    Made once per session and only read: each merge writes to its own directory.
    """
    first = once_per_session(
        tmp_path_factory,
        "shard-1",
        lambda root: shard(planned(copy_fixture("passing", root)), 1, 2, *DURATIONS),
    )
    second = once_per_session(
        tmp_path_factory,
        "shard-2",
        lambda root: shard(planned(copy_fixture("passing", root)), 2, 2, *DURATIONS),
    )
    return first.project, first, second


@pytest.fixture
def merge(tmp_path: Path) -> Callable[..., Ran]:
    """Run testgate merge into this test's own reports dir."""

    def run(project: Path, *args: str) -> Ran:
        return run_in_process(project, *args, command="merge", reports=str(tmp_path / "merged"))

    return run


def test_merging_shards_from_two_machines_is_exact(
    merge: Callable[..., Ran],
    two_shards: tuple[Path, Ran, Ran],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here, first, second = two_shards
    ran = merge(here, "--expect-shards", "2", str(first.reports), str(second.reports))
    assert ran.exit_code == 0, ran.output
    assert ids(ran) == sorted(IDS)
    coverage = ran.results()["coverage"]
    assert (coverage["line_percent"], coverage["branch_percent"]) == (100.0, 100.0)
    # coverage.py itself reads the merged data the same way (its JSON report, as `coverage
    # json` in the project writes it, made in this process).
    own = tmp_path / "own.json"
    monkeypatch.chdir(here)
    coverage_py = Coverage(data_file=str(ran.reports / ".coverage"))
    coverage_py.load()
    coverage_py.json_report(outfile=str(own))
    assert json.loads(own.read_text("utf-8"))["totals"]["percent_covered"] == 100.0
    assert ran.results()["totals"]["tests"] == 3
    durations = json.loads((ran.reports / "durations.json").read_text("utf-8"))
    assert sorted(durations) == sorted(IDS)
    (suite,) = list(JUnitXml.fromfile(str(ran.reports / "junit.xml")))
    assert suite.tests == 3
    assert (ran.reports / "junit-sonar.xml").is_file()


@pytest.mark.parametrize(
    ("expect", "twice", "message"),
    [
        ("3", False, "shard 1/3 of py3.11"),
        ("2", True, "shard 1/2 of py3.11"),
    ],
)
def test_a_missing_or_doubled_shard_is_exit_three_naming_it(
    merge: Callable[..., Ran],
    two_shards: tuple[Path, Ran, Ran],
    expect: str,
    twice: bool,
    message: str,
) -> None:
    here, first, second = two_shards
    dirs = [str(first.reports), str(second.reports)] + ([str(first.reports)] if twice else [])
    ran = merge(here, "--expect-shards", expect, *dirs)
    assert ran.exit_code == 3
    assert message in ran.output
    assert ("appears twice" if twice else "is missing") in ran.output


def test_runs_that_are_not_shards_of_the_expected_count_are_refused(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    here, first, second = two_shards
    other = edited_copy(first.reports, tmp_path / "other", lambda d: d["run"].update(shard="3/3"))
    ran = merge(here, "--expect-shards", "2", str(first.reports), str(other), str(second.reports))
    assert ran.exit_code == 3
    assert "has runs that are not shards of 2: 3/3" in ran.output


def edited_copy(
    reports: Path, destination: Path, change: Callable[[dict[str, Any]], object]
) -> Path:
    """A copy of a reports dir whose results.json ``change`` has edited."""
    shutil.copytree(reports, destination)
    path = destination / "results.json"
    data = json.loads(path.read_text("utf-8"))
    change(data)
    path.write_text(json.dumps(data), "utf-8")
    return destination


def test_variants_stay_visible_and_a_failure_names_its_variant(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    here, first, second = two_shards

    # Only Python 3.11 is installed here: the 3.12 run is this run as another machine
    # would have reported it, with one failure.
    def as_312_with_a_failure(data: dict[str, Any]) -> None:
        data["run"]["variant"] = "py3.12-linux"
        test = data["tests"][0]
        test["outcome"] = "failed"
        test["attempts"][0].update(
            outcome="failed", message="AssertionError: on 3.12", phase="call"
        )

    other = edited_copy(second.reports, tmp_path / "py312", as_312_with_a_failure)
    ran = merge(here, str(first.reports), str(second.reports), str(other))
    assert ran.exit_code == 1
    results = ran.results()
    assert results["totals"]["tests"] == 5  # three on 3.11, two (a shard) on 3.12
    failed = [t for t in results["tests"] if t["outcome"] == "failed"]
    failing = second.results()["tests"][0]["id"]
    assert [(t["id"], t["variant"]) for t in failed] == [(failing, "py3.12-linux")]
    assert ran.gate("failed-tests")["message"] == f"1 failed: {failing} [py3.12-linux]"
    assert f"FAILED [py3.12-linux] {CALC}:" in ran.output
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(ran.reports / "junit.xml"))}
    assert sorted(suites) == ["py3.11-linux", "py3.12-linux"]
    (sonar,) = list(JUnitXml.fromfile(str(ran.reports / "junit-sonar.xml")))
    assert (sonar.tests, sonar.failures) == (3, 1)  # each test once, its worst result
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "Merged 3 runs: `py3.11-linux shard 1/2 (shard-1)`" in summary
    assert f"`py3.12-linux shard 2/2 ({other})`" in summary  # outside the project: as given


def test_a_whole_missing_variant_is_exit_three(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran]
) -> None:
    # Both shards of the other Python failed before writing reports: this one's are complete.
    here, first, second = two_shards
    dirs = [str(first.reports), str(second.reports)]
    ran = merge(here, "--expect-shards", "2", "--expect-variants", "2", *dirs)
    assert ran.exit_code == 3
    assert "expected 2 variants, got 1 (py3.11-linux): missing" in ran.output
    assert merge(here, "--expect-variants", "1", *dirs).exit_code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "holds no results.json"),
        ("{", "is not a readable testgate results.json"),
        ('{"schema_version": 2}', "schema_version 2, not 1"),
    ],
)
def test_unreadable_inputs_are_exit_three_naming_them(
    merge: Callable[..., Ran], tmp_path: Path, content: str | None, message: str
) -> None:
    project = copy_fixture("passing", tmp_path)
    broken = project / "broken"
    broken.mkdir()
    if content is not None:
        (broken / "results.json").write_text(content, "utf-8")
    ran = merge(project, str(broken))
    assert ran.exit_code == 3
    assert message in ran.output


def test_a_problem_in_any_input_run_is_exit_three(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    here, first, second = two_shards
    crashed = edited_copy(
        second.reports,
        tmp_path / "crashed",
        lambda data: data["run"]["problems"].append("pytest internal error: boom"),
    )
    ran = merge(here, str(first.reports), str(crashed))
    assert ran.exit_code == 3
    assert ran.results()["run"]["problems"] == [f"{crashed}: pytest internal error: boom"]


def test_a_coverage_plugin_the_merge_cannot_load_is_named_and_the_tests_stand(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    """The merge combines in testgate's own environment: a plugin of the project's coverage
    configuration that is not there is the merge's problem (exit 3), not a lost merge."""
    here, first, second = two_shards
    project = tmp_path / "project"
    shutil.copytree(here, project, ignore=shutil.ignore_patterns(".venv", "testgate-reports"))
    with (project / "pyproject.toml").open("a", encoding="utf-8") as config:
        config.write('\n[tool.coverage.run]\nplugins = ["nowhere_cov_plugin"]\n')
    ran = merge(project, str(first.reports), str(second.reports))
    assert ran.exit_code == 3, ran.output
    (problem,) = ran.results()["run"]["problems"]
    assert problem.startswith("coverage.py could not load the coverage plugin nowhere_cov_plugin")
    assert "install it with testgate, or remove it from [run] plugins." in problem
    assert ran.results()["totals"]["tests"] == 3
    assert ran.gate("line-coverage")["verdict"] == "not judged"
    assert (ran.reports / "junit.xml").is_file()


def test_oversized_inputs_are_refused(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, first, _ = two_shards
    monkeypatch.setattr("runner.results.RESULTS_LIMIT_BYTES", 10)
    monkeypatch.setattr("runner.sharding.LIMIT_BYTES", 10)
    assert read_durations(first.reports / "durations.json")[1] is not None
    ran = merge(here, str(first.reports))
    assert ran.exit_code == 3
    assert "over 10 bytes" in ran.output


def test_the_merge_may_not_overwrite_its_inputs(two_shards: tuple[Path, Ran, Ran]) -> None:
    here, first, second = two_shards
    ran = run_in_process(
        here, str(first.reports), str(second.reports), command="merge", reports="shard-1"
    )
    assert ran.exit_code == 2
    assert "would overwrite the input" in ran.output


def test_merge_without_directories_is_a_usage_error(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    settings = load_settings(project=project, flags={}, environ={})
    with pytest.raises(ConfigError, match="needs at least one reports dir"):
        merge_function(settings, environ=environment(), directories=[], expect_shards=None)


def test_gate_judges_a_merge_again_with_the_thresholds_set_now(
    merge: Callable[..., Ran], two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    """``testgate gate`` on a merge's reports: the same tests and coverage, the verdicts of
    the thresholds given now, every report written again, and no second run in the history."""
    here, first, second = two_shards
    merged = merge(here, "--expect-shards", "2", str(first.reports), str(second.reports))
    assert merged.exit_code == 0, merged.output
    before = merged.results()
    history = (merged.reports / "history.json.gz").read_bytes()
    stricter = run_in_process(
        here, "--min-tests", "1000", "--max-skipped", "0", command="gate",
        reports=str(merged.reports),
    )  # fmt: skip
    assert stricter.exit_code == 1, stricter.output
    after = stricter.results()
    assert (after["tests"], after["coverage"]) == (before["tests"], before["coverage"])
    assert stricter.gate("min-tests") == {
        "name": "min-tests", "threshold": 1000, "actual": len(IDS), "passed": False,
        "message": f"{len(IDS)} tests ran; at least 1000 required", "verdict": "fail",
    }  # fmt: skip
    assert stricter.gate("max-skipped")["verdict"] == "pass"  # a gate the merge did not have
    lines = stricter.output.splitlines()
    assert lines[-1] == f"testgate FAILED; reports in {merged.reports}/"
    assert "min-tests        1000" in stricter.output
    assert "| min-tests | 1000 |" in (merged.reports / "summary.md").read_text("utf-8")
    assert (merged.reports / "history.json.gz").read_bytes() == history
    again = run_in_process(here, command="gate", reports=str(merged.reports))
    assert again.exit_code == 0, again.output
    assert again.gate("min-tests")["verdict"] == "pass"


def test_gate_keeps_a_shards_suite_wide_gates_deferred(
    two_shards: tuple[Path, Ran, Ran], tmp_path: Path
) -> None:
    _, first, _ = two_shards
    copy = tmp_path / "shard-1"
    shutil.copytree(first.reports, copy)  # the shared shard's own reports stay as they are
    ran = run_in_process(first.project, command="gate", reports=str(copy))
    assert ran.exit_code == 0, ran.output
    assert ran.gate("line-coverage")["verdict"] == ran.gate("min-tests")["verdict"] == "deferred"
    assert ran.results()["tests"] == first.results()["tests"]


def test_gate_without_results_names_what_to_run_first(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    ran = run_in_process(project, command="gate")
    assert ran.exit_code == 2
    assert (
        f"testgate: error: {project / 'testgate-reports'}: no results.json there to judge; run "
        "'testgate run' (or 'testgate merge') first, or point --reports-dir at the reports it "
        "wrote."
    ) in ran.output
    assert not (project / "testgate-reports").exists()  # nothing made for nothing judged
