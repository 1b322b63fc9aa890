"""Every run ends: hung tests stop at their time limit, and the run still reports them.

The hangs fixture has tests that hang in a call, in a fixture's setup and in its
teardown, with per-marker limits from its pyproject (unit 0.25 s, integration 0.5 s), a
test with its own ``@pytest.mark.timeout``, one that hangs only the first time (flaky),
and one after them all. It runs once, under two xdist workers, then its reruns alone
(``hangs_run`` in tests/conftest.py, which test_flaky_run reads too: its own test ids).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from runner import (
    coverage_data,
    entry,
    execute,
    interrupts,
    owned_dir,
    probe_cache,
    process_group,
    render,
)
from runner import run as run_module
from runner.cli import _command, main
from runner.environment import probe
from runner.errors import ConfigError, InfraError
from runner.github.commands import annotations_of
from runner.record import describe_exit
from runner.report import write_reports
from runner.results import (
    DiffCoverage,
    FileDiff,
    GateResult,
    GateStatus,
    RunInfo,
    RunResult,
    decode,
    encode,
)
from runner.services import lifecycle
from runner.services.spec import ServiceSpec, parse_specs
from runner.settings import load_settings
from tests.conftest import (
    Ran,
    copy_fixture,
    environment,
    fresh_plugin,
    gone,
    marker_line,
    run_in_process,
)

HANGS = "tests/test_hangs.py"


@pytest.fixture
def hangs(hangs_run: Ran) -> Ran:
    """The session's run of the hangs fixture (``hangs_run`` in tests/conftest.py)."""
    return hangs_run


def first(ran: Ran, name: str) -> dict[str, Any]:
    attempts: list[dict[str, Any]] = ran.test(f"{HANGS}::{name}")["attempts"]
    return attempts[0]


@pytest.mark.parametrize(
    ("name", "message", "phase", "marker"),
    [
        ("test_call_hangs", "timed out after 0.5 s (marker integration)", "call", "call-hang"),
        ("test_setup_hangs", "timed out after 0.25 s (marker unit)", "setup", "setup-hang"),
    ],
)
def test_a_hang_is_an_error_at_its_markers_limit_with_the_hanging_line(
    hangs: Ran, name: str, message: str, phase: str, marker: str
) -> None:
    test = hangs.test(f"{HANGS}::{name}")
    assert test["outcome"] == "error"
    assert [a["message"] for a in test["attempts"]] == [message, message]  # rerun, hangs again
    assert first(hangs, name)["phase"] == phase
    line = marker_line(hangs.project / HANGS, marker)
    assert f"{HANGS}:{line}: Failed" in first(hangs, name)["text"]
    assert f"{HANGS}:{test['line']}" in first(hangs, name)["text"]


def test_a_hang_in_teardown_is_the_tests_error(hangs: Ran) -> None:
    test = hangs.test(f"{HANGS}::test_teardown_hangs")
    assert test["outcome"] == "error"
    assert first(hangs, "test_teardown_hangs")["teardown_error"] == (
        "timed out after 0.25 s (marker unit)"
    )
    line = marker_line(hangs.project / HANGS, "teardown-hang")
    assert f"{HANGS}:{line}: Failed" in first(hangs, "test_teardown_hangs")["text"]


def test_the_strictest_marker_wins_and_a_tests_own_limit_wins_over_all(hangs: Ran) -> None:
    assert first(hangs, "test_strictest_marker_wins")["message"] == (
        "timed out after 0.25 s (marker unit)"
    )
    assert first(hangs, "test_own_marker_wins")["message"] == (
        "timed out after 0.3 s (its own timeout marker)"
    )


def test_a_test_that_times_out_once_is_flaky_and_the_run_goes_on(hangs: Ran) -> None:
    assert hangs.exit_code == 1
    assert hangs.test(f"{HANGS}::test_hangs_once")["outcome"] == "flaky"
    assert hangs.test(f"{HANGS}::test_after_the_hangs")["outcome"] == "passed"
    assert len([t for t in hangs.results()["tests"] if t["file"] == HANGS]) == 7
    assert "timed out after 0.5 s (marker integration)" in hangs.output
    junit = (hangs.reports / "junit.xml").read_text("utf-8")
    assert "timed out after 0.25 s (marker unit)" in junit


def test_a_process_a_test_left_running_is_killed_and_named(hangs: Ran) -> None:
    in_group, escaped = hangs.results()["run"]["warnings"]
    assert in_group.startswith("the tests left 1 processes running after pytest ended; testgate")
    assert in_group.endswith(" sleep 300")
    assert gone(int(in_group.rsplit(": ", 1)[1].split()[0]))
    assert escaped.startswith(
        "the tests left 1 processes running that had left pytest's process group (setsid) but "
        "carried its TESTGATE_RUN_MARKER; testgate killed them: "
    )
    assert escaped.endswith(" sleep 301")
    assert gone(int(escaped.rsplit(": ", 1)[1].split()[0]))


def settings_of(project: Path, tool: str, **flags: str | None) -> Any:
    (project / "pyproject.toml").write_text(f"[tool.testgate]\n{tool}\n", "utf-8")
    return load_settings(project=project, flags=flags, environ=environment())


