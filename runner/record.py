"""Read the record the injected plugin wrote during one pytest attempt.

The record is a JSON-lines file written by the project's pytest process, so it is read
as untrusted input: bounded in size, every line checked for the fields testgate uses,
and a malformed file is an ``InfraError`` that names the file and the line.

A test's failure message is kept to ``MESSAGE_LIMIT`` characters, its traceback and
captured output to ``TEXT_LIMIT`` each, saying how much was cut: a test that fails with a
50 MB message costs neither the terminal, results.json nor junit.xml 50 MB.

The result is one ``Attempt`` per test (its setup, call and teardown reports folded
together), in the order pytest finished them, plus what the session said about itself.
A report pytest makes about a test is never dropped: a subtest's (pytest 9's
``SubtestReport``, pytest-subtests' ``SubTestReport``) fails its test when it failed; a
``rerun`` (pytest-rerunfailures) ends a try, which is an attempt of its own, so a test that
passed on a later try is flaky; an outcome testgate does not know, or a failed report of a
phase pytest does not have (another plugin's), makes the test an error that says so. A
module that skipped itself is one skipped test, named by the module's node id.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgspec import structs

from runner.errors import InfraError
from runner.output import bounded
from runner.plugin import _testgate_wire as wire
from runner.plural import counted
from runner.results import Attempt, AttemptOutcome, Phase

RECORD_LIMIT_BYTES = 1024 * 1024 * 1024
MESSAGE_LIMIT = 16 * 1024
TEXT_LIMIT = 256 * 1024
FULL_DISK_BYTES = 1024 * 1024
PHASES = ("setup", "call", "teardown")


KEYBOARD_INTERRUPT = " on a KeyboardInterrupt"  # how an xdist worker that one ended stopped


@dataclass(frozen=True)
class RecordedTest:
    """One test as one attempt saw it.

    In a run of several rounds, ``id`` carries the round (``t.py::f[testgate-round-2]``),
    ``test`` is the test's own id and ``round`` the round's number.
    """

    id: str
    def_line: int | None
    attempt: Attempt
    test: str = ""
    round: int | None = None

    @property
    def test_id(self) -> str:
        return self.test or self.id


Try = tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]  # a try's phases, and its parts


@dataclass(frozen=True)
class AttemptRecord:
    """Everything one pytest attempt recorded."""

    started: bool
    exit_status: int | None
    collected: int | None
    tests: tuple[RecordedTest, ...]
    collect_errors: tuple[RecordedTest, ...]
    internal_errors: tuple[str, ...]
    unfinished: RecordedTest | None
    warnings: tuple[str, ...] = ()  # pytest's own warnings: configuration, marks, plugins
    collect_reports: int = 0  # collection errors as pytest counts them: once per xdist worker
    collected_ids: tuple[str, ...] = ()
    deselected: int = 0  # collected tests the project's options or plugins deselected
    lost: tuple[str, ...] = ()
    crashes: tuple[str, ...] = ()
    uncaught: str | None = None  # the exception that ended pytest after its last hook
    conftest_error: str | None = None  # a conftest pytest could not import: it never configured
    # The test a KeyboardInterrupt raised in its own file stopped (an error attempt), and
    # that interrupt: the test's when testgate did not stop pytest itself.
    interrupted_in: RecordedTest | None = None
    interrupt: str | None = None
    forked: str | None = None  # where a child forked that went on with pytest, and its pid
    # The test, and its worker, that a KeyboardInterrupt stopped under xdist, stopping pytest.
    interrupted_worker: str | None = None

    @property
    def deselected_note(self) -> str:
        """`` (the project deselected 3 tests: -k, -m, --deselect, a plugin)`` when it did,
        for a name that matched no test: it may be one of those; else nothing."""
        if not self.deselected:
            return ""
        return (
            f" (the project deselected {counted(self.deselected, 'test')}: -k, -m, --deselect "
            "or a plugin)"
        )


def read_record(
    path: Path, *, limit_bytes: int = RECORD_LIMIT_BYTES, full_below: int = FULL_DISK_BYTES
) -> AttemptRecord:
    """Parse a record file; a missing file means pytest never got as far as configuring.

    A record cut short on a disk with less than ``full_below`` bytes free was cut by the
    full disk (the plugin's write failed with ENOSPC), and the error says so.
    """
    if not path.exists():
        return AttemptRecord(
            started=False,
            exit_status=None,
            collected=None,
            tests=(),
            collect_errors=(),
            internal_errors=(),
            unfinished=None,
        )
    size = path.stat().st_size
    if size > limit_bytes:
        raise InfraError(
            f"{path} is {size} bytes, over testgate's limit of {limit_bytes}: "
            "the test run wrote far more than any suite should."
        )
    builder = _Builder()
    with path.open(encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                record = json.loads(line)
            except ValueError as error:
                raise InfraError(
                    f"{path} line {number} is not a valid testgate record ({error}); "
                    + _why_cut(path, full_below)
                ) from None
            try:
                builder.add(_check(record))
            except (ValueError, KeyError, TypeError) as error:  # a whole line: not cut short
                raise InfraError(
                    f"{path} line {number} is not a valid testgate record ({error}), though "
                    "whole: the test process wrote a line testgate cannot read (a plugin "
                    "that changes pytest's reports?); please report it to testgate with "
                    "that line."
                ) from None
    return builder.build()


def _why_cut(path: Path, full_below: int) -> str:
    free = shutil.disk_usage(path.parent).free
    if free < full_below:
        return (
            f"the disk holding {path.parent} is full (ENOSPC: {free} bytes free), so the "
            "test process could not finish writing it: free some space and run again."
        )
    return "the test process may have been killed while writing it."


def _check(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict) or record.get("kind") not in wire.FIELDS:
        raise ValueError("not an object with a known 'kind'")
    for name, kind in wire.FIELDS[record["kind"]].items():
        if not isinstance(record[name], kind) or isinstance(record[name], bool):
            raise TypeError(f"field {name!r} has the wrong type")
    for name, kind in wire.OPTIONAL_FIELDS.items():
        if name in record and not isinstance(record[name], kind):
            raise TypeError(f"field {name!r} has the wrong type")
    return record


class _Builder:
    """Folds phase reports into attempts as the record is read."""

    def __init__(self) -> None:
        self.started = False
        self.exit_status: int | None = None
        self.collected: int | None = None
        self.deselected = 0
        self.phases: dict[str, dict[str, dict[str, Any]]] = {}
        self.def_lines: dict[str, int | None] = {}
        self.order: list[str] = []
        self.collect_errors: dict[str, RecordedTest] = {}
        self.internal_errors: list[str] = []
        self.warnings: list[str] = []
        self.collect_reports = 0
        self.running: str | None = None
        self.collected_ids: list[str] = []
        self.finished_on: dict[str, list[str]] = {}
        self.lost: list[str] = []
        self.crashes: dict[str, str] = {}
        self.interrupt: tuple[str, str, int] | None = None  # running test, message, line
        self.forked: str | None = None
        self.interrupted_worker: str | None = None
        self.uncaught: str | None = None
        self.conftest_error: str | None = None
        self.skipped_modules: dict[str, RecordedTest] = {}
        self.parts: dict[str, list[dict[str, Any]]] = {}  # subtests, a plugin's own phases
        self.tries: dict[str, list[Try]] = {}  # the tries pytest-rerunfailures ran again

    def add(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        if kind == wire.START:
            self.started = True
        elif kind == wire.COLLECTED:
            self.collected = max(self.collected or 0, record["count"])
            self.collected_ids = self.collected_ids or [str(i) for i in record.get("ids", ())]
        elif kind == wire.DESELECTED:  # each xdist worker deselects the same tests
            self.deselected = max(self.deselected, record["count"])
        elif kind == wire.LOGSTART:
            self.running = record["id"]
            self.def_lines.setdefault(record["id"], record.get("def_line"))
        elif kind == wire.COLLECT_ERROR:
            self._collect_error(record)
        elif kind == wire.REPORT:
            self._report(record)
        elif kind == wire.INTERNAL_ERROR:
            self.internal_errors.append(record["text"])
        elif kind == wire.WARNING:
            self.warnings.append(record["text"])
        elif kind == wire.COLLECT_SKIP:
            self._collect_skip(record)
        elif kind == wire.WORKER_DOWN:
            self._worker_down(record["worker"], record.get("exit"), record.get("interrupted"))
        elif kind == wire.FORKED:
            where = f"in {record['test']}" if "test" in record else "before any test started"
            self.forked = f"forked {where} went on running pytest's session (pid {record['pid']})"
        elif kind == wire.KEYBOARD_INTERRUPT:
            line = record.get("line")
            if self.running is not None and line is not None:
                self.interrupt = (self.running, record["message"], line)
        elif kind == wire.UNCAUGHT:
            self.uncaught = f"{record['message']} (raised at {record['where']})"
        elif kind == wire.CONFTEST_ERROR:
            self.conftest_error = f"{record['path']}: {record['message']}"
        else:
            self.exit_status = record["exitstatus"]

    def _collect_error(self, record: dict[str, Any]) -> None:
        # Every xdist worker collects, so the same error arrives once per worker.
        node = record["id"]
        self.collect_reports += 1
        if node not in self.collect_errors:
            attempt = Attempt(
                outcome="error",
                duration_s=0.0,
                message=bounded(record["message"], MESSAGE_LIMIT),
                line=line_in_traceback(record["text"], node.split("::")[0]),
                phase="collect",
                text=bounded(record["text"], TEXT_LIMIT),
            )
            self.collect_errors[node] = RecordedTest(id=node, def_line=None, attempt=attempt)

    def _collect_skip(self, record: dict[str, Any]) -> None:
        """A module that skipped itself is one skipped test, as pytest counts it (once,
        though every xdist worker reports it); unless a dependency is missing."""
        if MISSING_DEPENDENCY.search(record["message"]):
            message = f"{MISSING}{record['message']}"
            self._collect_error({**record, "message": message, "text": message})
        elif record["id"] not in self.skipped_modules:
            attempt = Attempt(
                outcome="skipped",
                duration_s=0.0,
                message=bounded(record["message"], MESSAGE_LIMIT),
            )
            self.skipped_modules[record["id"]] = RecordedTest(
                id=record["id"], def_line=None, attempt=attempt
            )

    def _worker_down(self, worker: str, code: int | None, interrupted: bool | None) -> None:
        """A dead xdist worker took the coverage of every test it had finished with it; one
        that a KeyboardInterrupt ended stopped on it, with no exit code to tell."""
        if interrupted:
            self.crashes[worker] = KEYBOARD_INTERRUPT
        else:
            self.crashes[worker] = "" if code is None else f" ({describe_exit(code)})"
        self.lost += self.finished_on.pop(worker, [])

    def _report(self, record: dict[str, Any]) -> None:
        node = record["id"]
        worker = record.get("worker")
        crashed = record["when"] == XDIST_CRASH
        if crashed:  # xdist's report of the test its worker died in
            how = self.crashes.get(worker or "", "")
            stopped = "died"
            if how == KEYBOARD_INTERRUPT:
                stopped = "stopped"
                self.interrupted_worker = (
                    self.interrupted_worker or f"{node} (xdist worker {worker})"
                )
            message = f"the xdist worker {worker} {stopped}{how} while this test ran"
            record = {**record, "message": message, "crashed": True, "text": message}
            if "call" in self.phases.get(node, {}):  # it died after the call: in the teardown
                self.lost.append(record.get("test") or node)  # what the call measured, gone
        elif record["when"] == "teardown" and worker is not None:
            self.finished_on.setdefault(worker, []).append(record.get("test") or node)
        if record["outcome"] not in (*wire.OUTCOMES, wire.RERUN):
            record = _unknown_outcome(record)
        if node not in self.phases:
            self.phases[node] = {}
            self.order.append(node)
        if record.get("def_line") is not None:
            self.def_lines[node] = record["def_line"]
        if "subtest" in record or record["when"] not in (*PHASES, XDIST_CRASH):
            self.parts.setdefault(node, []).append(record)  # folded into the test's own
            return
        when = record["when"] if record["when"] in PHASES else "call"
        if record["outcome"] == wire.RERUN:  # the failure of a try pytest-rerunfailures reruns
            failed = {**self.phases.pop(node), when: {**record, "outcome": "failed"}}
            self.tries.setdefault(node, []).append((failed, self.parts.pop(node, [])))
            self.phases[node] = {}
            return
        if when == "teardown" and not self.phases[node] and node in self.tries:
            self.tries[node][-1][0][when] = record  # the teardown of the try just rerun
            return
        self.phases[node][when] = record
        if when == "teardown" or crashed:
            self.running = None

    def build(self) -> AttemptRecord:
        died = self.running if self.exit_status is None else None
        cut = {node for node in self.order if _cut_short(self.phases[node])}
        if died is not None:  # the only process died: nothing it measured was saved
            self.lost = [self._test(node) for node in self.order]
        tests = (*self.skipped_modules.values(), *self._tests(died, cut))
        unfinished = None
        if died is not None:
            partial = self.phases.get(died, {})
            attempt = Attempt(
                outcome="error",
                duration_s=sum(float(report["duration"]) for report in partial.values()),
                phase="call" if "setup" in partial else "setup",
            )
            unfinished = RecordedTest(id=died, def_line=self.def_lines.get(died), attempt=attempt)
        interrupted_in = self._interrupted_in(died, cut)
        interrupt = None if interrupted_in is None or self.interrupt is None else self.interrupt[1]
        return AttemptRecord(
            started=self.started,
            exit_status=self.exit_status,
            collected=self.collected,
            tests=tests,
            collect_errors=tuple(self.collect_errors.values()),
            internal_errors=tuple(self.internal_errors),
            unfinished=unfinished,
            warnings=tuple(self.warnings),
            collect_reports=self.collect_reports,
            collected_ids=tuple(self.collected_ids),
            deselected=self.deselected,
            lost=tuple(dict.fromkeys(test for test in self.lost if test != died)),
            crashes=tuple(f"{worker}{how}" for worker, how in self.crashes.items()),
            uncaught=self.uncaught,
            conftest_error=self.conftest_error,
            interrupted_in=interrupted_in,
            interrupt=interrupt,
            forked=self.forked,
            interrupted_worker=self.interrupted_worker,
        )

    def _interrupted_in(self, died: str | None, cut: set[str]) -> RecordedTest | None:
        """The test whose own file a KeyboardInterrupt came through as it stopped the
        session, in its setup or call (never reported), as an error attempt."""
        if self.interrupt is None or died is not None:
            return None
        node, message, line = self.interrupt
        if node in self.phases and node not in cut:
            return None  # it had reported its call: the interrupt came in its teardown
        partial = self.phases.get(node, {})
        attempt = Attempt(
            outcome="error",
            duration_s=sum(float(report["duration"]) for report in partial.values()),
            message=f"{message} stopped pytest's session",
            line=line,
            phase="call" if "setup" in partial else "setup",
        )
        test = self._test(node) if node in self.phases else ""
        return RecordedTest(
            id=node,
            def_line=self.def_lines.get(node),
            attempt=attempt,
            test=test,
            round=_first(partial, "round"),
        )

    def _test(self, node: str) -> str:
        reports = [*self.tries.get(node, ()), (self.phases[node], self.parts.get(node, []))]
        found = (
            report.get("test") for phases, parts in reports for report in [*phases.values(), *parts]
        )
        return next((test for test in found if test), node)

    def _tests(self, died: str | None, cut: set[str]) -> list[RecordedTest]:
        """Each test's tries (pytest-rerunfailures' failed ones first), in pytest's order."""
        tests = []
        for node in self.order:
            test = self._test(node)
            tries = [*self.tries.get(node, ())]
            if node != died and node not in cut and (self.phases[node] or not tries):
                tries.append((self.phases[node], self.parts.get(node, [])))
            for phases, parts in tries:
                tests.append(
                    RecordedTest(
                        id=node,
                        def_line=self.def_lines.get(node),
                        attempt=_with_parts(_fold(phases), parts),
                        test=test,
                        round=_first(phases, "round"),
                    )
                )
        return tests


