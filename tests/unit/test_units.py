"""The pure parts and the edges: the model, rendering, JUnit text, coverage report files."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import coverage
import jsonschema
import msgspec
import pytest
from coverage.exceptions import CoverageWarning
from junitparser import JUnitXml

from runner import child_env, execute, interrupts, junit, owned_dir
from runner.coverage_data import (
    CoverageNotReported,
    combine_and_report,
    in_project,
    misconfigured,
    read_summary,
    unmeasured_sources,
    worst_files,
)
from runner.environment import first_error
from runner.errors import ConfigError, InfraError
from runner.gates import evaluate
from runner.junit import classname, write_junit, xml_text
from runner.render import markdown, terminal
from runner.results import (
    Attempt,
    CoverageSummary,
    DiffCoverage,
    FileCoverage,
    FileDiff,
    GateResult,
    RunInfo,
    RunResult,
    TestResult,
    Totals,
)
from runner.settings import load_settings
from tests.conftest import SCHEMA, fresh_plugin


def failed(n: int) -> TestResult:
    attempt = Attempt(outcome="failed", duration_s=0.1, message=f"AssertionError: {n}|x", line=n)
    return TestResult(
        id=f"tests/t.py::test_{n}", file="tests/t.py", line=n, outcome="failed", attempts=(attempt,)
    )


def run_of(*tests: TestResult, problems: tuple[str, ...] = ()) -> RunResult:
    info = RunInfo(
        started="2026-11-21T10:00:00+00:00",
        duration_s=2.0,
        suite_duration_s=1.5,
        commit="abc",
        python="3.11.7",
        platform="linux",
        variant="py3.11.7-linux",
        pytest_exit_code=1,
        problems=problems,
    )
    coverage = CoverageSummary(
        line_percent=99.5,
        branch_percent=50.0,
        covered_lines=199,
        num_statements=200,
        covered_branches=1,
        num_branches=2,
        precision=1,
    )
    gate = GateResult.judged(
        name="failed-tests",
        threshold=0,
        actual=len(tests),
        passed=not tests,
        message="message | with pipe",
    )
    return RunResult(run=info, tests=tests, coverage=coverage, gates=(gate,))


def test_results_json_round_trips_and_validates() -> None:
    teardown = Attempt(
        outcome="passed",
        duration_s=0.2,
        teardown_error="RuntimeError: late",
        text="trace",
        stdout="out",
        stderr="err",
        phase="teardown",
        worker="gw0",
    )
    result = run_of(
        failed(1),
        TestResult(id="t.py::late", file="t.py", line=3, outcome="error", attempts=(teardown,)),
    )
    data = json.loads(json.dumps(result.to_json()))
    jsonschema.validate(data, json.loads(SCHEMA.read_text("utf-8")))
    assert RunResult.from_json(data) == result
    assert data["totals"] == {
        "tests": 2,
        "passed": 1,
        "failed": 1,
        "flaky": 0,
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
        "errors": 1,
        "quarantined": 0,
    }


def test_a_failed_call_with_a_failed_teardown_counts_as_pytest_counts_it() -> None:
    both = Attempt(outcome="failed", duration_s=0.1, teardown_error="late")
    setup = Attempt(outcome="error", duration_s=0.1, teardown_error="late")
    tests = (
        TestResult(id="a", file="a", line=1, outcome="failed", attempts=(both,)),
        TestResult(id="b", file="b", line=1, outcome="error", attempts=(setup,)),
    )
    totals = Totals.of(tests)
    assert (totals.tests, totals.failed, totals.errors, totals.passed) == (2, 1, 2, 0)
    late = Attempt(outcome="passed", duration_s=0.1, number=2, teardown_error="late")
    flaky = TestResult(id="c", file="c", line=1, outcome="flaky", attempts=(both, late))
    totals = Totals.of((*tests, flaky))  # flaky counts once, as such
    assert (totals.tests, totals.flaky, totals.errors, totals.passed) == (3, 1, 2, 0)


def test_long_failure_lists_are_cut_and_say_so() -> None:
    result = run_of(*(failed(n) for n in range(1, 23)))
    text = terminal(result, reports_dir="out")
    assert "... and 2 more in results.json" in text
    assert text.count("FAILED tests/t.py:") == 20
    summary = markdown(result)
    assert "2 more failed tests are in results.json." in summary
    assert "AssertionError: 1\\|x" in summary  # a pipe cannot break the table
    assert "| failed-tests | 0 | 22 | **FAIL** | message \\| with pipe |" in summary


def test_long_flaky_lists_are_cut_and_say_so() -> None:
    tests = [
        TestResult(
            id=f"t.py::test_{n}",
            file="t.py",
            line=n,
            outcome="flaky",
            flaky_kind="nondeterministic",
            note="failed 1 of 2 attempts",
            attempts=(
                Attempt(outcome="failed", duration_s=0.1),
                Attempt(outcome="passed", duration_s=0.1, number=2, kind="rerun"),
            ),
        )
        for n in range(1, 24)
    ]
    result = run_of(*tests)
    summary = markdown(result)
    assert (
        "| `t.py::test_1` | `t.py:1` | flaky (nondeterministic) | failed 1 of 2 attempts |"
        in summary
    )
    assert "3 more are in results.json." in summary
    assert terminal(result, reports_dir="out").count("FLAKY (nondeterministic)") == 20


def test_long_changed_file_lists_are_cut_and_say_so() -> None:
    files = tuple(
        FileDiff(path=f"pkg/m{n}.py", statements=2, covered_statements=1,
                 missing_ranges=((3, 4), (9, 9)), branches=0, covered_branches=0,
                 missing_branches=())
        for n in range(22)
    )  # fmt: skip
    diff = DiffCoverage(base="main", merge_base="abc", percent=50.0, line_percent=50.0,
                        statements=44, branches=0, files=files)  # fmt: skip
    result = msgspec.structs.replace(run_of(), diff_coverage=diff)
    summary = markdown(result)
    assert "### Coverage of the change since `main`: 50.00 %" in summary
    assert "| `pkg/m0.py` | 2 | 1 | 0 | 0 | 3-4, 9 |" in summary
    assert "2 more files are in results.json." in summary


def test_problems_are_shown_and_the_verdict_is_failed() -> None:
    result = run_of(problems=("pytest was interrupted",))
    assert "problem: pytest was interrupted" in terminal(result, reports_dir="out")
    assert "testgate FAILED" in terminal(result, reports_dir="out")
    assert "### Problems\n\n- pytest was interrupted" in markdown(result)
    assert "line **99.50 %** (199/200 statements)" in markdown(result)


def test_junit_text_is_always_valid_xml(tmp_path: Path) -> None:
    hostile = "ansi \x1b[31mred\x1b[0m nul \x00 surrogate \udc80 end"
    assert xml_text(hostile) == "ansi #x1B[31mred#x1B[0m nul #x00 surrogate #xDC80 end"
    attempt = Attempt(outcome="failed", duration_s=0.1, message=hostile, text=hostile)
    test = TestResult(
        id="tests/x.py", file="tests/x.py", line=None, outcome="failed", attempts=(attempt,)
    )
    write_junit(run_of(test), tmp_path / "junit.xml")
    (case,) = next(iter(JUnitXml.fromfile(str(tmp_path / "junit.xml"))))
    assert case._elem.get("line") is None
    assert case.result[0].type == "failure"  # no exception name in the message
    assert classname("tests/x.py") == "tests.x"
    assert classname("tests/x.py::TestA::test_b[1]") == "tests.x.TestA"
    assert 'name="tests/x.py"' in junit.testcase_xml(test)


def test_the_reports_are_what_coverage_py_writes_for_the_combined_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The XML and JSON reports share each file's parse: the same bytes as coverage.py's
    own reports of the combined data, timestamps aside; a measured file that is not Python
    (a template) is left out of both, as coverage.py leaves it."""
    project = tmp_path / "p"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("", "utf-8")
    (project / "pkg" / "a.py").write_text(
        "def sign(x):\n    if x < 0:\n        return -1\n    return 1\n", "utf-8"
    )
    (project / "pkg" / "b.py").write_text("def never():\n    return 2\n", "utf-8")
    # a template compiled to Python under its own name (as Jinja does): measured, not Python
    (project / "pkg" / "page.html").write_text("<p>{{ name }}</p>\n", "utf-8")
    (project / "main.py").write_text(
        "from pathlib import Path\nfrom pkg import a, b\nprint(a.sign(3))\n"
        "exec(compile('name = 1\\n', str(Path('pkg/page.html').resolve()), 'exec'))\n",
        "utf-8",
    )
    (project / ".coveragerc").write_text("[run]\nbranch = true\nsource = pkg\n", "utf-8")
    own = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}
    subprocess.run(  # its data file its own: never the COVERAGE_FILE of a run measuring this one
        [sys.executable, "-m", "coverage", "run", "--parallel-mode",
         f"--data-file={project / '.coverage'}", "main.py"],
        cwd=project, check=True, capture_output=True, env=own,
    )  # fmt: skip
    (data,) = project.glob(".coverage.*")
    reports = tmp_path / "reports"
    reports.mkdir()
    combine_and_report(project=project, data_files=[data], reports_dir=reports)
    monkeypatch.chdir(project)  # coverage.py's file names are relative to it
    cov = coverage.Coverage(data_file=str(reports / ".coverage"), config_file=".coveragerc")
    cov.load()
    cov.xml_report(outfile=str(tmp_path / "own.xml"))
    cov.json_report(outfile=str(tmp_path / "own.json"))

    def xml(path: Path) -> str:
        return re.sub(r' timestamp="\d+"', "", path.read_text("utf-8"))

    def report(path: Path) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(path.read_text("utf-8"))
        del found["meta"]["timestamp"]
        return found

    assert xml(reports / "coverage.xml") == xml(tmp_path / "own.xml")
    assert report(reports / "coverage.json") == report(tmp_path / "own.json")
    assert sorted(report(reports / "coverage.json")["files"]) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py",
    ]  # fmt: skip