def test_timeouts_come_from_pyproject_only_and_are_checked(tmp_path: Path) -> None:
    assert settings_of(tmp_path, "timeouts = {}").timeouts == ()
    found = settings_of(tmp_path, "timeouts = {unit = 1, slow = 30}\ntimeout = 0")
    assert found.timeouts == (("slow", 30.0), ("unit", 1.0))
    assert found.timeout == 0
    ignored = load_settings(
        project=tmp_path, flags={"timeouts": "unit=9"}, environ={"TESTGATE_TIMEOUTS": "unit=9"}
    )
    assert ignored.timeouts == (("slow", 30.0), ("unit", 1.0))
    for tool, words in [
        ("timeouts = 5", "must be a table of marker = seconds"),
        ('timeouts = {unit = "soon"}', "must be a number"),
        ("timeouts = {unit = 0}", "a timeout must be above 0"),
        ("timeout = -1", "or 0 for no limit"),
        ('timeouts = {"not a name" = 1}', "must be a table of marker = seconds"),
        ("timeout-run = 0", "above 0, or 'none'"),
    ]:
        with pytest.raises(ConfigError, match=words):
            settings_of(tmp_path, tool)


CANCEL = "tests/test_cancel.py"


def signal_when_hanging(pids: Path, state: Path, number: int) -> dict[str, Any]:
    """Once the hanging test has written its pids, note the services' pids, then signal us."""
    seen: dict[str, Any] = {}

    def watch() -> None:
        while not pids.exists():
            time.sleep(0.05)
        try:
            seen.update(json.loads(pids.read_text("utf-8")))
            services = json.loads(state.read_text("utf-8"))["services"]
            seen["services"] = [service["pid"] for service in services]
        finally:
            os.kill(os.getpid(), number)

    threading.Thread(target=watch, daemon=True).start()
    return seen


@pytest.fixture(scope="module", params=[("SIGINT", "0"), ("SIGTERM", "2")], ids=str)
def cancelled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Ran, dict[str, Any]]:
    """The cancel fixture with a local redis, signalled while its second test hangs:
    SIGINT without xdist, SIGTERM with two workers."""
    name, workers = request.param
    project = copy_fixture("cancel", tmp_path_factory.mktemp("cancel"))
    pids = project / "pids.json"
    state = project / ".testgate" / "run-services.json"
    seen = signal_when_hanging(pids, state, getattr(signal, name))
    ran = run_in_process(
        project,
        "--workers",
        workers,
        "--service",
        "redis",
        "--services-backend",
        "local",
        extra_env={"CANCEL_PIDS": str(pids)},
    )
    return ran, seen


def test_a_signal_ends_the_run_with_exit_3_and_reports_what_finished(
    cancelled: tuple[Ran, dict[str, Any]],
) -> None:
    ran, _ = cancelled
    assert ran.exit_code == 3, ran.output
    run = ran.results()["run"]
    assert run["interrupted"] in ("SIGINT", "SIGTERM")
    assert ran.test(f"{CANCEL}::test_a_finishes")["outcome"] == "passed"
    assert {f"{CANCEL}::test_b_hangs", f"{CANCEL}::test_c_never_reached"} <= set(run["not_run"])
    assert f"{CANCEL}::test_b_hangs" not in [test["id"] for test in ran.results()["tests"]]
    notice = f"INTERRUPTED by {run['interrupted']}"
    assert notice in ran.output
    assert notice in (ran.reports / "summary.md").read_text("utf-8")
    assert "test_a_finishes" in (ran.reports / "junit.xml").read_text("utf-8")
    assert ran.gate("line-coverage")["message"].startswith("not judged: the run was interrupted")


PARTIAL_GATES = ("line-coverage", "branch-coverage", "min-tests")


def test_an_interrupted_runs_partial_gates_say_not_judged_in_every_report(
    cancelled: tuple[Ran, dict[str, Any]],
) -> None:
    ran, _ = cancelled
    summary = (ran.reports / "summary.md").read_text("utf-8")
    for name in PARTIAL_GATES:
        gate = ran.gate(name)
        assert (gate["verdict"], gate["passed"]) == ("not judged", False)
        assert gate["message"].startswith("not judged: the run was interrupted")
        (row,) = [line for line in ran.output.splitlines() if line.startswith(f"{name} ")]
        assert row.endswith(" not judged")
        (cell,) = [line for line in summary.splitlines() if line.startswith(f"| {name} |")]
        assert "| not judged | not judged: the run was interrupted" in cell
        assert "FAIL" not in row + cell
    assert ran.gate("min-tests")["message"] == (
        "not judged: the run was interrupted, so not every test ran"
    )
    assert ran.gate("failed-tests")["verdict"] == "pass"  # what finished is still judged


def judged_diff(status: GateStatus, message: str) -> RunResult:
    """A run whose change has lines 3-4 uncovered, its diff-coverage gate as given."""
    info = RunInfo(
        started="2026-12-01T10:00:00+00:00", duration_s=1.0, suite_duration_s=1.0,
        commit="abc", python="3.11.7", platform="linux", variant="py3.11-linux",
        pytest_exit_code=2, interrupted="SIGTERM",
    )  # fmt: skip
    changed = FileDiff(
        path="lib/x.py", statements=2, covered_statements=0, missing_ranges=((3, 4),),
        branches=0, covered_branches=0, missing_branches=(),
    )  # fmt: skip
    diff = DiffCoverage(
        base="main", merge_base="abc", percent=0.0, line_percent=0.0, statements=2, branches=0,
        files=(changed,),
    )  # fmt: skip
    gate = GateResult(name="diff-coverage", threshold=100, actual=0.0, status=status,
                      message=message)  # fmt: skip
    return RunResult(run=info, tests=(), coverage=None, gates=(gate,), diff_coverage=diff)


def test_lines_a_partial_run_left_uncovered_are_not_annotated_as_uncovered() -> None:
    partial = judged_diff("not judged", "not judged: the run was interrupted")
    assert annotations_of(partial) == []
    assert "| diff-coverage | 100 % | 0.00 % | not judged |" in render.markdown(partial)
    (judged,) = annotations_of(judged_diff("fail", "0 % of 2 changed statements"))
    assert (judged.file, judged.line, judged.title) == ("lib/x.py", 3, "changed lines not covered")
    written = b"".join(encode(partial))  # results.json keeps the verdict
    assert decode(written).gates == partial.gates
    older = json.loads(written)  # one written before gates had a verdict
    del older["gates"][0]["verdict"]
    assert decode(json.dumps(older).encode()).gates == partial.gates