def collection_notes(record: AttemptRecord) -> tuple[str, ...]:
    """Why pytest's own summary line counts collection errors, or tests, differently.

    testgate counts a test file that failed to collect once. pytest under xdist counts
    what its workers reported: the same error once per worker unless its report is plain
    text (an ImportError's), as xdist merges only equal reports; ``collect_reports`` is
    pytest's count. Without xdist, pytest stops at a collection error, so the tests it
    collected never ran.
    """
    errors, reports = len(record.collect_errors), record.collect_reports
    notes = []
    if reports > errors:
        notes.append(
            f"pytest counts {reports} collection errors where testgate counts {errors}: each "
            "xdist worker reported the same ones (pytest without xdist counts them once)"
        )
    if errors and record.exit_status == 2 and record.collected and not record.tests:
        notes.append(
            f"pytest stopped at {counted(errors, 'collection error')}, so the "
            f"{counted(record.collected, 'test')} it collected never ran: fix the error, or "
            "add --continue-on-collection-errors to pytest-args to run them anyway"
        )
    return tuple(notes)


LOAD_TESTS = re.compile(rb"^def load_tests\s*\(", re.MULTILINE)
SCANNED_BYTES = 1024 * 1024  # a test file's head; a module-level hook is rarely past it


def unrun_loaders(root: Path, record: AttemptRecord) -> tuple[str, ...]:
    """A warning naming the collected test files that define ``load_tests``.

    unittest's ``load_tests`` protocol lets a test module add tests (more-itertools adds
    its doctests with ``DocTestSuite``; others generated suites): ``python -m unittest``
    runs them, pytest never calls the hook, and says nothing. The suite then looks whole
    with fewer tests than its own command runs.
    """
    files = dict.fromkeys(nodeid.split("::", 1)[0] for nodeid in record.collected_ids)
    found = []
    for name in files:
        try:
            with (root / name).open("rb") as handle:
                head = handle.read(SCANNED_BYTES)
        except OSError:  # a node id that is not a file of the project (a plugin's item)
            continue
        if LOAD_TESTS.search(head):
            found.append(name)
    if not found:
        return ()
    verb = "defines" if len(found) == 1 else "define"
    return (
        f"{', '.join(found)} {verb} load_tests, unittest's hook for adding tests (doctests, "
        "generated suites), which pytest never calls: the tests it adds did not run; make "
        "them pytest tests (doctests: --doctest-modules with their modules in pytest-args)",
    )


