"""Reading JUnit XML written by others: pytest's own, and the Surefire shape testgate writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec
import pytest

from runner.github.commands import annotations_of
from runner.junit import read_junit
from runner.results import RunInfo, RunResult
from tests.conftest import Ran, copy_fixture, run_in_process

BROKEN = "tests/test_broken.py::test_always"
FIRST = "tests/test_flaky.py::test_fails_first_time"

JUNIT_SAYS = {"xpassed": "passed"}  # pytest's JUnit writes an xpass as a plain pass


@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_pytests_own_junit_reads_as_testgate_recorded_the_same_suite(
    outcomes_run: Ran,
    tmp_path: Path,
    family: str,
) -> None:
    junit = tmp_path / "theirs" / "junit.xml"
    subprocess.run(
        ["uv", "run", "--no-sync", "--project", str(outcomes_run.project), "python", "-m",
         "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         "-o", f"junit_family={family}"],
        cwd=outcomes_run.project,
        capture_output=True,
        check=False,
    )  # fmt: skip
    tests = {test.id: test for test in read_junit(junit, project=outcomes_run.project)}
    ours = {test["id"]: test for test in outcomes_run.results()["tests"]}
    assert sorted(tests) == sorted(ours)
    for test_id, test in ours.items():
        assert tests[test_id].outcome == JUNIT_SAYS.get(test["outcome"], test["outcome"]), test_id
        if test["outcome"] == "failed":
            assert tests[test_id].line == test["line"], test_id


def test_a_merge_takes_a_dir_with_only_another_tools_junit(
    outcomes_run: Ran,
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "junit.xml").write_bytes((outcomes_run.reports / "junit.xml").read_bytes())
    merged = run_in_process(
        outcomes_run.project, str(theirs), command="merge", reports=str(tmp_path / "merged")
    )
    assert merged.exit_code == 1
    assert merged.results()["totals"]["tests"] == 13
    assert merged.results()["run"]["variant"] == "junit:theirs"


def test_surefire_reruns_and_flakes_read_back_as_attempts(flaky_fixture_run: Ran) -> None:
    flaky = flaky_fixture_run
    tests = {
        test.id: test for test in read_junit(flaky.reports / "junit.xml", project=flaky.project)
    }
    assert (tests[BROKEN].outcome, len(tests[BROKEN].attempts)) == ("failed", 3)
    assert tests[BROKEN].note == "failed 3 of 3 attempts"
    assert (tests[FIRST].outcome, tests[FIRST].flaky_kind) == ("flaky", "nondeterministic")
    assert [a.outcome for a in tests[FIRST].attempts] == ["failed", "passed"]


def test_names_without_a_known_file_fall_back_to_the_dotted_path(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        "<testsuites><testsuite name='other'>"
        "<testcase classname='pkg.test_mod.TestK' name='test_a' time='0.5'/>"
        "<testcase name='lonely'/>"
        "<testcase classname='a.b' name='c' file='a/b.py' line='7'/>"
        "</testsuite></testsuites>",
        "utf-8",
    )
    copy_fixture("passing", tmp_path)  # a project whose files do not match these names
    found = [(t.id, t.file, t.line) for t in read_junit(path, project=tmp_path / "passing")]
    # no file is invented: none of these is on disk, so none is the test's file
    assert found == [
        ("pkg.test_mod.TestK::test_a", "", None),
        ("lonely", "", None),
        ("a/b.py::c", "", 7),
    ]
    failing = msgspec.structs.replace(read_junit(path, project=tmp_path)[2], outcome="failed")
    info = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit=None,
                   python=None, platform=None, variant=None)  # fmt: skip
    run = RunResult(run=info, tests=(failing,), coverage=None, gates=())
    (annotation,) = annotations_of(run, prefix="svc/")
    assert "file=" not in annotation.command()


def test_a_dotted_classname_names_a_file_only_when_it_exists(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    path = tmp_path / "junit.xml"
    path.write_text(
        "<testsuite><testcase classname='tests.test_calc.TestK' name='test_a'/>"
        "<testcase classname='x' name='t' file='tests/test_calc.py'/></testsuite>",
        "utf-8",
    )
    found = [(t.id, t.file) for t in read_junit(path, project=project)]
    assert found == [
        ("tests/test_calc.py::TestK::test_a", "tests/test_calc.py"),
        ("tests/test_calc.py::t", "tests/test_calc.py"),
    ]
