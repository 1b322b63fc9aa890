"""The plugin's record is untrusted input: bounded, checked, errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import InfraError
from runner.record import line_in_traceback, read_record, unrun_loaders


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
        ("[1, 2]", "known 'kind'"),
    ],
)
def test_a_malformed_line_is_an_infrastructure_error_naming_it(
    tmp_path: Path, line: str, reason: str
) -> None:
    """A line that is not JSON was cut short; a whole one is not blamed on a killed process."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"kind": "start"}\n' + line + "\n", "utf-8")
    with pytest.raises(InfraError) as caught:
        read_record(path)
    assert f"{path} line 2 is not a valid testgate record" in caught.value.message
    assert reason in caught.value.message
    assert caught.value.exit_code == 3
    cut = "may have been killed while writing it" in caught.value.message
    assert cut == (line == "not json"), caught.value.message


def test_a_report_no_phase_or_outcome_of_pytest_names_is_an_error_that_says_so(
    tmp_path: Path,
) -> None:
    """Another plugin's outcome, or a report of a phase pytest does not have, neither
    vanishes nor aborts the read: the test is an error that names it."""
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        report("t.py::odd", "setup", "passed"),
        report("t.py::odd", "call", "odd", message="E: why"),
        report("t.py::extra", "setup", "passed"),
        report("t.py::extra", "call", "passed"),
        report("t.py::extra", "verify", "failed", message="VerifyError: no", line=7, text="T"),
        report("t.py::extra", "verify", "passed"),
        report("t.py::fine", "call", "passed"),
        report("t.py::fine", "verify", "passed"),
        report("t.py::lone", "verify", "failed", message="VerifyError: alone"),
        {"kind": "finish", "exitstatus": 1},
    )
    tests = {test.id: test.attempt for test in read_record(path).tests}
    assert (tests["t.py::odd"].outcome, tests["t.py::odd"].message) == (
        "error",
        "pytest reported the outcome 'odd' for this test's call, which testgate does not "
        "know (set by a plugin?): E: why",
    )
    extra = tests["t.py::extra"]
    assert (extra.outcome, extra.message, extra.line, extra.text) == (
        "error",
        "the 'verify' report VerifyError: no",
        7,
        "T",
    )
    assert extra.duration_s == 1.0  # its own phases: setup and call
    assert tests["t.py::fine"].outcome == "passed"
    assert tests["t.py::lone"].outcome == "error"


def test_a_failed_subtest_fails_its_test_with_its_own_message(tmp_path: Path) -> None:
    """pytest 9's subtests and pytest-subtests report each subtest apart (``subtest``
    names it): the test fails with its first failed subtest's message, line and text."""
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        report("t.py::a", "setup", "passed"),
        report("t.py::a", "call", "passed", subtest="(i=0)"),
        report("t.py::a", "call", "failed", subtest="(i=1)", message="E1", line=4, text="T1"),
        report("t.py::a", "call", "failed", subtest="(i=2)", message="E2", line=4, text="T2"),
        report("t.py::a", "call", "passed"),
        report("t.py::a", "teardown", "passed"),
        report("t.py::b", "call", "failed", subtest="[m] (i=0)", message="E", stdout="out"),
        report("t.py::b", "call", "failed", message="contains 1 failed subtest"),
        report("t.py::s", "setup", "skipped", message="no"),
        report("t.py::s", "call", "failed", subtest="(i=0)", message="E"),
        report("t.py::p", "call", "passed", subtest="(i=0)"),
        report("t.py::p", "call", "skipped", subtest="(i=1)", message="later"),
        report("t.py::p", "call", "passed"),
        {"kind": "finish", "exitstatus": 1},
    )
    tests = {test.id: test.attempt for test in read_record(path).tests}
    a = tests["t.py::a"]
    assert (a.outcome, a.message, a.line, a.text, a.phase, a.duration_s) == (
        "failed",
        "(i=1) E1 (and 1 more failure)",
        4,
        "T1",
        "call",
        1.5,  # the test's own phases: a subtest's time is part of its call's
    )
    b = tests["t.py::b"]
    assert (b.outcome, b.message, b.stdout) == ("failed", "[m] (i=0) E", "out")
    assert tests["t.py::s"].outcome == "skipped"  # a skipped setup keeps the test skipped
    assert tests["t.py::p"].outcome == "passed"