def test_a_corrupt_coverage_data_file_is_an_infrastructure_error(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    data = tmp_path / ".coverage.worker"
    data.write_bytes(b"not a database")
    unreadable = r"could not read the data files .*\.coverage\.worker: No usable data"
    with (
        pytest.warns(CoverageWarning, match="Couldn't use data file .*not a database"),
        pytest.raises(InfraError, match=unreadable),
    ):
        combine_and_report(project=project, data_files=[data], reports_dir=project)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{", "Expecting property name"),
        ('{"totals": {}}', "no 'totals' and 'files' tables"),
        ('{"totals": {}, "files": {}}', "percent_statements_covered"),
    ],
)
def test_a_malformed_coverage_json_is_named(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "coverage.json"
    path.write_text(content, "utf-8")
    with pytest.raises(
        InfraError, match=f"coverage.json is not a readable coverage.py JSON report.*{reason}"
    ):
        read_summary(path, precision=0)
    with pytest.raises(InfraError, match=r"coverage.json is not a readable.*No such file"):
        read_summary(tmp_path / "missing" / "coverage.json", precision=0)


def test_an_oversized_coverage_json_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "coverage.json"
    path.write_text('{"totals": {}}', "utf-8")
    monkeypatch.setattr("runner.coverage_data.JSON_LIMIT_BYTES", 4)
    with pytest.raises(InfraError, match="is larger than 4 bytes; not read"):
        read_summary(path, precision=0)


def test_a_command_that_cannot_start_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="could not start /nonexistent/uv"):
        execute.run_pytest(
            ["/nonexistent/uv", "run"],
            cwd=tmp_path,
            environ={},
            record=tmp_path / "r.jsonl",
            coverage_file=tmp_path / ".coverage",
        )