def test_a_signal_leaves_no_process_and_no_service_behind(
    cancelled: tuple[Ran, dict[str, Any]],
) -> None:
    ran, seen = cancelled
    assert process_group.members(seen["group"]) == ()
    # Without xdist, the test's parent is testgate itself: this very process.
    parents = [seen["parent"]] if seen["parent"] != os.getpid() else []
    for pid in [seen["test"], *parents, seen["daemon"], seen["escaped"], *seen["services"]]:
        assert gone(pid), pid
    (warning,) = ran.results()["run"]["warnings"]  # xdist's workers are not named
    assert warning.endswith(f": {seen['escaped']} sleep 302")
    assert not (ran.project / ".testgate" / "run-services.json").exists()
    assert "stopped 1 service" in ran.output


CRASH = "tests/test_crash.py"


def test_a_crashed_worker_loses_no_coverage_and_its_test_is_an_error(tmp_path: Path) -> None:
    """The issue's fixture: without remeasuring test_finished, h was uncovered. The worker
    that replaced the dead one erased the data gw1 had saved (test_b's and test_c's: 66.67 %)
    before each worker had a data file name of its own. A crashed xdist worker is an error
    of its own test only: the others pass."""
    ran = run_in_process(copy_fixture("worker_crash", tmp_path))
    assert ran.results()["coverage"]["line_percent"] == 100.0
    assert ran.gate("line-coverage")["passed"]
    assert ran.exit_code == 1  # test_crash itself fails the failed-tests gate
    crashed = ran.test(f"{CRASH}::test_crash")
    assert crashed["outcome"] == "error"
    first, rerun = (attempt["message"] for attempt in crashed["attempts"])
    assert re.fullmatch(r"the xdist worker gw[01] died \(exit 7\) while this test ran", first)
    assert rerun == "the pytest process died (exit 7) while this test ran"
    assert "test_crash: the pytest process died (exit 7)" in ran.output
    assert 'message="the pytest process died (exit 7)' in (ran.reports / "junit.xml").read_text(
        "utf-8"
    )
    assert ran.test(f"{CRASH}::test_b")["outcome"] == "passed"


def test_each_xdist_worker_gets_a_coverage_data_file_name_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Set when pytest imports the plugin in a worker (-p), before pytest-cov starts."""
    monkeypatch.setenv("COVERAGE_FILE", "/w/attempt-1/.coverage")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    module = fresh_plugin(monkeypatch, "_testgate_plugin_coverage_file")
    assert os.environ["COVERAGE_FILE"] == "/w/attempt-1/.coverage.gw2"
    module.worker_coverage_file(os.environ)  # named once, never twice
    assert os.environ["COVERAGE_FILE"] == "/w/attempt-1/.coverage.gw2"
    controller = {"COVERAGE_FILE": "/w/attempt-1/.coverage"}
    module.worker_coverage_file(controller)
    assert controller == {"COVERAGE_FILE": "/w/attempt-1/.coverage"}


def test_coverage_a_crash_took_is_incomplete_exit_3_never_a_gate_failure(tmp_path: Path) -> None:
    ran = run_in_process(copy_fixture("worker_crash", tmp_path), "--workers", "0", "--reruns", "0")
    assert ran.exit_code == 3
    incomplete = ran.results()["run"]["coverage_incomplete"]
    assert incomplete.startswith("coverage is incomplete: 2 tests ran on a process that died")
    assert ran.gate("line-coverage")["message"] == f"not judged: {incomplete}"
    assert f"problem: {incomplete}" in ran.output
    merged = run_in_process(
        ran.project, "testgate-reports", command="merge", reports="merged-reports"
    )
    assert merged.exit_code == 3
    assert merged.gate("line-coverage")["message"].startswith("not judged: ")
    assert merged.gate("line-coverage")["message"].endswith(incomplete)


def test_timeout_run_stops_the_run_reports_it_and_exits_3(tmp_path: Path) -> None:
    project = copy_fixture("cancel", tmp_path)
    ran = run_in_process(
        project,
        "--workers", "0", "--timeout-run", "2",
        extra_env={"CANCEL_PIDS": str(tmp_path / "pids.json")},
    )  # fmt: skip
    assert ran.exit_code == 3
    run = ran.results()["run"]
    assert run["interrupted"] == "timeout-run"
    assert run["problems"][0].startswith("the run was stopped at its deadline (timeout-run 2 s)")
    assert "INTERRUPTED stopped at its deadline (timeout-run)" in ran.output
    finished = {test["id"] for test in ran.results()["tests"]}
    assert f"{CANCEL}::test_b_hangs" not in finished


def test_flaky_detection_stops_inside_a_round_when_its_budget_is_spent(tmp_path: Path) -> None:
    project = copy_fixture("cancel", tmp_path)
    ran = run_in_process(
        project,
        "--workers", "0", "--time-budget", "2", "--timeout", "0",
        "--only", f"{CANCEL}::test_a_finishes", f"{CANCEL}::test_b_hangs",
        command="flaky",
        extra_env={"CANCEL_PIDS": str(tmp_path / "pids.json")},
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    detection = json.loads((ran.reports / "flaky.json").read_text("utf-8"))
    assert detection["stopped_by"] == "time-budget"
    assert f"{CANCEL}::test_b_hangs" in detection["undecided"]


def test_flaky_detection_that_reaches_timeout_run_is_interrupted(tmp_path: Path) -> None:
    """Its first round hangs (no per-test limit) until the job's deadline stops it."""
    project = copy_fixture("cancel", tmp_path)
    ran = run_in_process(
        project,
        "--workers", "0", "--timeout-run", "1", "--timeout", "0",
        "--only", f"{CANCEL}::test_c_never_reached",
        command="flaky",
    )  # fmt: skip
    assert ran.exit_code == 3
    detection = json.loads((ran.reports / "flaky.json").read_text("utf-8"))
    assert detection["stopped_by"] == "interrupted by timeout-run"
    assert detection["problems"] == ["flaky detection was interrupted by timeout-run"]


