"""``testgate run`` on a fixture project whose every outcome is known in advance.

The project (tests/fixtures/outcomes) has passing, failing, erroring (setup and
teardown), skipped, xfailed, xpassed and parametrized tests, two test files that share
a basename, and a library with one line and one branch its tests never reach. It runs
once, under two xdist workers, through the installed console script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from coverage import Coverage
from coverage.results import should_fail_under
from junitparser import JUnitXml

from tests.conftest import (
    SCHEMA,
    Ran,
    copy_fixture,
    marker_line,
    run_subprocess,
    summary_counts,
)

MAIN = "tests/test_outcomes.py"


@pytest.fixture
def ran(outcomes_run: Ran) -> Ran:
    return outcomes_run


def line_of(ran: Ran, file: str, marker: str) -> int:
    return marker_line(ran.project / file, marker)


def def_line(ran: Ran, file: str, name: str) -> int:
    lines = (ran.project / file).read_text("utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.strip().startswith(f"def {name}("))


def test_exit_code_is_one_because_gates_failed(ran: Ran) -> None:
    assert ran.exit_code == 1, ran.output
    assert "testgate FAILED; reports in" in ran.output


def test_the_console_script_runs_as_a_user_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a git repository, with Python warning of every text read or written in the
    locale's encoding (PEP 597): testgate names the encoding of all it reads, git's output
    included (before, 17 EncodingWarnings from runner/git.py)."""
    project = copy_fixture("passing", tmp_path)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "passing"]):
        subprocess.run(
            ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *command],
            cwd=project, check=True, capture_output=True,
        )  # fmt: skip
    monkeypatch.setenv("PYTHONWARNDEFAULTENCODING", "1")
    ran = run_subprocess(project, "--workers", "0")
    assert ran.exit_code == 0, ran.output
    assert "EncodingWarning" not in ran.output
    assert "testgate passed; reports in" in ran.output
    module = subprocess.run(
        [sys.executable, "-m", "runner", "--version"], capture_output=True, text=True, check=True
    )
    assert module.stdout.strip() == "testgate 0.1.0"


def test_every_outcome_is_what_the_fixture_makes_it(ran: Ran) -> None:
    outcomes = {test["id"]: test["outcome"] for test in ran.results()["tests"]}
    assert outcomes == {
        f"{MAIN}::test_passes": "passed",
        f"{MAIN}::test_fails": "failed",
        f"{MAIN}::test_raises_in_library": "failed",
        f"{MAIN}::test_setup_error": "error",
        f"{MAIN}::test_teardown_error": "error",
        f"{MAIN}::test_skipped": "skipped",
        f"{MAIN}::test_xfailed": "xfailed",
        f"{MAIN}::test_xpassed": "xpassed",
        f"{MAIN}::TestLabels::test_small[1]": "passed",
        f"{MAIN}::TestLabels::test_small[20]": "failed",
        "tests/a/test_same.py::test_same_name": "failed",
        "tests/b/test_same.py::test_same_name": "failed",
        "tests/test_skips_itself.py": "skipped",  # a module that skips itself, as pytest counts
    }


def test_totals_equal_pytests_own_summary_line(ran: Ran) -> None:
    totals = ran.results()["totals"]
    counted = {name: count for name, count in totals.items() if count and name != "tests"}
    assert counted == summary_counts(ran.output)
    assert totals["tests"] == 13


def test_tests_the_project_deselects_are_counted_apart(ran: Ran) -> None:
    """The fixture's addopts deselect one test: under xdist pytest's own summary line does
    not say so, testgate's lines do, beside the 13 tests, not among them."""
    assert ran.results()["run"]["deselected"] == 1
    assert "testgate: 13 tests: " in ran.output
    assert "; 1 deselected in " in ran.output
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "; 1 deselected** in " in summary


def test_failures_point_at_the_failing_line_of_the_right_file(ran: Ran) -> None:
    expected = {
        f"{MAIN}::test_fails": (MAIN, line_of(ran, MAIN, "fails")),
        f"{MAIN}::test_raises_in_library": (MAIN, line_of(ran, MAIN, "raises-in-helper")),
        f"{MAIN}::TestLabels::test_small[20]": (MAIN, line_of(ran, MAIN, "param-fails")),
        "tests/a/test_same.py::test_same_name": (
            "tests/a/test_same.py",
            line_of(ran, "tests/a/test_same.py", "a-fails"),
        ),
        "tests/b/test_same.py::test_same_name": (
            "tests/b/test_same.py",
            line_of(ran, "tests/b/test_same.py", "b-fails"),
        ),
    }
    for test_id, (file, line) in expected.items():
        test = ran.test(test_id)
        assert (test["file"], test["line"], test["attempts"][0]["line"]) == (file, line, line)


def test_errors_outside_the_test_file_point_at_the_def_line(ran: Ran) -> None:
    setup = ran.test(f"{MAIN}::test_setup_error")
    assert setup["line"] == line_of(ran, MAIN, "def-setup-error")
    assert setup["attempts"][0]["phase"] == "setup"
    assert setup["attempts"][0]["message"] == "RuntimeError: setup broke"
    teardown = ran.test(f"{MAIN}::test_teardown_error")
    assert teardown["line"] == line_of(ran, MAIN, "def-teardown-error")
    assert teardown["attempts"][0]["outcome"] == "passed"
    assert teardown["attempts"][0]["teardown_error"] == "RuntimeError: teardown broke"