def test_secrets_and_outer_run_variables_never_reach_the_tests() -> None:
    environ = {
        "PATH": "/bin",
        "SONAR_TOKEN": "s",
        "GITHUB_TOKEN": "g",
        "INPUT_SONAR-TOKEN": "i",
        "COV_CORE_SOURCE": "x",
        "COVERAGE_PROCESS_START": "x",
        "PYTEST_XDIST_WORKER": "gw0",
        "VIRTUAL_ENV": "/v",
        "HOME": "/root",
    }
    assert child_env.child_environment(environ, EXTRA="1") == {
        "PATH": "/bin",
        "HOME": "/root",
        "EXTRA": "1",
    }


def test_python_dash_m_runner_is_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["testgate", "--version"])
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {number: signal.getsignal(number) for number in numbers}
    try:  # runner.entry takes the signals for the rest of the process: this one's, here
        with pytest.raises(SystemExit) as ended:
            runpy.run_module("runner", run_name="__main__")
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert ended.value.code == 0
    assert capsys.readouterr().out == "testgate 0.1.0\n"


def test_the_plugin_file_imports_cleanly_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin is loaded by file in the project's pytest; load a fresh copy the same way."""
    module = fresh_plugin(monkeypatch, "_testgate_plugin_fresh")
    assert module.RECORD_ENV == execute.RECORD_ENV
    assert module._clean("x" * 10, 4) == "xxxx\n[... 6 characters cut by testgate]"