def signal_once_handled(number: int, *, after: float) -> threading.Thread:
    """Send ``number`` to this process once testgate handles it, ``after`` seconds later."""

    def send() -> None:
        while getattr(signal.getsignal(number), "__module__", "") != "runner.interrupts":
            time.sleep(0.02)
        time.sleep(after)
        os.kill(os.getpid(), number)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_signal_before_any_test_stops_the_services_wait_and_exits_3(tmp_path: Path) -> None:
    project = copy_fixture("cancel", tmp_path)
    waiting = project / ".testgate" / "run-services.json"  # recorded: its wait has begun

    returned = threading.Event()  # no signal after the run: it would reach a later test

    def send() -> None:  # not after a fixed time: asking a Docker engine first takes a while
        while not waiting.exists():
            if returned.wait(0.01):
                return
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        ran = run_in_process(
            project, "--service", "redis=redis://127.0.0.1:1/0", "--services-timeout", "60"
        )
    finally:
        returned.set()
        sender.join()
    assert ran.exit_code == 3
    assert "testgate: error: interrupted by SIGTERM before anything could be reported" in ran.output
    assert not (project / ".testgate" / "run-services.json").exists()
    assert not ran.reports.exists()  # nor the reports dir it made, nor the work dir in it


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ("call", probe.__code__),  # while the environment is probed
        ("return", owned_dir.scratch.__code__),  # as the work dir is made
        ("return", run_module._install.__code__),  # as the install ends, services awaited next
    ],
    ids=["probing", "work dir made", "install done"],
)
def test_a_signal_during_the_install_leaves_no_work_dir_and_no_reports_dir_it_made(
    tmp_path: Path, event: str, code: object
) -> None:
    """A cancel while the project's environment is installed and probed (before pytest),
    at any moment of it: exit 3, and nothing of the run is left: not its work dir
    (``.testgate-work-...``), nor the reports dir it made. A reports dir an earlier run
    wrote stays a reports dir. (A signal as the install returned fell between two clean-up
    scopes, and left both.)"""
    project = copy_fixture("passing", tmp_path)
    for earlier in (False, True):
        if earlier:
            (project / "testgate-reports").mkdir()
            (project / "testgate-reports" / "history.json.gz").write_bytes(b"")
        with signal_at(lambda frame, kind: kind == event and frame.f_code is code):
            ran = run_in_process(project)
        assert ran.exit_code == 3
        assert "interrupted by SIGTERM before anything could be reported" in ran.output
        if earlier:
            assert sorted(path.name for path in ran.reports.iterdir()) == [
                ".testgate-reports", "history.json.gz",
            ]  # fmt: skip
        else:
            assert not ran.reports.exists()


def services_signalled(project: Path, spec: ServiceSpec, timer: threading.Timer | None) -> None:
    """A run's services session, awaited, with ``timer``'s signal (if any) on its way."""
    with interrupts.handling_signals():
        if timer is not None:
            timer.start()
        with lifecycle.session(
            [spec], project=project, backend="local", timeout=60, environ=os.environ
        ) as starting:
            starting.wait()


def test_a_signal_at_any_moment_of_the_services_start_leaves_nothing(tmp_path: Path) -> None:
    """Services start in a thread while the project installs: a signal that lands at any
    moment of that start, even the first instant the thread runs, stops the thread and
    removes its state file. Swept over moments from the first instant on, with the
    interpreter switching threads as often as it can, so the earliest ones are met."""
    (spec,) = parse_specs(["redis=redis://127.0.0.1:1/0"])  # never answers: up keeps waiting
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for attempt in range(40):
            project = tmp_path / str(attempt)
            project.mkdir()
            before = set(threading.enumerate())
            timer = threading.Timer(attempt * 0.0005, os.kill, (os.getpid(), signal.SIGTERM))
            with pytest.raises(interrupts.Interrupted):
                services_signalled(project, spec, timer)
            timer.join()
            for thread in set(threading.enumerate()) - before:  # past its last line, or on
                thread.join(timeout=5)  # with the services still starting: never ending
            left = [thread for thread in set(threading.enumerate()) - before if thread.is_alive()]
            assert left == [], f"attempt {attempt}: the services thread still runs"
            assert not (project / ".testgate").exists(), f"attempt {attempt}: its state is left"
    finally:
        sys.setswitchinterval(switch)


@contextlib.contextmanager
def signal_at(moment: Callable[[FrameType, str], bool]) -> Iterator[None]:
    """SIGTERM to this process at the first profile event (a frame and its kind: ``call``,
    ``return``) that ``moment`` names while the block runs. Sent from a profile function:
    coverage traces with ``sys.settrace``, which this leaves alone."""

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if moment(frame, event):
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGTERM)

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)


def called_by(frame: FrameType, function: Callable[..., object]) -> bool:
    return frame.f_back is not None and frame.f_back.f_code is function.__code__