def _cut_short(phases: dict[str, dict[str, Any]]) -> bool:
    """A test whose setup passed but whose call never reported: an interrupt (Ctrl-C,
    ``pytest.exit``) stopped it mid-call, and pytest still ran its teardown."""
    setup = phases.get("setup")
    return setup is not None and setup["outcome"] == "passed" and "call" not in phases


def _first(phases: dict[str, dict[str, Any]], name: str) -> Any:
    """A field every phase report of a test carries alike."""
    return next(iter(phases.values()), {}).get(name)


# Skip reasons that mean a plugin or an import is missing, not a test's own choice:
# pytest.importorskip, and pytest's own skip of async tests without an async plugin.
MISSING_DEPENDENCY = re.compile(
    r"^could not import '|No module named |async def functions? (are|is) not natively"
    r"|no async plugin installed"
)
MISSING = "skipped because a plugin or dependency is missing: "  # such a skip's error message


def missing_dependency(attempt: Attempt) -> bool:
    """Whether the attempt is a skip for a missing plugin or module, made an error: the
    environment's, which a rerun in the same environment would only repeat."""
    return (attempt.message or "").startswith(MISSING)


PYTEST_WARNED = "pytest warned: "
XDIST_CRASH = "???"  # the phase of xdist's report for the test a worker died in


