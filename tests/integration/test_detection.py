"""``testgate flaky``: repeat chosen tests until each has a verdict stated with its evidence."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runner.errors import InfraError
from runner.flaky import Tally, failed_in, verdict_of
from runner.github.step import report_detection
from runner.results import RunInfo, RunResult
from runner.settings import load_settings
from runner.stability import Detection, TestVerdict, encode_detection
from tests.conftest import Ran, copy_fixture, environment, once_per_session, run_in_process

RunCli = Callable[..., Ran]
OUTPUT = r"^(\S+)<<(\S+)\n(.*?)\n\2$"  # GITHUB_OUTPUT's name<<DELIMITER form
FIRST = "tests/test_flaky.py::test_fails_first_time"
BROKEN = "tests/test_broken.py::test_always"
POLLUTER = "tests/test_order.py::test_a_pollutes"
ORDER = "tests/test_order.py::test_b_needs_clean_state"


def report(ran: Ran) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ran.reports / "flaky.json").read_text("utf-8"))
    return data


def verdicts(ran: Ran) -> dict[str, tuple[str, int, int]]:
    return {t["id"]: (t["verdict"], t["runs"], t["failures"]) for t in report(ran)["tests"]}


@pytest.fixture(scope="session")
def chosen(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """One job on the flaky fixture, on a runner with the project in a subdirectory of the
    workspace: tests chosen by ``--only`` (a module and a test id) and by the quarantine
    file's entries (``--from-quarantine``: one test, one file that holds no test), with a
    time budget long enough to change nothing. Each test below asserts its part of it."""

    def produce(root: Path) -> Ran:
        project = copy_fixture("flaky", root)
        (project / "q.txt").write_text(f"{POLLUTER}\ntests/test_gone.py\n", "utf-8")
        github = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(root),
                  "GITHUB_STEP_SUMMARY": str(root / "step-summary.md"),
                  "GITHUB_OUTPUT": str(root / "output.txt")}  # fmt: skip
        return run_in_process(
            project, "--quarantine", "q.txt", "--from-quarantine", "--max-fail-rate", "0.7",
            "--time-budget", "600", "--only", "tests/test_flaky.py", BROKEN,
            command="flaky", extra_env=github,
        )  # fmt: skip

    return once_per_session(tmp_path_factory, "detection-chosen", produce)


def test_chosen_tests_flip_fail_or_prove_stable(chosen: Ran) -> None:
    ran, workspace = chosen, chosen.project.parent
    assert ran.exit_code == 1
    assert verdicts(ran) == {
        FIRST: ("flaky", 2, 1),  # leaves the pool at its first flip
        BROKEN: ("failing", 3, 3),
        POLLUTER: ("stable", 3, 0),
    }
    data = report(ran)
    assert (data["runs_needed"], data["rounds"], data["stopped_by"]) == (3, 3, "verdicts")
    flaky = next(test for test in data["tests"] if test["id"] == FIRST)
    assert flaky["failure_rate"] == 0.5
    assert flaky["interval_95"] == pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert (
        flaky["statement"]
        == "failed 1 of 2 runs: failure rate 50% (95 % Wilson interval 9% to 91%)"
    )
    assert (
        f"STABLE {POLLUTER}: passed 3 runs in a row: fails less than 0.7 of the time" in ran.output
    )
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert summary.startswith("## ❌ testgate flaky detection")
    assert f"| `{BROKEN}` | failing | 3 | 3 | failed all 3 runs |" in summary
    # GitHub is told: the step summary, the outputs, an annotation per flaky test at its def
    assert (workspace / "step-summary.md").read_text("utf-8") == summary
    written = (workspace / "output.txt").read_text("utf-8")
    found = {name: value for name, _, value in re.findall(OUTPUT, written, re.M | re.S)}
    name = ran.project.relative_to(workspace).as_posix()
    assert found == {"passed": "false", "tests": "3", "flaky": "1", "stable": "1",
                     "failing": "1", "undecided": "0", "skipped": "0",
                     "reports-dir": f"{name}/testgate-reports"}  # fmt: skip
    source = (ran.project / "tests" / "test_flaky.py").read_text("utf-8").splitlines()
    line = source.index("def test_fails_first_time():") + 1
    assert (
        f"::warning title=flaky%3A {FIRST.replace(':', '%3A')},file={name}/tests/test_flaky.py,"
        f"line={line}::failed 1 of 2 runs: failure rate 50%25 (95 %25 Wilson interval 9%25 to "
        "91%25)\n" in ran.output
    )
    assert f"::error title=failing%3A {BROKEN.replace(':', '%3A')},file={name}/" in ran.output
    assert flaky["file"] == "tests/test_flaky.py"  # flaky.json: relative to the project
    # The file is the model: it reads back into a Detection that writes the same bytes.
    written_json = (ran.reports / "flaky.json").read_bytes()
    detection = msgspec.json.decode(written_json, type=Detection)
    assert (detection.count("flaky"), detection.undecided) == (1, ())
    assert encode_detection(detection) == written_json


def test_a_rerun_of_an_earlier_runs_failures_confirms_the_fixes(
    flaky_fixture_run: Ran, tmp_path: Path
) -> None:
    first = flaky_fixture_run  # the session's run: one failed and four flaky tests
    assert first.exit_code == 1
    ran = run_in_process(
        first.project,
        "--from-results",
        str(first.reports),
        "--max-fail-rate",
        "0.7",
        command="flaky",
        reports=str(tmp_path / "detection"),
    )
    assert ran.exit_code == 1
    found = verdicts(ran)
    assert found.pop(BROKEN) == ("failing", 3, 3)
    # Alone and with fresh seeds each round, every one of the others passes.
    assert set(found.values()) == {("stable", 3, 0)}
    assert sorted(found) == [
        FIRST,
        ORDER,
        "tests/test_seed.py::test_hash_seed_changes",
        "tests/test_seed.py::test_randomly_seed_changes",
    ]


def test_quarantine_entries_proven_stable_are_named(chosen: Ran) -> None:
    """The job above checks the quarantine file's entries too. That a job whose tests all
    prove stable exits 0 is asserted by test_the_whole_suite_when_nothing_is_chosen."""
    data = report(chosen)
    assert data["quarantine_stable"] == [POLLUTER]
    assert data["warnings"] == ["'tests/test_gone.py' matches no test"]
    assert verdicts(chosen)[POLLUTER] == ("stable", 3, 0)
    assert f"quarantine entry now stable: {POLLUTER}" in chosen.output
    summary = (chosen.reports / "summary.md").read_text("utf-8")
    assert "### Quarantine entries now proven stable" in summary


def test_the_time_budget_stops_with_undecided_tests_named(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_fixture("flaky", tmp_path)
    # the user's -p no:xdist: no xdist, whatever workers says (pytest refused -n: exit 3)
    serial = environment(PYTEST_ADDOPTS="-p no:xdist")
    ran = run_cli(project, "--only", BROKEN, POLLUTER, "--time-budget", "0.001", "--workers", "2",
                  command="flaky", env=serial)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "no xdist: -p no:xdist in PYTEST_ADDOPTS switches it off" in ran.output
    data = report(ran)
    assert data["stopped_by"] == "time-budget"  # the budget stops even the first round
    assert data["undecided"] == [BROKEN, POLLUTER]
    assert verdicts(ran)[BROKEN] == ("undecided", 0, 0)
    assert "never ran before the job was stopped; 59 runs needed for a verdict" in ran.output
    assert "stopped by the time budget" in ran.output


def test_the_whole_suite_when_nothing_is_chosen(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    (project / "tests" / "test_skip.py").write_text(
        "import pytest\n\n@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n", "utf-8"
    )
    ran = run_cli(project, "--max-fail-rate", "0.7", "--workers", "0", command="flaky")
    assert ran.exit_code == 0, ran.output  # every verdict is stable
    found = verdicts(ran)
    assert found.pop("tests/test_skip.py::test_later") == ("skipped", 0, 0)
    assert set(found.values()) == {("stable", 3, 0)}
    assert len(found) == 3
    assert "testgate flaky: 1 skipped, 3 stable after 3 rounds" in ran.output


def test_nothing_to_check_is_a_quick_clean_answer(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    (project / "earlier").mkdir()
    empty = RunResult(
        run=RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit=None, python=None,
                    platform=None, variant=None),
        tests=(),
        coverage=None,
        gates=(),
    )  # fmt: skip
    (project / "earlier" / "results.json").write_text(json.dumps(empty.to_json()), "utf-8")
    ran = run_cli(project, "--from-results", "earlier", command="flaky")
    assert ran.exit_code == 0
    assert report(ran)["rounds"] == 0
    assert "testgate flaky: no test checked after 0 rounds" in ran.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--from-quarantine",), 2, "--from-quarantine needs a quarantine file"),
        (("--from-results", "nowhere"), 2, "passing/nowhere: no results.json there"),
        (("--from-results", "bad"), 3, "is not a readable testgate results.json"),
        (("--confidence", "1"), 2, "--confidence: '1' must be a probability between 0 and 1"),
    ],
)
def test_bad_input_names_the_problem(
    run_cli: RunCli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    project = copy_fixture("passing", tmp_path)
    (project / "bad").mkdir()
    (project / "bad" / "results.json").write_text('{"tests": [{"id": 1}]}', "utf-8")
    ran = run_cli(project, *args, command="flaky")
    assert ran.exit_code == code
    assert message in ran.output


def test_an_oversized_earlier_results_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "results.json").write_text('{"tests": []}', "utf-8")
    monkeypatch.setattr("runner.results.RESULTS_LIMIT_BYTES", 3)
    with pytest.raises(InfraError, match=r"results\.json is not a readable .*over 3 bytes"):
        failed_in(tmp_path)


def test_without_summary_or_output_files_only_annotations_are_given() -> None:
    verdicts = (
        TestVerdict.of(id="t.py::f", verdict="flaky", runs=2, failures=1,
                       statement="failed 1 of 2 runs", line=3),
        TestVerdict.of(id="t.py::g", verdict="stable", runs=5, failures=0,
                       statement="passed 5 runs in a row", line=9),
    )  # fmt: skip
    detection = Detection.of(confidence=0.95, max_fail_rate=0.5, runs_needed=5, rounds=5,
                          duration_s=1.0, stopped_by="verdicts", tests=verdicts)  # fmt: skip
    printed = report_detection(detection, markdown="", root="/nowhere", environ={})
    assert printed == "::warning title=flaky%3A t.py%3A%3Af,file=t.py,line=3::failed 1 of 2 runs\n"
    quiet = report_detection(detection, markdown="", root="/", environ={}, annotations=False)
    assert quiet == ""


def test_a_test_stopped_short_of_a_verdict_says_how_far_it_got(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("", "utf-8")
    settings = load_settings(project=tmp_path, flags={}, environ={})
    passing = verdict_of("t.py::test_a", Tally(runs=3), settings, 59)
    assert (passing.verdict, passing.statement) == (
        "undecided",
        "passed 3 runs in a row so far; 59 needed for a verdict",
    )
    failing = verdict_of("t.py::test_b", Tally(runs=2, failures=2), settings, 59)
    assert failing.statement == "failed 2 runs in a row so far; 59 needed for a verdict"