def test_a_signal_inside_the_services_threads_start_still_waits_for_that_thread(
    tmp_path: Path,
) -> None:
    """A signal that lands inside ``Thread.start`` itself, once the thread exists but before
    it has run a line: the run's clean-up must still await that thread, or the thread
    starts its services after the clean-up (a container or server that nothing stops once
    testgate exits). The signal comes as ``Thread.start`` begins to wait for the thread; a
    long switch interval keeps the new thread from running before it."""
    (spec,) = parse_specs(["redis=redis://127.0.0.1:1/0"])  # never answers: up keeps waiting
    before = set(threading.enumerate())
    switch = sys.getswitchinterval()
    sys.setswitchinterval(10)
    try:
        with (
            interrupts.handling_signals(),
            signal_at(
                lambda frame, event: (
                    event == "call"
                    and frame.f_code is threading.Event.wait.__code__
                    and called_by(frame, threading.Thread.start)
                )
            ),
            pytest.raises(interrupts.Interrupted),
        ):
            services_signalled(tmp_path, spec, None)
        unrun = [thread.name for thread in set(threading.enumerate()) - before if not thread.ident]
    finally:
        sys.setswitchinterval(switch)
    assert unrun == []  # each thread the session started ran (and ended) before it returned
    for thread in set(threading.enumerate()) - before:  # past its last line, briefly alive
        thread.join(timeout=5)
    assert not (tmp_path / ".testgate").exists()


def test_a_signal_as_pytests_group_starts_stops_that_group_and_never_raises(
    tmp_path: Path,
) -> None:
    """A signal that lands the moment pytest's process group exists, before testgate waits
    on it: pytest is stopped and the run goes on to its reports (``stopped`` names the
    signal), not cut short with pytest left running."""
    with (
        interrupts.handling_signals(),
        signal_at(
            lambda frame, event: event == "return" and frame.f_code is process_group.start.__code__
        ),
    ):
        completed = execute.run_pytest(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            cwd=tmp_path,
            environ=os.environ,
            record=tmp_path / "r.jsonl",
            coverage_file=tmp_path / ".coverage",
        )
    assert (completed.stopped, completed.leftovers) == ("SIGTERM", ())


def test_a_signal_as_a_probe_answer_is_kept_leaves_no_file_beside_it(tmp_path: Path) -> None:
    """The probe's answer is written beside its cache file, then renamed into place: a
    signal between the two still ends with the answer in place and nothing beside it."""
    answer: dict[str, object] = {
        "python": "/env/bin/python", "platform": "linux", "found": {"pytest": "9.0"},
        "early": [], "overlay": None, "added": [], "project": None,
    }  # fmt: skip
    with (
        interrupts.handling_signals(),
        signal_at(
            lambda frame, event: (
                event == "return"
                and frame.f_code is Path.write_text.__code__
                and called_by(frame, probe_cache.keep)
            )
        ),
        pytest.raises(interrupts.Interrupted),
    ):
        probe_cache.keep(tmp_path, "slot", "key-1", answer)
    assert [path.name for path in (tmp_path / "probes").iterdir()] == ["slot.json"]
    assert probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path) == answer


def test_a_second_signal_kills_a_group_that_ignores_the_first(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(30)"
    with interrupts.handling_signals():
        child = process_group.start([sys.executable, "-c", stubborn], cwd=tmp_path, env=os.environ)
        first = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        second = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        first.start()
        second.start()
        code, left, stopped = interrupts.wait(child, deadline=None)
        first.join()
        second.join()
    assert (code, left, stopped) == (-signal.SIGKILL, process_group.Leftovers(), "SIGTERM")


def test_an_exit_code_names_the_signal_that_ended_the_process() -> None:
    assert describe_exit(7) == "exit 7"
    assert describe_exit(-signal.SIGSEGV) == "killed by signal SIGSEGV"
    assert describe_exit(-99) == "killed by signal 99"  # no such signal here


def test_signals_are_left_alone_outside_the_main_thread() -> None:
    handlers: list[object] = []

    def command() -> None:
        with interrupts.handling_signals():
            handlers.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=command)
    thread.start()
    thread.join()
    assert handlers == [signal.getsignal(signal.SIGTERM)]


def test_a_command_started_under_nohup_keeps_ignoring_the_hang_up() -> None:
    """The action starts 'services up' to outlive its step (nohup where there is no setsid)."""
    saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.handling_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, saved)


def test_a_signal_as_the_run_writes_its_reports_exits_3_and_says_so(tmp_path: Path) -> None:
    """A cancel that lands after the last pytest process ended, as the reports are written:
    the reports are written whole, and the run, asked to stop, exits 3 and says why,
    rather than exit 0 as if nothing had come (a script's next step would run)."""
    project = copy_fixture("passing", tmp_path)
    with signal_at(lambda frame, event: event == "call" and frame.f_code is write_reports.__code__):
        ran = run_in_process(project, "--workers", "0")
    assert ran.exit_code == 3
    assert (
        "testgate: SIGTERM arrived as the command ended, after its work was done (what it "
        "wrote is whole, and it would have exited 0); exit 3, as interrupted"
    ) in ran.output
    assert ran.results()["totals"]["passed"] == 3
    assert (ran.reports / "junit.xml").is_file()


def test_a_signal_as_the_merge_writes_its_reports_leaves_no_mix_of_old_and_new(
    hangs: Ran, tmp_path: Path
) -> None:
    """merge writes coverage's reports, then results.json, junit.xml, durations.json and
    summary.md: a signal between them used to raise there, leaving the new coverage beside
    no results (or an earlier merge's). Now the merge ends whole and exits 3."""
    merged = tmp_path / "merged"
    with signal_at(lambda frame, event: event == "call" and frame.f_code is write_reports.__code__):
        ran = run_in_process(
            hangs.project, str(hangs.reports), command="merge", reports=str(merged)
        )
    assert ran.exit_code == 3
    assert "testgate: SIGTERM arrived as the command ended, after its work was done" in ran.output
    assert decode((merged / "results.json").read_bytes()).tests
    assert {"junit.xml", "coverage.xml", "durations.json", "summary.md"} <= {
        path.name for path in merged.iterdir()
    }