def _unknown_outcome(record: dict[str, Any]) -> dict[str, Any]:
    """A report whose outcome a plugin set to one testgate does not know is an error that
    says so: never a silent pass, never a lost run."""
    said = f": {record['message']}" if record.get("message") else ""
    message = (
        f"pytest reported the outcome {record['outcome']!r} for this test's "
        f"{record['when']}, which testgate does not know (set by a plugin?){said}"
    )
    return {**record, "outcome": "failed", "message": message, "crashed": True}


def _with_parts(attempt: Attempt, parts: list[dict[str, Any]]) -> Attempt:
    """The test, failed by its first failed subtest, or error by a failed report of a phase
    pytest does not have (a plugin's): the message, line and text are that report's.

    A test whose own outcome is an error, a skip or an xfail keeps it.
    """
    failed = [part for part in parts if part["outcome"] == "failed"]
    if not failed or attempt.outcome not in ("passed", "failed"):
        return attempt
    first = failed[0]
    name = first.get("subtest") or f"the {first['when']!r} report"
    more = f" (and {counted(len(failed) - 1, 'more failure')})" if len(failed) > 1 else ""
    stopped = "subtest" not in first or first.get("timed_out") or first.get("crashed")
    return structs.replace(
        attempt,
        outcome="error" if stopped else "failed",
        message=_cut(f"{name} {first.get('message') or 'failed'}{more}", MESSAGE_LIMIT),
        line=first.get("line"),
        phase="call",
        text=_cut(first.get("text"), TEXT_LIMIT),
        stdout=_cut(first.get("stdout"), TEXT_LIMIT),
        stderr=_cut(first.get("stderr"), TEXT_LIMIT),
    )