def test_a_try_pytest_rerunfailures_ran_again_is_an_attempt_of_its_own(tmp_path: Path) -> None:
    """Its ``rerun`` report is the failure of a try: one attempt per try, in order, so a
    test that passed on its last try is flaky, one that never did failed every attempt."""
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        report("t.py::f", "setup", "passed"),
        report("t.py::f", "call", "rerun", message="AssertionError: once", line=5),
        report("t.py::f", "teardown", "passed"),
        report("t.py::f", "setup", "passed"),
        report("t.py::f", "call", "passed"),
        report("t.py::f", "teardown", "passed"),
        report("t.py::s", "setup", "rerun", message="OSError: port"),
        report("t.py::s", "setup", "rerun", message="OSError: port"),
        report("t.py::s", "setup", "failed", message="OSError: port"),
        report("t.py::s", "teardown", "passed"),
        {"kind": "finish", "exitstatus": 1},
    )
    tried = [(t.id, t.attempt.outcome, t.attempt.message) for t in read_record(path).tests]
    assert tried == [
        ("t.py::f", "failed", "AssertionError: once"),
        ("t.py::f", "passed", None),
        ("t.py::s", "error", "OSError: port"),
        ("t.py::s", "error", "OSError: port"),
        ("t.py::s", "error", "OSError: port"),
    ]
    (first, second, *_) = read_record(path).tests
    assert (first.attempt.duration_s, second.attempt.duration_s) == (1.5, 1.5)


def test_a_module_that_skips_itself_is_one_skipped_test(tmp_path: Path) -> None:
    """Counted once, though each xdist worker reports it; a missing module stays an error."""
    skip = {"kind": "collect-skip", "id": "tests/test_m.py", "message": "not today"}
    missing = {"kind": "collect-skip", "id": "t2.py", "message": "could not import 'x': no"}
    path = write_lines(tmp_path / "r.jsonl", {"kind": "start"}, skip, skip, missing)
    record = read_record(path)
    (test,) = record.tests
    assert (test.id, test.attempt.outcome, test.attempt.message) == (
        "tests/test_m.py",
        "skipped",
        "not today",
    )
    (error,) = record.collect_errors
    assert (error.id, error.attempt.outcome) == ("t2.py", "error")


def test_a_conftest_pytest_could_not_import_is_recorded(tmp_path: Path) -> None:
    line = {"kind": "conftest-error", "path": "tests/conftest.py", "message": "ImportError: x"}
    record = read_record(write_lines(tmp_path / "r.jsonl", line))
    assert (record.started, record.conftest_error) == (False, "tests/conftest.py: ImportError: x")


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


def test_deselected_tests_are_counted_once_and_named_for_names_that_match_none(
    tmp_path: Path,
) -> None:
    """Each xdist worker hands over the same count: the record keeps it once. A quarantine
    entry or a flaky --only name that matched nothing is told it may be one of them."""
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "start"},
        {"kind": "deselected", "count": 3},
        {"kind": "deselected", "count": 3},
        {"kind": "finish", "exitstatus": 0},
    )
    record = read_record(path)
    assert record.deselected == 3
    assert record.deselected_note == (
        " (the project deselected 3 tests: -k, -m, --deselect or a plugin)"
    )
    none = read_record(write_lines(tmp_path / "n.jsonl", {"kind": "start"}))
    assert (none.deselected, none.deselected_note) == (0, "")