IMPORT_SIGNALLED = """
import os, signal, sys

class SignalOnImport:  # SIGTERM as Python imports testgate's command line
    def find_spec(self, name, path=None, target=None):
        if name == "runner.cli":
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["testgate", "services", "down"]
import runner.__main__
"""


def test_a_signal_while_python_imports_testgate_is_exit_3_not_death_by_signal(
    tmp_path: Path,
) -> None:
    """Importing the command line takes tenths of a second; a cancel then found the
    signals' defaults and killed the process (-15, nothing said; SIGINT: a traceback).
    ``runner.entry`` takes the signals first, for ``python -m runner`` and the console
    script alike."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_SIGNALLED],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert (
        "testgate: error: interrupted by SIGTERM before anything could be reported" in done.stderr
    )
    assert list(tmp_path.iterdir()) == []
    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text("utf-8"))[
        "project"
    ]["scripts"]
    assert scripts == {"testgate": "runner.entry:main"}


def test_a_signal_noted_before_testgate_handled_signals_ends_the_command_first(
    tmp_path: Path,
) -> None:
    ran = main(
        ["services", "down", "--state-file", str(tmp_path / "s.json")], noted=[signal.SIGINT]
    )
    assert ran == 3
    assert list(tmp_path.iterdir()) == []


def test_a_signal_as_a_command_returns_its_code_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The moment between a command's end and ``hold``: the signal still raises there."""
    with signal_at(lambda frame, event: event == "return" and frame.f_code is _command.__code__):
        code = main(["services", "down", "--state-file", str(tmp_path / "s.json")])
    assert code == 3
    assert (
        "testgate: SIGTERM arrived as the command ended, after its work was done (what it "
        "wrote is whole); exit 3, as interrupted"
    ) in capsys.readouterr().err


def test_the_entry_takes_the_signals_but_leaves_a_nohup_hang_up_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {number: signal.getsignal(number) for number in numbers}
    monkeypatch.setattr(sys, "argv", ["testgate", "--version"])
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with pytest.raises(SystemExit):
            entry.main()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert getattr(signal.getsignal(signal.SIGTERM), "__module__", "") == "runner.entry"
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def test_a_failure_after_pytest_leaves_no_work_dir_holding_the_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk cuts pytest's record short: reading it fails (exit 3, naming ENOSPC)
    after pytest ran. The run's work dir, what filled the disk, went with it only on the
    way to the reports; now it goes however the run ends. (Stood in for here by a failure
    of the step after the reruns.)"""
    project = copy_fixture("passing", tmp_path)

    def full(*args: object, **kwargs: object) -> set[str]:
        raise InfraError("the disk is full (ENOSPC)")

    monkeypatch.setattr(run_module, "remeasure", full)
    ran = run_in_process(project, "--workers", "0")
    assert ran.exit_code == 3
    assert "testgate: error: the disk is full (ENOSPC)" in ran.output
    assert not ran.reports.exists()  # it held only its marker and the work dir


SIGNALS_WHILE_COLLECTING = """
import os, signal, time