@pytest.mark.parametrize(
    ("afterwards", "said"),
    [
        ("gone", r"No source for code: .*gone\.py'\. A file measured during the run is gone"),
        ("not python", r"Couldn't parse .*gone\.py"),
    ],
)
def test_a_measured_file_that_cannot_be_reported_is_named_not_a_crash(
    tmp_path: Path, afterwards: str, said: str
) -> None:
    """The tests stand (runner.run reports them, coverage not judged): CoverageNotReported."""
    module = tmp_path / "gone.py"
    module.write_text("def f(x):\n    if x:\n        return 1\n    return 2\n\nf(1)\n", "utf-8")
    data = tmp_path / ".coverage.run"
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}", str(module)],
        cwd=tmp_path,
        check=True,
    )
    if afterwards == "gone":
        module.unlink()
    else:
        module.write_text("def f(x:\n", "utf-8")
    reports = tmp_path / "reports"
    reports.mkdir()
    with pytest.raises(CoverageNotReported, match=f"coverage.py could not report the data: {said}"):
        combine_and_report(project=tmp_path, data_files=[data], reports_dir=reports)


def test_the_least_covered_files_are_ordered_by_the_numbers_shown() -> None:
    def entry(line: float, branch: float, combined: float) -> dict[str, Any]:
        summary = {"percent_statements_covered": line, "percent_branches_covered": branch}
        return {"summary": {**summary, "percent_covered": combined}}

    files = {"a.py": entry(90, 10, 80), "b.py": entry(50, 100, 85), "c.py": entry(100, 100, 100)}
    assert worst_files(files) == (
        FileCoverage(path="b.py", line_percent=50.0, branch_percent=100.0),
        FileCoverage(path="a.py", line_percent=90.0, branch_percent=10.0),
    )


