"""JUnit ``classname`` and ``name`` as pytest's own junitxml writes them, for hostile ids.

pytest keeps a parametrization ``[...]`` whole in ``name`` (it splits at the first ``[``,
then at the last ``::`` before it), so ids whose parameters hold ``::``, ``.``, ``[`` or
``/`` must come out of our junit.xml exactly as out of pytest's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from junitparser import JUnitXml

from runner import junit
from runner.junit import classname, split_node_id
from runner.results import Attempt, RunInfo, RunResult, TestResult

INFO = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0)

HOSTILE = """
import pytest

IDS = ["a::b", "::", "x[y]", "a.b", "p/q", "[", "]", "a]::[b", "sp ace", "ü::ß", "::t::"]


@pytest.mark.parametrize("v", IDS, ids=IDS)
def test_x(v):
    pass


class TestK:
    @pytest.mark.parametrize("v", IDS, ids=IDS)
    def test_y(self, v):
        pass

    class TestInner:
        def test_z(self):
            pass


def test_plain():
    pass
"""


def test_every_hostile_id_is_named_as_pytest_names_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hostile=HOSTILE)
    reports = pytester.inline_run("--junitxml=pytest.xml", "-p", "no:cacheprovider")
    ids = [
        report.nodeid
        for report in reports.getreports("pytest_runtest_logreport")
        if report.when == "call"
    ]
    theirs = [
        (case.classname, case.name)
        for suite in JUnitXml.fromfile(str(pytester.path / "pytest.xml"))
        for case in suite
    ]
    assert len(ids) == len(theirs) == 24
    ours = [(classname(test_id), split_node_id(test_id)[1]) for test_id in ids]
    assert ours == theirs
    attempt = Attempt(outcome="passed", duration_s=0.0)
    written = junit.testcase_xml(
        TestResult(id=ids[0], file="test_hostile.py", line=None, outcome="passed",
                   attempts=(attempt,))
    )  # fmt: skip
    assert 'classname="test_hostile" name="test_x[a::b]"' in written


def test_a_file_or_a_plain_id_has_no_owner() -> None:
    assert split_node_id("tests/x.py") == ("", "tests/x.py")
    assert split_node_id("tests/x.py::K::t[1::2]") == ("tests/x.py::K", "t[1::2]")


def test_a_large_report_writes_each_case_as_it_would_alone(tmp_path: Path) -> None:
    # The writer makes what cases share once (classnames, names, files, a read JUnit's
    # shared attempts); what it writes is each case's own, also past its reuse bound.
    shared = Attempt(outcome="passed", duration_s=0.25)
    tests = [
        TestResult(id=f"t/{module}.py::{klass}test_create[{index % 2}]", file=f"t/{module}.py",
                   line=line, outcome="passed", attempts=(attempt,))
        for index, (module, klass, line, attempt) in enumerate([
            ("a", "", None, shared), ("a", "K::", None, shared), ("b", "", 3, shared),
            ("b", "K::", 3, Attempt(outcome="passed", duration_s=0)),
            ("b", "", None, Attempt(outcome="passed", duration_s=0.0)),
            ("a", "", None, Attempt(outcome="passed", duration_s=1e-07)),
        ])
    ]  # fmt: skip
    alone = [junit.testcase_xml(test) for test in tests]
    assert 'time="0"' in alone[3]  # 0 and 0.0 are equal, and written as they are
    assert 'time="0.0"' in alone[4]
    together = junit._Cases()
    assert [together.xml(test) for test in tests] == alone
    bounded = junit._Cases(shared=1)  # what is not kept is made again, the same
    assert [bounded.xml(test) for test in tests] == alone
    path = tmp_path / "junit.xml"
    junit.write_junit(RunResult(run=INFO, tests=tuple(tests), coverage=None, gates=()), path)
    assert "".join(alone) in path.read_text("utf-8")
