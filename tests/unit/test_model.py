"""The results model as a reader of results.json and of the summary meets it: gate
statuses, diff coverage and the one way line ranges are written."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from runner.diff_coverage import measure
from runner.gates import evaluate, max_skipped, min_tests
from runner.github.commands import annotations_of
from runner.render import markdown, terminal
from runner.results import (
    Attempt,
    DiffCoverage,
    GateResult,
    RunInfo,
    RunResult,
    TestResult,
    decode,
    encode,
    spans_text,
)
from runner.settings import Settings, load_settings
from tests.conftest import results_schema

INFO = RunInfo(started="2026-12-01T10:00:00+00:00", duration_s=1.23456, suite_duration_s=1.0)
REPORT = {
    "pkg/a.py": {
        "executed_lines": [1, 2, 3],
        "missing_lines": [4, 5, 6, 9],
        "executed_branches": [[3, 4]],
        "missing_branches": [[3, -1]],
    }
}


def settings(tmp_path: Path, **flags: str) -> Settings:
    return load_settings(project=tmp_path, flags=flags, environ={})


def written(result: RunResult) -> RunResult:
    """The result as results.json holds it, read back."""
    data = b"".join(encode(result))
    results_schema().validate(json.loads(data))
    return decode(data)


def test_a_shard_defers_suite_wide_gates_and_the_summary_says_so_after_reading_it_back(
    tmp_path: Path,
) -> None:
    shard = settings(tmp_path, shard="1/2")
    gates = evaluate(settings=shard, tests=(), coverage=None, suite_duration_s=1.0)
    result = written(RunResult(run=INFO, tests=(), coverage=None, gates=gates))
    statuses = {gate.name: gate.status for gate in result.gates}
    assert statuses["line-coverage"] == statuses["min-tests"] == "deferred"
    assert statuses["failed-tests"] == statuses["max-flaky"] == "pass"
    rows = {line.split()[0]: line.split()[-1] for line in terminal(result, reports_dir="out")
            .splitlines() if line.endswith(("pass", "deferred"))}  # fmt: skip
    assert rows["line-coverage"] == rows["min-tests"] == "deferred"
    assert "| diff-coverage | 100 % | n/a | deferred |" in markdown(result)


def test_a_gate_is_shown_by_its_status_never_by_its_message() -> None:
    gates = (
        GateResult(name="diff-coverage", threshold=100, actual=None, status="skipped",
                   message="no coverage data"),
        GateResult.judged(name="min-tests", threshold=1, actual=0, passed=True,
                          message="deferred in words only"),
        GateResult.judged(name="max-flaky", threshold=0, actual=1, passed=False,
                          message="skipped: in words only"),
    )  # fmt: skip
    result = RunResult(run=INFO, tests=(), coverage=None, gates=gates)
    table = terminal(result, reports_dir="out")
    assert [line.split()[-1] for line in table.splitlines() if "-coverage" in line or
            line.startswith(("min-tests", "max-flaky"))] == ["skipped", "pass", "FAIL"]  # fmt: skip
    assert not result.passed


def test_diff_coverage_is_typed_in_the_model_and_unchanged_in_results_json() -> None:
    diff = measure({"pkg/a.py": {3, 4, 5, 6, 9, 10}}, REPORT, base="main", merge_base="abc")
    assert (diff.statements, diff.branches) == (5, 2)
    assert diff.percent == pytest.approx(200 / 7)
    result = written(RunResult(run=INFO, tests=(), coverage=None, gates=(), diff_coverage=diff))
    assert result.diff_coverage == diff
    assert json.loads(msgspec.json.encode(diff))["files"] == [
        {"path": "pkg/a.py", "statements": 5, "covered_statements": 1,
         "missing_ranges": [[4, 6], [9, 9]], "branches": 2, "covered_branches": 1,
         "missing_branches": [[3, -1]]}
    ]  # fmt: skip
    assert json.loads(b"".join(encode(result)))["run"]["duration_s"] == 1.235
    summary = markdown(result)
    assert "| `pkg/a.py` | 5 | 1 | 2 | 1 | 4-6, 9 |" in summary
    one = msgspec.structs.replace(result, run=msgspec.structs.replace(INFO, merged=("py3.12",)))
    assert "Merged 1 run: `py3.12`" in markdown(one)  # testgate merge of one reports dir
    found = [(note.line, note.end_line, note.message) for note in annotations_of(result)]
    assert found == [
        (4, 6, "lines 4-6 changed since main are not covered"),
        (9, 9, "line 9 changed since main is not covered"),
    ]


def test_no_change_measured_is_none_not_zero() -> None:
    diff = measure({"pkg/b.py": {1}}, REPORT, base="main", merge_base="abc")
    assert diff == DiffCoverage(base="main", merge_base="abc", percent=None, line_percent=None,
                                statements=0, branches=0, files=())  # fmt: skip


def test_line_ranges_are_written_one_way() -> None:
    assert spans_text([(3, 5), (9, 9)]) == "3-5, 9"
    assert spans_text([]) == ""


def test_a_results_json_of_another_shape_is_refused_by_name() -> None:
    document = json.loads(b"".join(encode(RunResult(run=INFO, tests=(), coverage=None, gates=()))))
    document["gates"] = [{"name": "no-such-gate", "threshold": None, "actual": None,
                          "passed": True, "message": ""}]  # fmt: skip
    with pytest.raises(
        ValueError, match=r"Invalid enum value .no-such-gate. - at `\$.gates\[0\].name`"
    ):
        decode(json.dumps(document).encode())
    document["gates"] = []
    del document["run"]["started"]
    with pytest.raises(ValueError, match=r"missing required field `started` - at `\$.run`$"):
        decode(json.dumps(document).encode())


def test_a_count_stays_an_integer_when_results_json_is_written_again() -> None:
    gate = GateResult.judged(name="max-flaky", threshold=0, actual=2, passed=False, message="2")
    again = written(written(RunResult(run=INFO, tests=(), coverage=None, gates=(gate,))))
    assert b'"threshold":0,"actual":2,"passed":false' in b"".join(encode(again))


def test_a_suite_that_only_skipped_says_so_not_that_nothing_was_collected() -> None:
    skipped = Attempt(outcome="skipped", duration_s=0.0, message="no database here")
    tests = tuple(
        TestResult(
            id=f"t.py::test_{n}", file="t.py", line=n, outcome="skipped", attempts=(skipped,)
        )
        for n in range(3)
    )
    gate = min_tests(tests, threshold=1)
    assert (gate.status, gate.actual) == ("fail", 0)
    assert gate.message == "no test ran: all 3 tests were skipped (see the skip reasons)"
    assert min_tests(tests[:1], threshold=1).message == (
        "no test ran: the only test was skipped (see the skip reasons)"
    )
    assert min_tests((), threshold=1).message == (
        "no test ran: check testpaths, -k and -m, and that tests are collected"
    )
    for deselected, said in ((1, "the 1 test collected was"), (3, "the 3 tests collected were")):
        assert min_tests((), threshold=1, deselected=deselected).message == (
            f"no test ran: {said} deselected: check -k, -m, --deselect and --lf in the "
            "options and addopts, and plugins that deselect"
        )


def test_a_share_of_skipped_tests_keeps_its_percent_in_every_report() -> None:
    """``max-skipped = "5%"`` is a share, ``"5"`` a count: results.json, the terminal and
    the summary tell them apart."""
    skipped = Attempt(outcome="skipped", duration_s=0.0, message="no database here")
    passed = Attempt(outcome="passed", duration_s=0.0)
    tests = tuple(
        TestResult(id=f"t.py::test_{n}", file="t.py", line=n + 1, outcome=attempt.outcome,
                   attempts=(attempt,))
        for n, attempt in enumerate([skipped, passed, passed, passed])
    )  # fmt: skip
    share, count = max_skipped(tests, limit="5.0%"), max_skipped(tests, limit="5")
    result = written(RunResult(run=INFO, tests=tests, coverage=None, gates=(share,)))
    assert [(gate.threshold, gate.actual, gate.unit) for gate in result.gates] == [(5, 25, "%")]
    assert "max-skipped  5 %        25 %    FAIL" in terminal(result, reports_dir="out")
    assert "| max-skipped | 5 % | 25 % | **FAIL** |" in markdown(result)
    counted = written(RunResult(run=INFO, tests=tests, coverage=None, gates=(count,)))
    assert b'"unit"' not in b"".join(encode(counted))  # a count: no unit
    assert "| max-skipped | 5 | 1 | pass |" in markdown(counted)