def test_passing_tests_carry_their_def_line_and_reasons_are_kept(ran: Ran) -> None:
    assert ran.test(f"{MAIN}::test_passes")["line"] == def_line(ran, MAIN, "test_passes")
    assert ran.test(f"{MAIN}::test_skipped")["attempts"][0]["message"] == "not on this platform"
    assert ran.test(f"{MAIN}::test_xfailed")["attempts"][0]["message"] == "known bug"
    skipped_module = ran.test("tests/test_skips_itself.py")["attempts"]
    assert [attempt["message"] for attempt in skipped_module] == ["not on this interpreter"]
    ran_tests = [test for test in ran.results()["tests"] if "::" in test["id"]]
    workers = {test["attempts"][0]["worker"] for test in ran_tests}
    assert workers == {"gw0", "gw1"}


def test_results_json_validates_against_the_published_schema(ran: Ran) -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(ran.results(), schema)
    assert ran.results()["schema_version"] == 1


def test_coverage_numbers_equal_coverage_pys_own_report(
    ran: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And the project's fail_under (86) judges what coverage.py judges, its total of
    statements and branches (85 %): before, testgate judged line coverage (85.71 %, so 86)
    and passed where coverage.py fails."""
    own = tmp_path / "own.json"
    # coverage.py's own JSON report, as `coverage json` in the project writes it (its
    # configuration read from there), made in this process: no interpreter to start.
    monkeypatch.chdir(ran.project)
    coverage_py = Coverage(data_file=str(ran.reports / ".coverage"))
    coverage_py.load()
    total = coverage_py.json_report(outfile=str(own))
    # what `coverage json` then decides with the project's fail_under: FAIL_UNDER (exit 2)
    fail_under = coverage_py.get_option("report:fail_under")
    precision = coverage_py.get_option("report:precision")
    assert fail_under == 86
    assert isinstance(precision, int)
    assert should_fail_under(total, fail_under, precision)
    totals = json.loads(own.read_text("utf-8"))["totals"]
    gate = ran.gate("line-coverage")
    assert (gate["threshold"], gate["actual"], gate["passed"]) == (
        86,
        totals["percent_covered"],
        False,
    )
    assert gate["message"] == (
        "coverage.py's total (statements and branches) 85.00 % below the minimum 86 % from "
        "fail_under in the project's coverage configuration"
    )
    assert (
        "testgate: coverage threshold 86 % from fail_under in the project's coverage "
        "configuration, on coverage.py's total (statements and branches), as coverage.py "
        "judges it" in ran.output
    )
    coverage = ran.results()["coverage"]
    assert coverage["line_percent"] == totals["percent_statements_covered"]
    assert coverage["branch_percent"] == totals["percent_branches_covered"]
    assert (coverage["covered_lines"], coverage["num_statements"]) == (
        totals["covered_lines"],
        totals["num_statements"],
    )
    assert coverage["line_percent"] < 100
    assert coverage["branch_percent"] < 100


def test_gates_name_threshold_actual_and_verdict(ran: Ran) -> None:
    verdicts = {
        gate["name"]: (gate["threshold"], gate["passed"]) for gate in ran.results()["gates"]
    }
    assert verdicts == {
        "failed-tests": (0, False),
        "line-coverage": (86, False),
        "branch-coverage": (0, True),  # fail_under's total holds the branches
        "diff-coverage": (100, True),
        "max-flaky": (0, True),
        "min-tests": (1, True),
    }
    assert ran.gate("diff-coverage")["message"] == (
        "skipped: not a git repository, so no change to measure"
    )
    assert ran.gate("failed-tests")["actual"] == 7
    assert re.match(r"\d+ failed, \d+ errors: ", ran.gate("failed-tests")["message"])
    assert ran.gate("min-tests")["actual"] == 11
    # a gate that passed without judging says so, in a word
    assert re.search(r"^diff-coverage +100 % +n/a +skipped$", ran.output, re.M)


def test_junit_xml_reads_back_with_the_same_counts_and_lines(ran: Ran) -> None:
    document = JUnitXml.fromfile(str(ran.reports / "junit.xml"))
    (suite,) = list(document)
    totals = ran.results()["totals"]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        13,
        totals["failed"],
        totals["errors"],
        totals["skipped"] + totals["xfailed"],
    )
    cases = {(case.classname, case.name): case for case in suite}
    failing = cases[("tests.b.test_same", "test_same_name")]
    assert failing._elem.get("file") == "tests/b/test_same.py"
    assert failing._elem.get("line") == str(line_of(ran, "tests/b/test_same.py", "b-fails"))
    message = failing.result[0].message or ""
    assert message.splitlines()[0] == "AssertionError: assert 'b' == 'c'"
    assert "assert 'b' == 'c'" in (failing.result[0].text or "")
    assert failing.system_out == "comparing b\n"
    assert failing.system_err == "to c\n"
    skipped = cases[("tests.test_outcomes", "test_xfailed")]
    assert (skipped.result[0].type, skipped.result[0].message) == ("pytest.xfail", "known bug")
    assert len(cases) == 13


def test_every_report_file_is_written(ran: Ran) -> None:
    names = {path.name for path in ran.reports.iterdir()}
    assert names == {
        "results.json",
        "junit.xml",
        "coverage.xml",
        "coverage.json",
        ".coverage",
        "durations.json",
        "summary.md",
        ".testgate-reports",  # the marker: this dir is testgate's own
        "history.json.gz",  # kept across runs: the local test history
    }
    durations = json.loads((ran.reports / "durations.json").read_text("utf-8"))
    assert set(durations) == {test["id"] for test in ran.results()["tests"]}
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "❌ testgate failed" in summary
    assert f"`{MAIN}:{line_of(ran, MAIN, 'fails')}`" in summary