def test_a_reports_dir_is_released_only_while_it_holds_nothing_but_the_marker(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    owned_dir.claim(reports)
    (reports / "junit.xml").write_text("<testsuites/>", "utf-8")
    owned_dir.release(reports)  # a report in it: it stays, as it is
    assert sorted(path.name for path in reports.iterdir()) == [owned_dir.MARKER, "junit.xml"]
    (reports / "junit.xml").unlink()
    owned_dir.release(reports)
    assert not reports.exists()
    owned_dir.release(reports)  # gone already: nothing to do


def test_a_failed_uv_is_told_by_its_first_complaint() -> None:
    resolver = "Using CPython 3.11\n  \u00d7 No solution found when resolving dependencies:\n"
    assert first_error(resolver) == "\u00d7 No solution found when resolving dependencies:"
    assert first_error("warning: x\nerror: Group `y` is not defined\n") == (
        "error: Group `y` is not defined"
    )
    assert first_error("\n  something else went wrong\n") == "something else went wrong"
    assert first_error("") == ""
    assert first_error("error: " + "x" * 400) == "error: " + "x" * 292 + "\u2026"


def test_coverage_pys_total_is_statements_and_branches_together() -> None:
    """The number coverage.py's fail_under judges (``Numbers.pc_covered``)."""
    from coverage.results import Numbers  # noqa: PLC0415

    numbers = Numbers(n_statements=14, n_missing=2, n_branches=6, n_missing_branches=1)
    summary = CoverageSummary(
        line_percent=85.71, branch_percent=83.33, covered_lines=12, num_statements=14,
        covered_branches=5, num_branches=6,
    )  # fmt: skip
    assert summary.total_percent == numbers.pc_covered == 85.0
    nothing = CoverageSummary(
        line_percent=100.0, branch_percent=100.0, covered_lines=0, num_statements=0,
        covered_branches=0, num_branches=0,
    )  # fmt: skip
    assert nothing.total_percent == Numbers().pc_covered == 100.0


def test_a_source_package_under_which_nothing_was_measured_is_named(tmp_path: Path) -> None:
    """coverage.py's module-not-imported, read from the combined data: an entry that names
    no directory is a package (dotted, or a module), found on a measured file's path."""
    from coverage import CoverageData  # noqa: PLC0415

    (tmp_path / "pyproject.toml").write_text(
        '[tool.coverage.run]\nsource = ["pkg.sub", "mod", "gone", "folder", "mod"]\n'
        'source_pkgs = ["extra", "pkg.other"]\n',
        "utf-8",
    )
    (tmp_path / "folder").mkdir()  # a directory: coverage.py's own concern, not a package
    data_file = tmp_path / ".coverage"
    assert unmeasured_sources(tmp_path, data_file) == ()  # nothing written: nothing to say
    data = CoverageData(str(data_file))
    data.add_lines(
        {
            str(tmp_path / "pkg" / "sub" / "x.py"): [1],
            str(tmp_path / "mod.py"): [1],
            "/elsewhere/site-packages/extra/__init__.py": [1],
            str(tmp_path / "pkg" / "others.py"): [1],
        }
    )
    data.write()
    assert unmeasured_sources(tmp_path, data_file) == (
        ("source", "gone"),
        ("source_pkgs", "pkg.other"),
    )
    # neither is in the project: wrong whatever ran, pytest's arguments or not
    for chosen in (False, True):
        message, judged = misconfigured(tmp_path, data_file, chosen=chosen)
        assert judged
        assert message is not None
        assert message.startswith(
            "[tool.coverage.run] source 'gone', source_pkgs 'pkg.other' names nothing in the "
            "project: no folder or module of that name is in it"
        )
    # a package of the project's own that no test imported: untrue coverage, unless
    # pytest's arguments chose some of the tests
    (tmp_path / "src" / "gone").mkdir(parents=True)
    (tmp_path / "src" / "pkg").mkdir()
    (tmp_path / "src" / "pkg" / "other.py").write_text("", "utf-8")
    (tmp_path / ".venv" / "gone").mkdir(parents=True)  # an environment's copy: not the project's
    own = "[tool.coverage.run] source 'gone', source_pkgs 'pkg.other' measured nothing: no test "
    message, judged = misconfigured(tmp_path, data_file, chosen=False)
    assert (judged, message) == (
        True,
        f"{own}imported it, so none of its code counts in any coverage figure (coverage.py: "
        "module-not-imported). Test it, or remove the entry",
    )
    message, judged = misconfigured(tmp_path, data_file, chosen=True)
    assert not judged
    assert message is not None
    assert message.endswith("; pytest's arguments chose some of the tests: run them all")
    assert not in_project(tmp_path, "absent.name")
    assert misconfigured(tmp_path, tmp_path / "no-data", chosen=False) == (None, False)


def test_data_with_no_branch_is_no_branch_coverage_not_100(tmp_path: Path) -> None:
    """None of the measured code ran: coverage.py's data has lines only, and its report no
    branch figures. Before, the branch gate read that as 100 % and passed."""
    project = tmp_path / "p"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text(
        "def sign(x):\n    if x < 0:\n        return -1\n    return 1\n", "utf-8"
    )
    (project / "main.py").write_text("print('pkg never imported')\n", "utf-8")
    (project / ".coveragerc").write_text("[run]\nbranch = true\nsource = pkg\n", "utf-8")
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    own = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--parallel-mode",
         f"--data-file={project / '.coverage'}", "main.py"],
        cwd=project, check=True, capture_output=True, env=own,
    )  # fmt: skip
    reports = tmp_path / "reports"
    reports.mkdir()
    coverage = combine_and_report(
        project=project, data_files=list(project.glob(".coverage.*")), reports_dir=reports
    )
    assert coverage is not None
    assert (coverage.line_percent, coverage.branch_data) == (0.0, False)
    settings = load_settings(project=project, flags={}, environ={})
    verdicts = {
        gate.name: gate
        for gate in evaluate(settings=settings, tests=(), coverage=coverage, suite_duration_s=0)
    }
    branch = verdicts["branch-coverage"]
    assert (branch.actual, branch.status) == (None, "fail")
    assert branch.message == (
        "no branch data: none of the 4 statements measured ran, so coverage.py measured no "
        "branch (it reports none, not 100 %)"
    )
    info = RunInfo(started="2026-11-21T10:00:00+00:00", duration_s=1.0, suite_duration_s=1.0)
    shown = terminal(
        RunResult(run=info, tests=(), coverage=coverage, gates=tuple(verdicts.values())),
        reports_dir="r",
    )
    assert "coverage: line 0.00 %, branch n/a" in shown
    assert re.search(r"^branch-coverage +100 % +n/a +FAIL$", shown, re.M)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_report_is_written_with_the_mode_the_umask_gives(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """As coverage.py's own reports are: not 0600 whatever the umask (tempfile's mode), which
    kept every report from the other users of the machine (a later step's, a container's)."""
    before = os.umask(umask)
    try:
        owned_dir.write_text(tmp_path / "summary.md", "# testgate\n")
    finally:
        os.umask(before)
    assert (tmp_path / "summary.md").stat().st_mode & 0o777 == mode
    assert [path.name for path in tmp_path.iterdir()] == ["summary.md"]  # no temporary left


def test_a_report_whose_folder_is_gone_is_named_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"could not write .*gone/summary\.md: .*ENOENT"):
        owned_dir.write_text(tmp_path / "gone" / "summary.md", "# testgate\n")