def test_a_keyboard_interrupt_through_a_running_tests_file_is_that_tests_error(
    tmp_path: Path,
) -> None:
    """In its setup or call (never reported) the test is an error at the interrupt's line;
    in its teardown, after its call reported, the test keeps its outcome; between tests,
    or through no test's file (line None), no test raised it."""
    interrupted = {"kind": "keyboard-interrupt", "message": "KeyboardInterrupt", "line": 7}
    path = write_lines(
        tmp_path / "call.jsonl",
        {"kind": "logstart", "id": "t.py::a", "def_line": 3},
        report("t.py::a", "setup", "passed", def_line=3),
        interrupted,
        report("t.py::a", "teardown", "passed"),
        {"kind": "finish", "exitstatus": 2},
    )
    record = read_record(path)
    assert record.tests == ()
    assert record.interrupt == "KeyboardInterrupt"
    assert record.interrupted_in is not None
    attempt = record.interrupted_in.attempt
    assert (attempt.outcome, attempt.line, attempt.phase, attempt.duration_s) == (
        "error",
        7,
        "call",
        1.0,
    )
    assert attempt.message == "KeyboardInterrupt stopped pytest's session"
    path = write_lines(
        tmp_path / "teardown.jsonl",
        {"kind": "logstart", "id": "t.py::a", "def_line": 3},
        report("t.py::a", "setup", "passed"),
        report("t.py::a", "call", "passed"),
        interrupted,
        {"kind": "finish", "exitstatus": 2},
    )
    record = read_record(path)
    assert (record.interrupted_in, record.interrupt) == (None, None)
    assert [test.attempt.outcome for test in record.tests] == ["passed"]
    for between in (
        [interrupted],
        [{"kind": "logstart", "id": "t.py::b"}, {**interrupted, "line": None}],
    ):
        record = read_record(
            write_lines(tmp_path / "between.jsonl", *between, {"kind": "finish", "exitstatus": 2})
        )
        assert record.interrupted_in is None


@pytest.mark.parametrize(
    ("test", "said"), [("t.py::a", "forked in t.py::a"), (None, "forked before any test started")]
)
def test_a_forked_process_gone_on_with_the_session_is_named(
    tmp_path: Path, test: str | None, said: str
) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        {"kind": "forked", "pid": 42, **({} if test is None else {"test": test})},
        {"kind": "finish", "exitstatus": 0},
    )
    assert read_record(path).forked == f"{said} went on running pytest's session (pid 42)"


def test_what_ended_the_session_early_is_named_from_the_record(tmp_path: Path) -> None:
    """A test's KeyboardInterrupt, with xdist or without, or an exception pytest did not
    handle; a record that shows none of them names nothing."""
    from runner.faults import ended_by  # noqa: PLC0415  (the record's reader, in one place)

    def ended(*lines: object) -> str | None:
        return ended_by(read_record(write_lines(tmp_path / "r.jsonl", *lines)))

    running = [{"kind": "logstart", "id": "t.py::a"}, report("t.py::a", "setup", "passed")]
    interrupt = {"kind": "keyboard-interrupt", "message": "KeyboardInterrupt", "line": 2}
    finish = {"kind": "finish", "exitstatus": 2}
    assert ended(*running, interrupt, finish) == "the KeyboardInterrupt raised in t.py::a"
    down = {"kind": "worker-down", "worker": "gw1", "interrupted": True}
    crash = report("t.py::a", "???", "failed", worker="gw1", message="crashed", text="")
    assert ended(down, crash, finish) == "the KeyboardInterrupt in t.py::a (xdist worker gw1)"
    uncaught = {"kind": "uncaught", "message": "OSError", "where": "x.py:1 in f", "text": ""}
    assert ended(finish, uncaught) == "the exception pytest did not handle (the problem above)"
    assert ended(*running, finish) is None


def test_test_files_with_unittests_load_tests_hook_are_named(tmp_path: Path) -> None:
    """pytest never calls ``load_tests``: the tests it adds would not run, unsaid."""
    hook = "import doctest\n\n\ndef load_tests(loader, tests, ignore):\n    return tests\n"
    method = "class T:\n    def load_tests(self):\n        pass\n"  # not the module's hook
    files = {
        "t/test_a.py": hook,
        "t/test_b.py": hook,
        "t/test_c.py": "x = 1\n",
        "t/test_d.py": method,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text, "utf-8")
    ids = ["t/test_a.py::test_x", "t/test_a.py::test_y", "t/test_b.py::T::test_z",
           "t/test_c.py::test_w", "t/test_d.py::T::test_v", "gone.py::test_u"]  # fmt: skip
    started = {"kind": "start"}
    record = read_record(
        write_lines(tmp_path / "r.jsonl", started, {"kind": "collected", "count": 6, "ids": ids})
    )
    (said,) = unrun_loaders(tmp_path, record)
    assert said.startswith("t/test_a.py, t/test_b.py define load_tests, unittest's hook")
    record = read_record(write_lines(tmp_path / "r.jsonl", started))
    assert unrun_loaders(tmp_path, record) == ()
