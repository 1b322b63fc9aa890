"""Reading JUnit XML testgate did not write: hostile, broken, oversized or odd files are refused.

JUnit from real pytest runs, and the Surefire shape testgate writes, are in
tests/integration/test_junit_in.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InfraError
from runner.junit import read_junit, write_junit
from runner.results import RunInfo, RunResult


@pytest.mark.parametrize(
    "content",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<testsuites><testsuite><testcase name='t' classname='m'>&b;</testcase>"
        "</testsuite></testsuites>",
        "<testsuites><testsuite><testcase name='t'",
    ],
)
def test_hostile_or_broken_xml_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(content, "utf-8")
    with pytest.raises(InfraError, match="is not JUnit XML testgate can read safely"):
        read_junit(path, project=tmp_path)


def test_oversized_or_missing_junit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InfraError, match="cannot read"):
        read_junit(tmp_path / "missing.xml", project=tmp_path)
    path = tmp_path / "junit.xml"
    path.write_text("<testsuites/>", "utf-8")
    monkeypatch.setattr("runner.junit.READ_LIMIT_BYTES", 4)
    with pytest.raises(InfraError, match="over testgate's limit of 4"):
        read_junit(path, project=tmp_path)


@pytest.mark.parametrize("time", ["abc", "-1", "nan"])
def test_a_time_that_is_not_seconds_is_refused(tmp_path: Path, time: str) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(f"<testsuite><testcase classname='m' name='t' time='{time}'/></testsuite>")
    with pytest.raises(InfraError, match=rf"m::t has time='{time}', not a number of seconds"):
        read_junit(path, project=tmp_path)


def test_a_directory_is_not_a_junit_file(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="cannot read"):
        read_junit(tmp_path, project=tmp_path)


def test_a_failure_without_a_message_is_written_back_with_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        "<testsuite><testcase classname='m' name='t'><failure>m.py:3: in t</failure>"
        "</testcase></testsuite>",
        "utf-8",
    )
    (tmp_path / "m.py").write_text("", "utf-8")  # the file the classname names
    (test,) = read_junit(path, project=tmp_path)
    assert (test.outcome, test.line, test.attempts[0].message) == ("failed", 3, None)
    info = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit=None, python=None,
                   platform=None, variant=None)  # fmt: skip
    write_junit(RunResult(run=info, tests=(test,), coverage=None, gates=()), tmp_path / "out.xml")
    written = (tmp_path / "out.xml").read_text("utf-8")
    assert '<failure message="" type="failure">m.py:3: in t</failure>' in written


def test_a_case_pytest_names_after_a_module_is_that_module(tmp_path: Path) -> None:
    """pytest's case for a module that failed to collect or skipped itself has no
    classname and the module's dotted name: its id is the module's (the file only when
    it is on disk); a name that is no module of the project stays as written."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_m.py").write_text("", "utf-8")
    path = tmp_path / "junit.xml"
    path.write_text(
        "<testsuite>"
        "<testcase classname='' name='tests.test_m'><skipped message='no'/></testcase>"
        "<testcase classname='' name='gone.test_x' file='gone/test_x.py'><error/></testcase>"
        "<testcase classname='' name='other.test_y'/>"
        "</testsuite>",
        "utf-8",
    )
    found = [(test.id, test.file, test.outcome) for test in read_junit(path, project=tmp_path)]
    assert found == [
        ("tests/test_m.py", "tests/test_m.py", "skipped"),
        ("gone/test_x.py", "", "error"),
        ("other.test_y", "", "passed"),
    ]