os.kill(os.getppid(), signal.SIGTERM)  # testgate, as pytest imports this conftest
time.sleep(30)
"""


def test_a_run_stopped_before_pytest_collected_its_tests_says_so(tmp_path: Path) -> None:
    """Stopped during collection, a run knows of no test: it said "0 tests never ran" and
    "the 0 tests that finished; 0 never ran", as if the suite were empty."""
    project = copy_fixture("passing", tmp_path)
    (project / "tests" / "conftest.py").write_text(SIGNALS_WHILE_COLLECTING, "utf-8")
    ran = run_in_process(project, "--workers", "0")
    assert ran.exit_code == 3
    assert ran.results()["run"]["problems"][0] == (
        "the run was interrupted by SIGTERM before pytest had collected its tests: no test "
        "ran, and how many never ran is not known"
    )
    assert "INTERRUPTED by SIGTERM: these reports hold no test; none had finished" in ran.output


@pytest.mark.parametrize("where", ["_combine_and_report", "scratch"])
def test_a_full_disk_as_coverage_is_combined_is_coverage_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """coverage.py writing the combined data or its XML into a full disk raised OSError out
    of the run: a traceback, exit 1 (a gate's code) and no report at all. It is the run's
    problem now (exit 3), and the tests' results stand (``CoverageNotReported``)."""
    data = tmp_path / ".coverage.gw0"
    data.write_bytes(b"")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = coverage_data if where == "_combine_and_report" else owned_dir
    monkeypatch.setattr(target, where, full)
    with pytest.raises(coverage_data.CoverageNotReported) as raised:
        coverage_data.combine_and_report(project=tmp_path, data_files=[data], reports_dir=tmp_path)
    assert raised.value.message == (
        f"coverage.py could not write the combined data or its reports in {tmp_path}: "
        "ENOSPC, the disk is full (No space left on device)"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [".coverage.gw0"]


CLAIMED_SCRATCH = owned_dir.claimed_scratch.__wrapped__  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("event", "code", "caller"),
    [
        ("call", probe.__code__, None),  # while the project installs
        ("return", owned_dir.claim.__code__, CLAIMED_SCRATCH),  # the reports dir claimed
        ("return", owned_dir.scratch.__code__, CLAIMED_SCRATCH),  # its work dir made
    ],
    ids=["probing", "claimed", "work dir made"],
)
def test_a_signal_before_the_first_flaky_round_leaves_no_work_dir(
    tmp_path: Path, event: str, code: object, caller: Any
) -> None:
    """As ``testgate run`` (above): ``testgate flaky`` cancelled while the project installs
    left its ``.testgate-work-...`` dir, and the reports dir it made; so did a signal
    between the claim of the reports dir, the work dir's making and the clean-up's start."""
    project = copy_fixture("passing", tmp_path)
    for earlier in (False, True):
        if earlier:
            (project / "testgate-reports").mkdir()
            (project / "testgate-reports" / "flaky.json").write_bytes(b"{}")
        with signal_at(
            lambda frame, kind: (
                kind == event
                and frame.f_code is code
                and (caller is None or called_by(frame, caller))
            )
        ):
            ran = run_in_process(project, command="flaky")
        assert ran.exit_code == 3
        assert "interrupted by SIGTERM before anything could be reported" in ran.output
        if earlier:  # an earlier detection's flaky.json is this one's to replace
            assert [path.name for path in ran.reports.iterdir()] == [".testgate-reports"]
        else:
            assert not ran.reports.exists()


def test_a_signal_as_the_process_ends_is_exit_3_then_the_signals_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``cli.main`` returns, Python's finalization puts back the signals' defaults: a
    cancel then killed a process whose work was done (-15). ``runner.entry`` notes one that
    lands as ``cli.main`` returns (exit 3), then ignores them for the last milliseconds."""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {number: signal.getsignal(number) for number in numbers}
    state = str(tmp_path / "s.json")
    monkeypatch.setattr(sys, "argv", ["testgate", "services", "down", "--state-file", state])
    try:
        with signal_at(lambda frame, event: event == "return" and frame.f_code is main.__code__):
            code = entry.main()
        assert [signal.getsignal(number) for number in numbers] == [signal.SIG_IGN] * 3
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert code == 3
    assert (
        "testgate: SIGTERM arrived as the command ended, after its work was done (what it "
        "wrote is whole, and it would have exited 0); exit 3, as interrupted"
    ) in capsys.readouterr().err


def test_the_entry_notes_the_signals_it_took_and_a_late_one_makes_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What ``runner.entry`` does around ``cli.main``, with a real signal: one that arrives
    is noted, not a death; noted once the command had ended, it makes the exit code 3 (and
    says so), unless the command was interrupted (3) and said so itself. (The test above
    sends its signal from a profile function, where coverage.py sees no line run.)"""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {number: signal.getsignal(number) for number in numbers}
    noted: list[int] = []
    try:
        assert entry.take_signals(noted) == list(numbers)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs in this thread, at its next instruction
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert noted == [signal.SIGTERM]
    assert (entry.finish(0, noted), entry.finish(3, noted), entry.finish(1, [])) == (3, 3, 1)
    assert capsys.readouterr().err.count("SIGTERM arrived as the command ended") == 1


def test_a_killed_runs_pytest_is_stopped_by_the_next_run(tmp_path: Path) -> None:
    """``kill -9`` of testgate leaves its pytest running (a group of its own): with a test
    that hangs, for ever. The next run finds the note beside the record in the work dir
    left behind, and kills what carries that run's marker once its testgate is gone; a
    note whose testgate still runs, or that cannot be read, kills nothing."""
    project = copy_fixture("passing", tmp_path)
    attempt = project / "testgate-reports" / ".testgate-work-killed" / "attempt-1"
    attempt.mkdir(parents=True)
    gone_pid = subprocess.Popen(["true"])  # a pid that has ended: the killed testgate
    gone_pid.wait()
    marker = process_group.marker()
    (attempt / process_group.STARTED).write_text(
        json.dumps({"testgate": gone_pid.pid, "marker": marker}), "utf-8"
    )
    live = attempt.parent / "attempt-2"
    live.mkdir()
    (live / process_group.STARTED).write_text(
        json.dumps({"testgate": os.getppid(), "marker": marker}), "utf-8"
    )  # a testgate that still runs: its processes are its own
    bad = attempt.parent / "attempt-3"
    bad.mkdir()
    (bad / process_group.STARTED).write_text("{", "utf-8")
    orphan = subprocess.Popen(
        ["sleep", "60"], env={**os.environ, process_group.MARKER_ENV: marker},
        start_new_session=True,
    )  # fmt: skip
    ran = run_in_process(project, "--workers", "0")
    assert orphan.wait(timeout=10) == -signal.SIGKILL
    assert (
        "testgate: warning: an earlier run was killed and its pytest went on; testgate "
        f"killed what it still ran: {orphan.pid} sleep 60"
    ) in ran.output
    assert ran.exit_code == 0
    assert not attempt.parent.exists()  # the work dir left behind goes, as it always did


RAISES_KEYBOARD_INTERRUPT = """
def test_stops_the_session():
    raise KeyboardInterrupt("from the test")  # marker: raised


def test_after_it():
    pass
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_test_that_raises_keyboard_interrupt_is_its_error_not_a_test_never_run(
    tmp_path: Path, workers: str
) -> None:
    """pytest stops its session at a KeyboardInterrupt a test raises (exit 2). The test
    that raised it ran: without xdist it was listed among the tests that never ran, and
    the problem blamed -x or pytest.exit(); under xdist its worker was said to have died.
    testgate sent no signal: the test is an error naming the interrupt, at its line."""
    project = copy_fixture("passing", tmp_path)
    path = project / "tests" / "test_interrupt.py"
    path.write_text(RAISES_KEYBOARD_INTERRUPT, "utf-8")
    ran = run_in_process(project, "--workers", workers, "--reruns", "0")
    assert ran.exit_code == 3
    run = ran.results()["run"]
    assert run["interrupted"] is None
    test_id = "tests/test_interrupt.py::test_stops_the_session"
    assert test_id not in run["not_run"]
    (attempt,) = ran.test(test_id)["attempts"]
    assert attempt["outcome"] == "error"
    if workers == "0":
        assert attempt["message"] == "KeyboardInterrupt: from the test stopped pytest's session"
        assert attempt["line"] == marker_line(path, "raised")
        assert run["problems"][0] == (
            f"KeyboardInterrupt: from the test, raised in {test_id}, stopped pytest before "
            "the suite finished (exit 2)"
        )
        assert run["problems"][1] == (
            "1 collected test never ran (exit 2): tests/test_interrupt.py::test_after_it; the "
            f"KeyboardInterrupt raised in {test_id} ended pytest's session before them"
        )
    else:
        assert re.fullmatch(
            r"the xdist worker gw[01] stopped on a KeyboardInterrupt while this test ran",
            attempt["message"],
        )
        worker = attempt["message"].split()[3]
        assert run["problems"][0] == (
            f"a KeyboardInterrupt in {test_id} (xdist worker {worker}) stopped pytest before "
            "the suite finished (exit 2)"
        )
        assert all("-x, --maxfail" not in problem for problem in run["problems"])


CLOSES_PYTESTS_OUTPUT = """
import os


def test_closes_stdout_and_stderr():
    os.close(1)
    os.close(2)


def test_after_it():
    pass
"""


def test_a_test_that_closes_pytests_output_is_named_as_what_ended_the_session(
    tmp_path: Path,
) -> None:
    """Under ``-s`` a test can close pytest's own stdout: pytest's terminal then fails
    (EBADF) as it reports the test, and the exception ends pytest from its sessionfinish,
    which the plugin had already recorded. testgate said pytest had "reported failed tests
    (exit 1) that testgate's record does not show" and blamed -x or pytest.exit() for the
    tests that never ran; the exception is the problem now, with what likely raised it."""
    project = copy_fixture("passing", tmp_path)
    (project / "tests" / "test_closes.py").write_text(CLOSES_PYTESTS_OUTPUT, "utf-8")
    ran = run_in_process(project, "--reruns", "0", "--pytest-args=-s -p no:randomly")
    assert ran.exit_code == 3
    problems = ran.results()["run"]["problems"]
    assert problems[0].startswith(
        "the pytest process ended (exit 1) on an exception pytest did not handle: OSError: "
        "[Errno 9] Bad file descriptor (raised at "
    )
    assert problems[0].endswith(
        "); a test may have closed pytest's own output (file descriptor 1 or 2, under -s)"
    )
    assert problems[1] == (
        "2 collected tests never ran (exit 1): tests/test_closes.py::test_closes_stdout_and_"
        "stderr, tests/test_closes.py::test_after_it; the exception pytest did not handle "
        "(the problem above) ended pytest's session before them"
    )


FORKS_INTO_PYTEST = """
import os
import sys


def test_forks():
    child = os.fork()
    if child == 0:
        sys.exit(0)  # the child's pytest takes it for this test's failure, and goes on
    os.waitpid(child, 0)


def test_after_it():
    pass
"""


def test_a_forked_child_that_returns_into_pytest_is_a_problem_not_counted(tmp_path: Path) -> None:
    """A test that forks, and whose child does not end with os._exit, leaves two pytest
    sessions writing one record: the child reported the test failed (SystemExit) and ran
    the rest of the suite again, pytest printed both sessions' summaries, and testgate
    passed the run without a word. The child's results are not counted, and the run says
    which test forked it (exit 3)."""
    project = copy_fixture("passing", tmp_path)
    (project / "tests" / "test_forks.py").write_text(FORKS_INTO_PYTEST, "utf-8")
    ran = run_in_process(project, "--reruns", "0", "--pytest-args=-p no:randomly")
    assert ran.exit_code == 3
    assert ran.test("tests/test_forks.py::test_forks")["outcome"] == "passed"
    assert ran.test("tests/test_forks.py::test_after_it")["outcome"] == "passed"
    (problem,) = ran.results()["run"]["problems"]
    assert re.fullmatch(
        r"a process forked in tests/test_forks\.py::test_forks went on running pytest's session "
        r"\(pid \d+\): its results, which pytest printed, are not counted; a forked child "
        r"that runs Python should end with os\._exit\(\)",
        problem,
    )


DIES_IN_TEARDOWN = """
import os

import pytest

from lib import f, g, h


@pytest.fixture
def dies_after():
    yield
    os._exit(0)


def test_covers_f_and_h():
    assert (f(), h()) == (1, 3)


def test_covers_g_then_dies(dies_after):
    assert g() == 2
"""


def test_a_worker_that_dies_after_its_tests_call_took_that_coverage_with_it(
    tmp_path: Path,
) -> None:
    """An xdist worker that died in a test's teardown (a fixture's os._exit, a session
    fixture's) lost what that test's call had measured: the test had run, but its coverage
    was counted as never lost, and the line gate failed at 83.33 %, blaming the suite
    (exit 1). It is incomplete coverage now, not judged (exit 3)."""
    project = copy_fixture("worker_crash", tmp_path)
    for path in (project / "tests").glob("test_*.py"):
        path.unlink()
    (project / "tests" / "test_dies.py").write_text(DIES_IN_TEARDOWN, "utf-8")
    ran = run_in_process(project, "--reruns", "0")
    assert ran.exit_code == 3
    assert ran.gate("line-coverage")["verdict"] == "not judged"
    assert ran.results()["run"]["coverage_incomplete"].startswith(
        "coverage is incomplete: 1 test ran on a process that died (gw"
    )
    assert ran.test("tests/test_dies.py::test_covers_g_then_dies")["outcome"] == "error"