def _fold(phases: dict[str, dict[str, Any]]) -> Attempt:
    """One attempt from its phase reports, judged the way pytest judges them.

    Setup decides when it did not pass, otherwise the call does; a failed teardown is
    kept apart (``teardown_error``) and supplies the line and text when nothing else failed.
    """
    setup, call = phases.get("setup"), phases.get("call")
    phase: Phase
    phase, report = ("call", call) if call is not None else ("setup", setup or {})
    if setup is not None and setup["outcome"] != "passed":
        phase, report = "setup", setup
    failed = report.get("outcome") == "failed"
    teardown = phases.get("teardown")
    broken_teardown = teardown if teardown is not None and teardown["outcome"] == "failed" else {}
    source = report if failed else broken_teardown
    outcome, message = _outcome(phase, report), report.get("message") or report.get("wasxfail")
    if outcome == "skipped" and message and MISSING_DEPENDENCY.search(message):
        outcome, failed = "error", True  # a silent skip would hide tests that never ran
        message = f"{MISSING}{message}"
    teardown_error = broken_teardown.get("message", "teardown failed") if broken_teardown else None
    return Attempt(
        outcome=outcome,
        duration_s=sum(float(item["duration"]) for item in phases.values()),
        message=_cut(message, MESSAGE_LIMIT),
        line=source.get("line"),
        phase=phase if failed else ("teardown" if broken_teardown else None),
        worker=report.get("worker"),
        teardown_error=_cut(teardown_error, MESSAGE_LIMIT),
        text=_cut(source.get("text"), TEXT_LIMIT),
        stdout=_cut(source.get("stdout"), TEXT_LIMIT),
        stderr=_cut(source.get("stderr"), TEXT_LIMIT),
    )


