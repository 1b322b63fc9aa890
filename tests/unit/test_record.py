"""The plugin's record is untrusted input: bounded, checked, errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import InfraError
from runner.record import line_in_traceback, read_record


def write_lines(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), "utf-8")
    return path


def report(node: str, when: str, outcome: str, **extra: object) -> dict[str, object]:
    return {
        "kind": "report",
        "id": node,
        "when": when,
        "outcome": outcome,
        "duration": 0.5,
        **extra,
    }


def test_a_missing_record_means_pytest_never_started(tmp_path: Path) -> None:
    record = read_record(tmp_path / "absent.jsonl")
    assert (record.started, record.tests, record.exit_status) == (False, (), None)


def test_phases_fold_into_one_attempt_per_test(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        {"kind": "collected", "count": 2},
        {"kind": "logstart", "id": "t.py::a", "def_line": 3},
        report("t.py::a", "setup", "passed", def_line=3, worker="gw1"),
        report(
            "t.py::a", "call", "failed", message="AssertionError", line=4, text="T", worker="gw1"
        ),
        report("t.py::a", "teardown", "passed"),
        {"kind": "logstart", "id": "t.py::b", "def_line": 9},
        {"kind": "finish", "exitstatus": 1},
    )
    record = read_record(path)
    assert record.started
    assert record.exit_status == 1
    assert record.collected == 2
    (test,) = record.tests
    assert (test.id, test.def_line) == ("t.py::a", 3)
    attempt = test.attempt
    assert (attempt.outcome, attempt.line, attempt.phase, attempt.worker) == (
        "failed",
        4,
        "call",
        "gw1",
    )
    assert attempt.duration_s == 1.5
    assert record.unfinished is None  # the session finished, so nothing was cut off


def test_a_test_running_when_pytest_died_is_named(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        {"kind": "logstart", "id": "t.py::a", "def_line": 3},
        report("t.py::a", "setup", "passed"),
        report("t.py::a", "call", "passed"),
        report("t.py::a", "teardown", "passed"),
        {"kind": "logstart", "id": "t.py::dies", "def_line": 7},
        report("t.py::dies", "setup", "passed"),
    )
    record = read_record(path)
    assert [test.id for test in record.tests] == ["t.py::a"]
    assert record.unfinished is not None
    assert (record.unfinished.id, record.unfinished.def_line) == ("t.py::dies", 7)
    assert (record.unfinished.attempt.outcome, record.unfinished.attempt.phase) == ("error", "call")
    assert record.exit_status is None


def test_collection_errors_from_every_worker_count_once(tmp_path: Path) -> None:
    error = {
        "kind": "collect-error",
        "id": "tests/test_x.py",
        "message": "E   ImportError: nope",
        "text": "tests/test_x.py:3: in <module>\n    import nope\nE   ImportError: nope",
    }
    record = read_record(write_lines(tmp_path / "r.jsonl", {"kind": "start"}, error, error))
    (only,) = record.collect_errors
    assert (only.attempt.outcome, only.attempt.phase, only.attempt.line) == ("error", "collect", 3)
    assert record.collect_reports == 2  # as pytest under xdist counts them


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "Expecting value"),
        ('{"kind": "mystery"}', "known 'kind'"),
        ('{"kind": "report", "id": "a"}', "'when'"),
        ('{"kind": "collected", "count": "3"}', "field 'count' has the wrong type"),
        ('{"kind": "collected", "count": true}', "field 'count' has the wrong type"),
        ('{"kind": "finish", "exitstatus": 0, "line": "x"}', "field 'line' has the wrong type"),
        (
            '{"kind": "report", "id": "a", "when": "call", "outcome": "odd", "duration": 1}',
            "unknown outcome 'odd'",
        ),
        ("[1, 2]", "known 'kind'"),
    ],
)
def test_a_malformed_line_is_an_infrastructure_error_naming_it(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"kind": "start"}\n' + line + "\n", "utf-8")
    with pytest.raises(InfraError) as caught:
        read_record(path)
    assert f"{path} line 2 is not a valid testgate record" in caught.value.message
    assert reason in caught.value.message
    assert caught.value.exit_code == 3


def test_an_oversized_record_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", {"kind": "start"}, {"kind": "finish", "exitstatus": 0})
    with pytest.raises(InfraError, match="over testgate's limit of 10"):
        read_record(path, limit_bytes=10)


def test_the_failing_line_is_the_last_location_of_the_test_file_in_the_traceback() -> None:
    text = (
        "tests/test_a.py:12: in test_x\n    helper()\nsrc/app.py:40: in helper\n"
        "tests/test_a.py:18: AssertionError\ntests/test_a.py:note, not a location\n"
        "tests/test_a.py:99 no colon after the number"
    )
    assert line_in_traceback(text, "tests/test_a.py") == 18
    assert line_in_traceback(text, "src/app.py") == 40
    assert line_in_traceback(text, "tests/test_b.py") is None
    assert line_in_traceback("", "tests/test_a.py") is None