def test_a_reports_dir_that_cannot_be_claimed_gets_no_scratch_dir(tmp_path: Path) -> None:
    """``claimed_scratch`` on a reports dir that is a link: refused, and nothing made in the
    dir the link names, nor a clean-up of a scratch dir that was never made."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "reports").symlink_to(elsewhere)
    with (
        pytest.raises(ConfigError, match="is a symbolic link"),
        owned_dir.claimed_scratch(tmp_path / "reports", fresh=(), abandon=(ConfigError,)),
    ):
        pass
    assert list(elsewhere.iterdir()) == []


def test_only_a_bad_file_descriptor_is_said_to_be_a_closed_output() -> None:
    from runner.attempts import _closed_output  # noqa: PLC0415  (a private helper)

    assert "closed pytest's own output" in _closed_output("OSError: [Errno 9] Bad file descriptor")
    assert _closed_output("AttributeError: 'Config' object has no attribute 'cache'") == ""


def test_a_wait_asks_until_told_no_or_its_time_is_up() -> None:
    """``down`` waits so for a background ``up`` it stopped: whether that ``up`` is gone at
    the first question or later, the same lines run (before, the suite's coverage of the
    wait's loop depended on how fast the stopped process went)."""
    answers = iter([True, True, False])
    assert interrupts.wait_while(lambda: next(answers), seconds=30) is True
    assert next(answers, "asked no more") == "asked no more"
    assert interrupts.wait_while(lambda: False, seconds=30) is True
    assert interrupts.wait_while(lambda: True, seconds=0) is False


def test_a_stopped_command_meets_its_stop_where_signals_raise() -> None:
    """A services wait that its thread ended because of a signal raises the signal's
    ``Interrupted``, not the thread's "never became ready: testgate was interrupted" (seen
    once in CI from test_a_signal_at_any_moment_of_the_services_start_leaves_nothing);
    once signals no longer raise (``hold``), nothing does."""
    with interrupts.handling_signals():
        interrupts.check()  # not stopped: nothing
        interrupts.stop("SIGTERM")
        with pytest.raises(interrupts.Interrupted, match="SIGTERM"):
            interrupts.check()
        interrupts.hold()
        interrupts.check()