def _cut(text: str | None, limit: int) -> str | None:
    return bounded(text, limit) if text else None


def _outcome(phase: str, report: dict[str, Any]) -> AttemptOutcome:
    outcome = report.get("outcome", "passed")
    if outcome == "failed":  # a test stopped by its time limit or a crash is an error
        stopped = report.get("timed_out") or report.get("crashed")
        return "failed" if phase == "call" and not stopped else "error"
    if "wasxfail" in report:
        return "xfailed" if outcome == "skipped" else "xpassed"
    return "skipped" if outcome == "skipped" else "passed"  # pytest's three outcomes


def describe_exit(code: int) -> str:
    """``exit 7``, or ``killed by signal SIGSEGV`` for a negative (POSIX) exit code."""
    if code >= 0:
        return f"exit {code}"
    try:
        return f"killed by signal {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def line_in_traceback(text: str | None, file: str) -> int | None:
    """The last ``FILE:LINE:`` location of ``file`` in a traceback's text."""
    if not text:
        return None
    prefix = file + ":"  # no pattern per file: a large report names thousands of them
    for line in reversed(text.split("\n")):
        if line.startswith(prefix):
            digits, colon, _ = line[len(prefix) :].partition(":")
            if colon and digits.isdecimal():
                return int(digits)
    return None
