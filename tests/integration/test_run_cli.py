"""``testgate run`` end to end on small real projects: options, gates, every failure mode.

Each test builds (or copies) a uv project, runs the real CLI in this process so that
coverage sees testgate's code, and checks what a user would see: the exit code, the
printed table and messages, and the reports.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.coverage_data import CoverageNotReported, package_paths, project_plugins
from runner.gates import max_duration
from tests.conftest import (
    Ran,
    copy_fixture,
    environment,
    marker_line,
    once_per_session,
    run_in_process,
    summary_counts,
)

RunCli = Callable[..., Ran]

LIBRARY = """
def half(n):
    if n % 2:
        return None
    return n // 2
"""
TESTS = """
from lib import half

def test_even():
    assert half(4) == 2
"""


def make_project(
    root: Path,
    files: dict[str, str],
    *,
    dev: str = '"pytest", "pytest-cov"',
    tool: str = "",
) -> Path:
    """A uv project (not a package) with the given files, importable from its root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "sample"
            version = "0"
            requires-python = ">=3.11"
            dependencies = []

            [dependency-groups]
            dev = [{dev}]

            [tool.uv]
            package = false

            [tool.pytest.ini_options]
            pythonpath = ["."]

            [tool.coverage.run]
            source = ["lib"]
            """
        )
        + tool,
        "utf-8",
    )
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), "utf-8")
    return root


def sample(tmp_path: Path, tests: str = TESTS, **kwargs: str) -> Path:
    return make_project(
        tmp_path / "sample", {"lib.py": LIBRARY, "tests/test_lib.py": tests}, **kwargs
    )


def test_a_fully_covered_passing_suite_exits_zero_and_prints_the_table(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # The fixture does not list pytest-xdist: testgate adds it itself (uv run --with).
    ran = run_cli(copy_fixture("passing", tmp_path), "--workers", "2")
    assert ran.exit_code == 0, ran.output
    assert "testgate: 3 tests: 3 passed in" in ran.output
    assert "coverage: line 100.00 %, branch 100.00 %" in ran.output
    table = [
        line.split() for line in ran.output.splitlines() if line.startswith(("gate ", "line-cov"))
    ]
    assert table == [
        ["gate", "threshold", "actual", "verdict"],
        ["line-coverage", "100", "%", "100.00", "%", "pass"],
    ]
    assert f"testgate passed; reports in {ran.reports}/" in ran.output
    assert "created: 2 workers" in ran.output or "2 workers [3 items]" in ran.output
    assert ran.results()["passed"] is True
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "✅ testgate passed" in summary
    assert "least covered file" not in summary  # every file is fully covered
    slowest = summary.split("### Slowest tests\n\n| test | seconds |\n| --- | --- |\n")[1]
    assert len(slowest.strip().splitlines()) == 3
    assert "| `tests/test_calc.py::test_" in slowest


def test_the_workers_testgate_decides_win_over_the_projects_and_a_plugins_n(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """``-n 2`` in the project's addopts, and pytest-enabler, which adds ``-n auto`` where
    xdist is installed (after pytest-cov chose its mode): testgate's decision runs. Before,
    a serial run started workers anyway, and pytest-cov failed in xdist's controller."""
    flaky_once = (
        "import os, pathlib\n\nfrom lib import double\n\n\n"
        "def test_double():\n    assert double(2) == 4\n\n\n"
        "def test_once():\n"
        "    marker = pathlib.Path(os.environ['MARKER'])\n"
        "    if not marker.exists():\n        marker.write_text('x')\n        assert False\n"
    )
    project = make_project(
        tmp_path / "enabled",
        {"lib.py": "def double(x):\n    return 2 * x\n", "tests/test_lib.py": flaky_once},
        dev='"pytest", "pytest-cov", "pytest-xdist", "pytest-enabler"',
    )
    text = (project / "pyproject.toml").read_text("utf-8")
    text = text.replace('pythonpath = ["."]', 'pythonpath = ["."]\naddopts = "-n 2"')
    (project / "pyproject.toml").write_text(text, "utf-8")
    marker = tmp_path / "marker"
    ran = run_cli(project, "--max-flaky", "1", env=environment(MARKER=str(marker)))
    assert ran.exit_code == 0, ran.output
    assert "testgate: no xdist:" in ran.output
    assert "created:" not in ran.output
    assert "INTERNALERROR" not in ran.output
    results = ran.results()
    assert results["run"]["workers"] == 0
    attempts = [attempt for test in results["tests"] for attempt in test["attempts"]]
    assert {attempt["worker"] for attempt in attempts} == {None}
    assert ran.test("tests/test_lib.py::test_once")["outcome"] == "flaky"  # its rerun, serial
    # The marker stays: under workers test_once passes at once, as no rerun is needed to
    # show whose -n starts them (the serial rerun of a flake the run above shows).
    ran = run_cli(project, "--workers", "2", env=environment(MARKER=str(marker)))
    assert ran.exit_code == 0, ran.output
    assert "created: 2/2 workers" in ran.output  # -n 2 as decided, not enabler's -n auto
    first = [test["attempts"][0]["worker"] for test in ran.results()["tests"]]
    assert set(first) <= {"gw0", "gw1"}


@pytest.fixture(scope="module")
def without_pytest_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The sample with no dev dependencies (so not pytest: testgate adds it), with
    ``filterwarnings = error`` and ``core = "sysmon"``, run once serially at line 75 and
    branch 50. Two independent scenarios: what is installed, and how coverage starts."""

    def produce(root: Path) -> Ran:
        project = sample(root, dev="")
        text = (project / "pyproject.toml").read_text("utf-8")
        text = text.replace('pythonpath = ["."]', 'pythonpath = ["."]\nfilterwarnings = ["error"]')
        text = text.replace('source = ["lib"]', 'source = ["lib"]\ncore = "sysmon"')
        (project / "pyproject.toml").write_text(text, "utf-8")
        return run_in_process(
            project, "--workers", "0", "--fail-under-branch", "50", "--fail-under-line", "75"
        )

    return once_per_session(tmp_path_factory, "without-pytest", produce)


def test_a_coverage_warning_at_its_start_does_not_stop_a_filterwarnings_error_suite(
    without_pytest_run: Ran,
) -> None:
    """``filterwarnings = error`` and ``core = "sysmon"`` where sys.monitoring cannot measure
    branches: coverage.py warns as it starts, and the project's own ``coverage run -m
    pytest`` goes on; before, pytest-cov's start raised it and "pytest did not start"."""
    ran = without_pytest_run
    assert ran.exit_code == 0, ran.output
    assert ran.results()["totals"]["passed"] == ran.results()["totals"]["tests"] > 0
    if sys.version_info < (3, 14):  # there sys.monitoring measures branches: no warning
        assert "CoverageWarning: Can't use core=sysmon" in ran.output


def test_arguments_after_double_dash_and_pytest_args_reach_pytest(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """``--pytest-args`` given twice: both reach pytest (before, the last one won), a lone
    option (``-rA``) too, which argparse took for one of testgate's own."""
    project = copy_fixture("passing", tmp_path)
    ran = run_cli(
        project, "--workers", "0", "--min-tests", "3", "--pytest-args", "-k 'add or sign_pos'",
        "--pytest-args", "-rA", "--", "-m", "not slow",
    )  # fmt: skip
    assert ran.exit_code == 1
    assert [test["id"] for test in ran.results()["tests"]] == ["tests/test_calc.py::test_add"]
    assert "-k 'add or sign_pos'" not in ran.output  # reached pytest as two arguments
    assert "PASSED tests/test_calc.py::test_add" in ran.output  # -rA's short summary
    # -k deselected test_sign_negative, -m test_sign_positive: counted apart from the tests
    assert ran.results()["run"]["deselected"] == 2
    assert "testgate: 1 test: 1 passed; 2 deselected in " in ran.output
    assert ran.gate("min-tests") == {
        "name": "min-tests",
        "threshold": 3,
        "actual": 1,
        "passed": False,
        "message": "1 test ran; at least 3 required",
        "verdict": "fail",
    }
    # The unselected branch is now uncovered: the branch gate says so.
    assert ran.gate("branch-coverage")["passed"] is False


@pytest.fixture(scope="module")
def threshold_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Ran]:
    """The sample whose pyproject sets fail-under-line 50, run twice in the same project under
    TESTGATE_FAIL_UNDER_LINE=80: first with only --fail-under-branch 50, then with flags for
    every threshold, ``--sync true`` and a runner's GITHUB_SHA."""

    def both(root: Path) -> Ran:
        project = sample(root, tool="\n[tool.testgate]\nfail-under-line = 50\nworkers = 0\n")
        env = {"TESTGATE_FAIL_UNDER_LINE": "80"}
        first = run_in_process(project, "--fail-under-branch", "50", extra_env=env)
        shutil.copytree(first.reports, root / "first-reports")  # the second run writes there
        (root / "first.json").write_text(
            json.dumps({"exit_code": first.exit_code, "output": first.output}), "utf-8"
        )
        return run_in_process(
            project, "--fail-under-line", "75", "--fail-under-branch", "50",
            "--max-duration", "600", "--sync", "true",
            extra_env={**env, "GITHUB_SHA": "0123abc"},
        )  # fmt: skip

    second = once_per_session(tmp_path_factory, "thresholds", both)
    root = second.project.parent
    first = json.loads((root / "first.json").read_text("utf-8"))
    return Ran(first["exit_code"], first["output"], second.project, root / "first-reports"), second


def test_thresholds_from_environment_beat_pyproject(threshold_runs: tuple[Ran, Ran]) -> None:
    ran = threshold_runs[0]
    assert ran.exit_code == 1  # the environment's 80 beats pyproject's 50; coverage is 75 %
    assert (ran.gate("line-coverage")["threshold"], ran.gate("line-coverage")["actual"]) == (
        80,
        75.0,
    )
    assert "75.00 % below the minimum 80 %" in ran.output
    worst = ran.results()["coverage"]["worst_files"]
    assert worst == [{"path": "lib.py", "line_percent": 75.0, "branch_percent": 50.0}]
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "| least covered file | lines | branches |\n| --- | --- | --- |\n" in summary
    assert "| `lib.py` | 75.00 % | 50.00 % |" in summary
    ran = threshold_runs[1]
    assert ran.exit_code == 0, ran.output  # the flag's 75 beats the environment's 80
    assert ran.gate("max-duration")["passed"] is True


def test_max_duration_gate() -> None:
    # A pure function of the suite's wall time: a whole run only to exceed 0.001 s is not
    # needed. That a run's --max-duration reaches this gate, its table and results.json,
    # and that a failed gate is exit 1, the runs above show.
    gate = max_duration(0.5, threshold=0.001)
    assert gate.passed is False
    assert (gate.threshold, gate.actual) == (0.001, 0.5)
    assert gate.message == "suite took 0.5 s; limit 0.001 s"
    assert max_duration(0.001, threshold=0.001).passed is True  # the limit itself is allowed


def test_a_collection_error_counts_once_in_every_report(run_cli: RunCli, tmp_path: Path) -> None:
    """One test file that fails to collect is one error, whatever pytest under xdist says:
    each worker collects every file, and xdist merges the same error only when its report
    is plain text (an ImportError's); any other exception counts once per worker."""
    odd = "\n\ndef test_odd():\n    assert half(3) is None\n"
    # unittest's hook for adding tests (more-itertools adds its doctests so): pytest never
    # calls it, and testgate said nothing of the 165 doctests that did not run
    odd += "\n\ndef load_tests(loader, tests, ignore):\n    return tests\n"
    broken = "\n\nraise RuntimeError('broken at import')\n"
    files = {"lib.py": LIBRARY, "tests/test_lib.py": TESTS + odd, "tests/test_broken.py": broken}
    project = make_project(tmp_path / "sample", files)
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    ran = run_cli(project, "--workers", "2", env=environment(**github))
    assert ran.exit_code == 1
    assert summary_counts(ran.output) == {"passed": 2, "errors": 2}  # pytest's own line
    error = ran.test("tests/test_broken.py")
    assert (error["outcome"], error["line"]) == ("error", 3)
    assert error["attempts"][0]["message"] == "RuntimeError: broken at import"
    assert (ran.results()["totals"]["tests"], ran.results()["totals"]["errors"]) == (3, 1)
    assert "testgate: 3 tests: 2 passed, 1 error in " in ran.output
    assert "**3 tests: 2 passed, 1 error**" in (tmp_path / "summary.md").read_text("utf-8")
    assert ran.gate("failed-tests")["message"] == "1 error: tests/test_broken.py"
    assert 'errors="1"' in (ran.reports / "junit.xml").read_text("utf-8")
    annotations = [line for line in ran.output.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 1
    assert "file=tests/test_broken.py,line=3::RuntimeError: broken at import" in annotations[0]
    explained = (
        "pytest counts 2 collection errors where testgate counts 1: each xdist worker "
        "reported the same ones (pytest without xdist counts them once)"
    )
    assert explained in ran.results()["run"]["warnings"]
    loader = (
        "tests/test_lib.py defines load_tests, unittest's hook for adding tests (doctests, "
        "generated suites), which pytest never calls: the tests it adds did not run; make them "
        "pytest tests (doctests: --doctest-modules with their modules in pytest-args)"
    )
    assert loader in ran.results()["run"]["warnings"]
    assert f"warning: {loader}" in ran.output
    serial = run_cli(project, "--workers", "0", "--reruns", "0")
    # without xdist pytest stops at the error: its count is testgate's, and the rest is said;
    # the error fails the run (exit 1), and the coverage pytest-cov never saved is not judged
    # for that reason (before: exit 3, "no pytest process of the run wrote its data file.
    # One died before writing it (os._exit ...)": none died)
    assert serial.exit_code == 1, serial.output
    assert serial.results()["run"]["problems"] == []
    assert serial.gate("line-coverage")["message"] == (
        "not judged: no coverage data was recorded: pytest stopped at 1 collection error "
        "before any test ran, so nothing was measured"
    )
    assert summary_counts(serial.output) == {"errors": 1}
    assert "testgate: 1 test: 1 error in " in serial.output
    assert serial.results()["run"]["warnings"] == [
        "pytest stopped at 1 collection error, so the 2 tests it collected never ran: fix the "
        "error, or add --continue-on-collection-errors to pytest-args to run them anyway",
        loader,
    ]


def test_no_tests_collected_fails_min_tests_and_says_why(run_cli: RunCli, tmp_path: Path) -> None:
    project = sample(tmp_path, tests="def helper():\n    return 1\n")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 1
    gate = ran.gate("min-tests")
    assert (gate["actual"], gate["passed"]) == (0, False)
    assert "no test ran: check testpaths, -k and -m" in ran.output
    assert ran.gate("line-coverage")["message"].startswith("no coverage data")


def test_a_source_entry_that_measured_nothing_is_a_configuration_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """``source = ["lbi", "tests"]``: a typo of lib, never imported, and the tests, all run.
    Before, the gates judged the tests alone: 100 %, exit 0, lib unmeasured; coverage.py's
    module-not-imported was said only inside pytest's output."""
    project = sample(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text("utf-8").replace('source = ["lib"]', 'source = ["lbi", "tests"]')
    pyproject.write_text(text, "utf-8")
    step_summary = tmp_path / "step-summary.md"
    runner = {**environment(), "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary)}
    ran = run_cli(project, "--workers", "0", env=runner)
    assert ran.exit_code == 2
    said = (
        "[tool.coverage.run] source 'lbi' names nothing in the project: no folder or module "
        "of that name is in it, and nothing of that name was measured (coverage.py: "
        "module-not-imported). Name the package as the tests import it, or its directory, or "
        "remove the entry"
    )
    run = ran.results()["run"]
    assert (run["coverage_misconfigured"], run["problems"]) == (said, [])
    assert said not in " ".join(run["warnings"])  # an error, said as one
    for name in ("line-coverage", "branch-coverage", "diff-coverage"):
        assert ran.gate(name)["verdict"] == "not judged"
        assert ran.gate(name)["message"] == f"not judged: {said}"
    assert ran.gate("failed-tests")["verdict"] == "pass"
    lines = ran.output.splitlines()
    table = next(index for index, line in enumerate(lines) if line.startswith("gate "))
    assert lines.index(f"error: {said}") > table  # where the run ends
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert f"### Configuration error\n\n- {said}" in summary
    assert "### Warnings" not in summary
    assert f"\n::error title=testgate::{said}\n" in ran.output  # on the pull request
    merged = run_cli(ran.project, "testgate-reports", "--reports-dir", "merged", command="merge")
    assert merged.exit_code == 2  # judged again on the combined data
    result = json.loads((ran.project / "merged" / "results.json").read_text("utf-8"))
    assert result["run"]["coverage_misconfigured"] == said
    (line,) = [gate for gate in result["gates"] if gate["name"] == "line-coverage"]
    assert line["message"] == f"not judged: {said}"
    # the project's own package, left unimported by the tests pytest's arguments chose: a
    # warning only
    pyproject.write_text(text.replace('["lbi", "tests"]', '["lib", "tests"]'), "utf-8")
    (ran.project / "tests" / "test_alone.py").write_text("def test_alone():\n    pass\n")
    chosen = run_cli(
        ran.project, "--workers", "0", "--reports-dir", "chosen", "--", "tests/test_alone.py"
    )
    result = json.loads((ran.project / "chosen" / "results.json").read_text("utf-8"))
    # judged (tests/test_lib.py, in source and not run, is uncovered), not "not judged"
    assert (chosen.exit_code, result["run"]["coverage_misconfigured"]) == (1, None), chosen.output
    (line,) = [gate for gate in result["gates"] if gate["name"] == "line-coverage"]
    assert line["verdict"] == "fail"
    assert result["run"]["warnings"] == [
        "[tool.coverage.run] source 'lib' measured nothing: no test imported it, so none of its "
        "code counts in any coverage figure (coverage.py: module-not-imported); pytest's "
        "arguments chose some of the tests: run them all"
    ]


def test_an_internal_error_is_exit_three_with_results_written(
    run_cli: RunCli, tmp_path: Path
) -> None:
    project = sample(tmp_path)
    (project / "conftest.py").write_text(
        "def pytest_runtest_logfinish(nodeid):\n    raise RuntimeError('broken hook')\n", "utf-8"
    )
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 3
    problems = ran.results()["run"]["problems"]
    assert problems[0] == (
        "pytest crashed with an internal error: RuntimeError: broken hook. see pytest's "
        "INTERNALERROR traceback above"
    )
    assert problems[1].startswith("no coverage data was recorded: ")
    assert "\ntestgate: pytest crashed with an internal error: RuntimeError" in ran.output


def test_a_crash_without_xdist_names_the_test_and_keeps_the_rest(
    run_cli: RunCli, tmp_path: Path
) -> None:
    crash = (
        TESTS
        + "\ndef test_dies():\n    import os\n    os._exit(7)\n\ndef test_never():\n    pass\n"
    )
    ran = run_cli(sample(tmp_path, tests=crash), "--workers", "0", "--reruns", "1")
    assert ran.exit_code == 3
    outcomes = {test["id"]: test["outcome"] for test in ran.results()["tests"]}
    assert outcomes == {
        "tests/test_lib.py::test_even": "passed",
        "tests/test_lib.py::test_dies": "error",
    }
    died = ran.test("tests/test_lib.py::test_dies")
    assert died["attempts"][0]["message"] == "the pytest process died (exit 7) while this test ran"
    assert died["line"] == 7
    assert ran.results()["run"]["problems"] == [
        "the pytest process died (exit 7) while running tests/test_lib.py::test_dies",
        "1 collected test never ran: tests/test_lib.py::test_never; the pytest process ended "
        "before them",
        "1 collected test never ran, so the coverage is partial",
    ]
    assert ran.results()["run"]["not_run"] == ["tests/test_lib.py::test_never"]


def test_an_interrupted_session_is_an_infrastructure_error(run_cli: RunCli, tmp_path: Path) -> None:
    stop = TESTS + "\ndef test_stop():\n    import pytest\n    pytest.exit('enough')\n"
    ran = run_cli(sample(tmp_path, tests=stop), "--workers", "0")
    assert ran.exit_code == 3
    assert ran.results()["run"]["problems"] == [
        "pytest was interrupted before the suite finished (exit 2)",
        "1 collected test never ran (exit 2): tests/test_lib.py::test_stop; -x, --maxfail, "
        "--sw, pytest.exit() or a plugin ends pytest's session early, and a test that never "
        "ran is no pass",
        "1 collected test never ran, so the coverage is partial",
    ]


LEAVES = """
def test_leave():
    import pytest
    pytest.exit("leaving early", returncode=0)

def test_after():
    assert False
"""
STOPS = """
def test_fails():
    assert False

def test_after():
    assert False
"""


@pytest.mark.parametrize(
    ("tests", "args", "never"),
    [
        (LEAVES, ("--reruns", "0"), ("exit 0", ["test_leave", "test_after"])),
        (STOPS, ("--", "-x"), ("exit 1", ["test_after"])),
    ],
    ids=["pytest.exit-returncode-0", "-x"],
)
def test_collected_tests_that_never_ran_are_no_pass(
    run_cli: RunCli, tmp_path: Path, tests: str, args: tuple[str, ...], never: tuple[str, list[str]]
) -> None:
    """pytest.exit(returncode=0) ends a session with exit 0 halfway; -x (or --maxfail, --sw)
    stops at the first failure: the tests after it never ran, and no report calls them run."""
    how, names = never
    ran = run_cli(sample(tmp_path, tests=TESTS + tests), "--workers", "0", *args)
    assert ran.exit_code == 3, ran.output
    ids = [f"tests/test_lib.py::{name}" for name in names]
    results = ran.results()
    assert results["run"]["not_run"] == ids
    problem = (
        f"{len(ids)} collected test{'s' if len(ids) > 1 else ''} never ran ({how}): "
        f"{', '.join(ids)}; -x, --maxfail, --sw, pytest.exit() or a plugin ends pytest's "
        "session early, and a test that never ran is no pass"
    )
    partial = f"{problem.split(' (', maxsplit=1)[0]}, so the coverage is partial"
    assert results["run"]["problems"] == [problem, partial]
    assert f"problem: {problem}" in ran.output
    assert ran.gate("line-coverage")["message"] == f"not judged: {partial}"
    assert results["passed"] is False


REWRITES_THE_RECORD = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    recorder = session.config.pluginmanager.get_plugin("testgate-recorder")
    recorder._stream.flush()
    path = recorder._stream.name
    text = open(path).read().replace('"outcome": "failed"', '"outcome": "passed"')
    open(path, "w").write(text)
"""


def test_a_failure_pytest_counted_that_the_record_lacks_is_a_problem(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """pytest's own exit code is checked against the record: a conftest that rewrites the
    record's failures as passes (or a plugin whose reports testgate cannot read) does not
    turn pytest's 'failed' into a pass."""
    project = sample(tmp_path, tests=TESTS + "\ndef test_bad():\n    assert False\n")
    (project / "conftest.py").write_text(REWRITES_THE_RECORD, "utf-8")
    ran = run_cli(project, "--workers", "0", "--reruns", "0")
    assert ran.exit_code == 3, ran.output
    assert ran.results()["run"]["problems"] == [
        "pytest reported failed tests (exit 1) that testgate's record of each test does not "
        "show: see pytest's summary above; a plugin that reports tests its own way (or a "
        "test that changed the record) hides them"
    ]
    assert ran.results()["passed"] is False


def test_a_process_that_ends_during_collection_is_reported(run_cli: RunCli, tmp_path: Path) -> None:
    """No process wrote coverage data, though source is set: the coverage gates are not
    judged and say why (before: FAIL, "no measured file was run. Set [tool.coverage.run]
    source", which was set)."""
    ran = run_cli(sample(tmp_path, tests="import os\nos._exit(9)\n"), "--workers", "0")
    assert ran.exit_code == 3
    nothing = (
        "no coverage data was recorded: no pytest process of the run wrote its data file. One "
        "died before writing it (os._exit, closed file descriptors, pytest.exit), or coverage "
        "was switched off (--no-cov, -p no:cov): let the tests' processes end normally, or "
        "drop the switch"
    )
    run = ran.results()["run"]
    assert run["problems"] == [
        "the pytest process ended (exit 9) before its session finished",
        nothing,
    ]
    assert run["coverage_incomplete"] == nothing
    for name in ("line-coverage", "branch-coverage"):
        assert (ran.gate(name)["verdict"], ran.gate(name)["message"]) == (
            "not judged",
            f"not judged: {nothing}",
        )
    assert "Set [tool.coverage.run] source" not in ran.output


def test_an_exception_that_ends_pytest_after_the_tests_is_named(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A plugin's sessionfinish that raises ends pytest with no INTERNALERROR (as pytest 7.4
    with pluggy 1.2 did in stepwise): the problem names the exception and where it came
    from, in results.json, the summary, the terminal and an error annotation."""
    project = sample(tmp_path)
    (project / "conftest.py").write_text(
        "import pytest\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_sessionfinish():\n"
        "    raise AttributeError(\"'Config' object has no attribute 'cache'\")\n",
        "utf-8",
    )
    shell = {k: v for k, v in environment().items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")}
    summary = tmp_path / "step-summary.md"
    runner = {**shell, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    ran = run_cli(project, "--workers", "0", env=runner)
    assert ran.exit_code == 3
    problem = (
        "the pytest process ended (exit 1) before its session finished: AttributeError: "
        "'Config' object has no attribute 'cache' (raised at conftest.py:5 in "
        "pytest_sessionfinish)"
    )
    assert ran.results()["run"]["problems"] == [problem]
    assert f"- {problem}" in (ran.reports / "summary.md").read_text("utf-8")
    assert f"problem: {problem}" in ran.output
    assert f"- {problem}" in summary.read_text("utf-8")
    assert f"\n::error title=testgate::{problem}\n" in ran.output


TYPED_LIBRARY = """
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # covdefaults excludes this block: 100 % only with the plugin loaded
    from collections.abc import Sequence


def half(n):
    return n // 2
"""


def test_old_pytest_and_pluggy_and_a_coverage_plugin_of_the_project_pass(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """pytest 7.4 with pluggy 1.2, which walks the live list of ``pytest_configure``
    implementations: testgate's plugins are registered before it, so cacheprovider's
    configure still runs (else stepwise fails at sessionfinish, exit 3). And the project's
    coverage plugin, installed only in its environment, is loaded for testgate's combine
    (else ModuleNotFoundError: No module named 'covdefaults', exit 1). Serial: neither needs
    xdist's workers (that testgate adds xdist and starts workers, the passing fixture's run
    at the top of this file shows)."""
    project = make_project(
        tmp_path / "old",
        {"lib.py": TYPED_LIBRARY, "tests/test_lib.py": TESTS},
        dev='"pytest==7.4.4", "pluggy==1.2.0", "pytest-cov", "covdefaults"',
        tool='plugins = ["covdefaults"]\n',
    )
    before = list(sys.path)
    ran = run_cli(project, "--workers", "0")  # the plan of time limits is on by default
    assert ran.exit_code == 0, ran.output
    assert "pytest-7.4.4, pluggy-1.2.0" in ran.output
    assert "coverage: line 100.00 %, branch 100.00 %" in ran.output
    assert sys.path == before  # the project's folders were taken off again


def test_a_coverage_plugin_testgate_cannot_load_is_named_and_the_results_stand(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A plugin pytest-cov found on the caller's PYTHONPATH, not installed in the project's
    environment: coverage cannot be combined, which is the run's problem (exit 3); the tests'
    results are still reported, and the coverage gates are not judged."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "tg_local_coverage_plugin.py").write_text(
        "def coverage_init(reg, options):\n    pass\n", "utf-8"
    )
    project = sample(
        tmp_path,
        tool='plugins = ["tg_local_coverage_plugin"]\n[tool.testgate]\nworkers = 0\n',
    )
    ran = run_cli(project, env=environment(PYTHONPATH=str(plugins)))
    assert ran.exit_code == 3, ran.output
    (problem,) = ran.results()["run"]["problems"]
    assert problem == (
        "coverage.py could not load the coverage plugin tg_local_coverage_plugin that the "
        "project's coverage configuration names ([run] plugins = tg_local_coverage_plugin): "
        "No module named 'tg_local_coverage_plugin'. It is not installed in the project's "
        "environment: add it to the project's test dependencies, or remove it from [run] "
        "plugins."
    )
    assert ran.test("tests/test_lib.py::test_even")["outcome"] == "passed"
    assert ran.gate("line-coverage")["verdict"] == "not judged"
    assert f"problem: {problem}" in ran.output
    assert problem in (ran.reports / "summary.md").read_text("utf-8")
    assert 'tests="1"' in (ran.reports / "junit.xml").read_text("utf-8")
    assert not (ran.reports / "coverage.xml").exists()


def test_a_coverage_plugin_is_looked_for_where_testgate_was_told(tmp_path: Path) -> None:
    """Without the project's environment (``testgate merge``), only testgate's own; a
    Python that cannot be asked gives no folders to look in."""
    assert package_paths(str(tmp_path / "no-python")) == []
    assert any(path.endswith("site-packages") for path in package_paths(sys.executable))
    missing = pytest.raises(CoverageNotReported, match=r"plugin nowhere_plugin .* beside testgate")
    with missing, project_plugins(["nowhere_plugin"], python=None):
        importlib.import_module("nowhere_plugin")


def test_pytest_that_never_starts_is_exit_three(run_cli: RunCli, tmp_path: Path) -> None:
    project = sample(tmp_path)
    (project / "conftest.py").write_text("import os\nos._exit(9)\n", "utf-8")
    (project / "testgate-reports").mkdir()
    (project / "testgate-reports" / "results.json").write_text("stale", "utf-8")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 3
    assert (
        "testgate: error: pytest did not start in the project's environment (exit 9" in ran.output
    )
    assert not (project / "testgate-reports" / "results.json").exists()


@pytest.mark.parametrize("args", [("--", "--no-such-option"), ("--", "tests/missing_file.py")])
def test_arguments_pytest_rejects_are_a_usage_error(
    run_cli: RunCli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    ran = run_cli(sample(tmp_path), "--workers", "0", *args)
    assert ran.exit_code == 2
    assert "testgate: error: pytest rejected its arguments (exit 4)" in ran.output


def test_missing_uv_is_exit_three_with_how_to_install(run_cli: RunCli, tmp_path: Path) -> None:
    ran = run_cli(sample(tmp_path), env=environment(PATH="/nonexistent"))
    assert ran.exit_code == 3
    assert "uv is not on PATH" in ran.output
    assert "pip install uv" in ran.output


def test_a_project_uv_cannot_prepare_is_exit_three(run_cli: RunCli, tmp_path: Path) -> None:
    ran = run_cli(sample(tmp_path), "--python-version", "2.1")
    assert ran.exit_code == 3
    (said,) = [line for line in ran.output.splitlines() if line.startswith("testgate: error:")]
    assert said.startswith("testgate: error: uv sync failed (exit 2): error: ")
    assert "; its message is above. testgate ran: " in said
    assert " sync -q --project " in said
    assert said.endswith("runs with --python PATH of its environment.")
    assert not ran.reports.exists()  # nothing ran: no reports dir, nor work dir, is left


def test_a_failed_command_keeps_a_reports_dir_it_did_not_make(
    run_cli: RunCli, tmp_path: Path
) -> None:
    project = sample(tmp_path)
    (project / "testgate-reports").mkdir()
    ran = run_cli(project, "--groups", "nope")
    assert ran.exit_code == 2
    assert "groups: the project defines no dependency group 'nope'" in ran.output
    assert [path.name for path in ran.reports.iterdir()] == [".testgate-reports"]


def test_a_project_without_pytest_gets_it_added(run_cli: RunCli, without_pytest_run: Ran) -> None:
    assert without_pytest_run.exit_code == 0, without_pytest_run.output
    ran = run_cli(  # again without syncing, in the same project (its own reports dir: the
        without_pytest_run.project,  # run above may be read by another worker meanwhile)
        "--workers",
        "0",
        "--sync",
        "false",
        "--fail-under-branch",
        "50",
        "--fail-under-line",
        "75",
        "--reports-dir",
        "unsynced-reports",
    )
    assert ran.exit_code == 0, ran.output
    assert (without_pytest_run.project / "unsynced-reports" / "results.json").is_file()


@pytest.mark.parametrize(
    ("package", "importable_from"),
    [("pkg/__init__.py", "."), ("src/pkg/__init__.py", "src")],
    ids=["top-level package", "src layout"],
)
def test_without_configured_sources_the_projects_code_is_measured(
    run_cli: RunCli, tmp_path: Path, package: str, importable_from: str
) -> None:
    project = make_project(
        tmp_path / "pkg",
        {
            package: "def one():\n    return 1\n",
            "tests/test_pkg.py": "from pkg import one\n\ndef test_one():\n    assert one() == 1\n",
        },
    )
    text = (project / "pyproject.toml").read_text("utf-8").replace('source = ["lib"]', "")
    text = text.replace('pythonpath = ["."]', f'pythonpath = ["{importable_from}"]')
    (project / "pyproject.toml").write_text(text, "utf-8")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 0, ran.output
    files = json.loads((ran.reports / "coverage.json").read_text("utf-8"))["files"]
    assert sorted(files) == [package]  # the tests themselves are not measured
    assert "the whole project folder" not in ran.output


def test_a_project_of_tests_alone_is_told_its_coverage_measures_them(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """No code beside the tests: coverage measures the folder, tests and all, and says so."""
    project = make_project(tmp_path / "alone", {"tests/test_it.py": "def test_it():\n    pass\n"})
    text = (project / "pyproject.toml").read_text("utf-8").replace('source = ["lib"]', "")
    (project / "pyproject.toml").write_text(text, "utf-8")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 0, ran.output
    files = json.loads((ran.reports / "coverage.json").read_text("utf-8"))["files"]
    assert sorted(files) == ["tests/test_it.py"]
    said = "coverage measures the whole project folder, its tests too: no code of its own"
    assert f"testgate: {said}" in ran.output
    (warning,) = [text for text in ran.results()["run"]["warnings"] if said in text]
    assert "name the code with [tool.coverage.run] source" in warning
    assert said in (ran.reports / "summary.md").read_text("utf-8")
    # With no coverage gate (both thresholds 0) nothing is said: whole_folder_warning's
    # gated=False, in tests/unit/test_coverage_sources.py.


def test_a_reports_dir_that_cannot_be_created_is_a_config_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    project = sample(tmp_path)
    (project / "blocked").write_text("a file, not a directory", "utf-8")
    ran = run_cli(project, "--reports-dir", "blocked/reports")
    assert ran.exit_code == 2
    assert "cannot write the reports dir" in ran.output


def test_no_pyproject_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    shell = {name: value for name, value in environment().items() if name != "VIRTUAL_ENV"}
    ran = run_cli(tmp_path, env=shell)  # an activated venv would be used as it is
    assert ran.exit_code == 2
    assert f"testgate: error: {tmp_path.resolve()}: no pyproject.toml and no requirements" in (
        ran.output
    )


def test_on_a_runner_an_error_is_an_annotation_and_passed_is_false(
    run_cli: RunCli, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs.txt"
    env = environment(GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(outputs))
    ran = run_cli(tmp_path / "missing", env=env)
    assert ran.exit_code == 2
    assert "::error title=testgate::project directory" in ran.output
    assert re.fullmatch(r"passed<<(\S+)\nfalse\n\1\n", outputs.read_text("utf-8"))
    without_outputs = run_cli(tmp_path / "missing", env=environment(GITHUB_ACTIONS="true"))
    assert "::error title=testgate::project directory" in without_outputs.output


def test_the_commit_comes_from_github_sha(threshold_runs: tuple[Ran, Ran]) -> None:
    ran = threshold_runs[1]  # GITHUB_SHA=0123abc, --sync true
    assert ran.exit_code == 0, ran.output
    assert ran.results()["run"]["commit"] == "0123abc"  # (git's HEAD: test_diff_coverage)
    run = ran.results()["run"]
    assert run["variant"] == "py" + ".".join(run["python"].split(".")[:2]) + "-linux"


def test_an_invalid_coverage_configuration_is_a_config_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    project = sample(tmp_path)
    (project / ".coveragerc").write_text("[run]\nbranch = perhaps\n", "utf-8")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 2
    assert "the project's coverage configuration is invalid" in ran.output


def test_a_python_that_answers_the_probe_with_noise_is_exit_three(
    run_cli: RunCli, tmp_path: Path
) -> None:
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text(
        "import atexit\natexit.register(print, 'goodbye from sitecustomize')\n", "utf-8"
    )
    ran = run_cli(sample(tmp_path), env=environment(PYTHONPATH=str(noisy)))
    assert ran.exit_code == 3
    assert "did not answer testgate's probe" in ran.output
    assert "goodbye from sitecustomize" in ran.output


SUBTESTS = """
import unittest


class TestRange(unittest.TestCase):
    def test_each(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 2)  # marker: unittest-subtest


def test_each_half(subtests):
    for n in (2, 4, 5):
        with subtests.test(msg="custom", n=n):
            assert half(n) is not None  # marker: fixture-subtest


def test_every_subtest_passes(subtests):
    from lib import half

    for n in (2, 4):
        with subtests.test(n=n):
            assert half(n)
"""


def subtest_failures(ran: Ran) -> dict[str, tuple[str, str | None, int | None]]:
    """Each test's outcome, message and line."""
    return {
        test["id"]: (test["outcome"], test["attempts"][0]["message"], test["attempts"][0]["line"])
        for test in ran.results()["tests"]
    }


def test_a_failed_subtest_fails_its_test_with_its_message(run_cli: RunCli, tmp_path: Path) -> None:
    """pytest 9's own subtests: each test counts once, failed by a failed subtest (pytest's
    line counts the subtest and, for a unittest one, the test's own pass besides)."""
    tests = "from lib import half\n" + SUBTESTS
    project = sample(tmp_path, tests=tests)
    ran = run_cli(project, "--workers", "0", "--reruns", "0")
    assert ran.exit_code == 1, ran.output
    assert "testgate: 3 tests: 1 passed, 2 failed in" in ran.output
    file = "tests/test_lib.py"
    assert subtest_failures(ran) == {
        f"{file}::TestRange::test_each": (
            "failed",
            "(i=2) AssertionError: 2 == 2",
            marker_line(project / file, "unittest-subtest"),
        ),
        f"{file}::test_each_half": (
            "failed",
            "[custom] (n=5) AssertionError: assert None is not None\n +  where None = half(5)",
            marker_line(project / file, "fixture-subtest"),
        ),
        f"{file}::test_every_subtest_passes": ("passed", None, None),
    }
    junit = (ran.reports / "junit.xml").read_text("utf-8")
    assert '<testsuite name="testgate" tests="3" errors="0" failures="2" skipped="0"' in junit


def test_pytest_subtests_and_rerunfailures_on_pytest_8_are_folded_per_test(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """pytest 8 with the pytest-subtests plugin, and pytest-rerunfailures: a failed subtest
    fails its test; a test that passed on a try pytest-rerunfailures ran again is flaky,
    one that failed every try failed (before: testgate passed them, or stopped, exit 3)."""
    tests = SUBTESTS + textwrap.dedent(
        """
        from pathlib import Path

        TRIED = Path(__file__).with_name("tried")


        def test_passes_on_its_second_try():
            first = not TRIED.exists()
            TRIED.touch()
            assert not first, "the first try fails"
        """
    )
    project = make_project(
        tmp_path / "old",
        {"lib.py": LIBRARY, "tests/test_lib.py": "from lib import half\n" + tests},
        dev='"pytest>=8,<9", "pytest-cov", "pytest-subtests", "pytest-rerunfailures"',
    )
    config = project / "pyproject.toml"
    text = config.read_text("utf-8").replace(
        'pythonpath = ["."]', 'pythonpath = ["."]\naddopts = "--reruns 1"'
    )
    config.write_text(text, "utf-8")
    ran = run_cli(project, "--workers", "0", "--reruns", "0")
    assert ran.exit_code == 1, ran.output
    assert "pytest-8." in ran.output
    assert "rerunfailures-" in ran.output
    file = "tests/test_lib.py"
    outcomes = subtest_failures(ran)
    assert outcomes[f"{file}::TestRange::test_each"][:2] == (
        "failed",
        "(i=2) AssertionError: 2 == 2",
    )
    assert outcomes[f"{file}::test_each_half"][:2] == (
        "failed",
        "[custom] (n=5) AssertionError: assert None is not None\n +  where None = half(5)",
    )
    retried = ran.test(f"{file}::test_passes_on_its_second_try")
    assert retried["outcome"] == "flaky"
    assert retried["note"].startswith(
        "failed 1 of 2 attempts; passed when pytest-rerunfailures ran it again"
    )
    tries = [(a["outcome"], a["number"], a["message"]) for a in retried["attempts"][:2]]
    assert tries == [
        ("failed", 1, "AssertionError: the first try fails\nassert not True"),
        ("passed", 1, None),
    ]
    assert "testgate: 4 tests: 1 passed, 2 failed, 1 flaky in" in ran.output


def test_a_conftest_that_fails_to_import_names_the_missing_module(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """pytest exits 4 for it, as for bad arguments; it is the project's environment that
    lacks a module, not testgate's options (before: exit 2, "check pytest-args")."""
    project = sample(tmp_path)
    (project / "tests" / "conftest.py").write_text("import no_such_helper_module\n", "utf-8")
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 3, ran.output
    assert (
        "testgate: error: pytest could not import the conftest tests/conftest.py: "
        "ModuleNotFoundError: No module named 'no_such_helper_module' (exit 4, see its "
        "message above): install what it imports in the project's environment"
    ) in ran.output
    assert "pytest-args" not in ran.output


SUBPROCESS_TESTS = """
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def measured(config, code):
    env = {"COVERAGE_PROCESS_START": str(ROOT / config), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def test_even():
    measured("pyproject.toml", "import lib; assert lib.half(3) is None")
    from lib import half

    assert half(4) == 2


def test_lines_only():
    measured("lines.toml", "import lib")
"""


def test_a_subprocess_the_tests_start_with_an_environment_of_their_own_counts(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A test that starts Python with ``env={"COVERAGE_PROCESS_START": "pyproject.toml"}``
    (django-read-only's IPython tests) keeps no ``COVERAGE_FILE`` of testgate's: coverage.py
    writes that process's data at the project's ``[run] data_file``, where ``coverage run
    -m pytest`` and ``coverage combine`` count it (100 % here). Before: line 75.00 %,
    branch 50.00 %, the gates failed, the odd branch of half() unmeasured. A file of lines
    only (another configuration, ``branch = false``) cannot be combined with testgate's
    branch data: it is named, not counted, and nothing the processes wrote is removed."""
    project = sample(
        tmp_path,
        tests=SUBPROCESS_TESTS,
        tool='branch = true\nparallel = true\ndata_file = ".coverage/cov"\n',
    )
    (project / "lines.toml").write_text(
        '[tool.coverage.run]\nparallel = true\ndata_file = ".coverage/cov"\nsource = ["lib"]\n',
        "utf-8",
    )
    old = project / ".coverage" / "cov.old.1"  # an earlier run's, not this one's
    old.parent.mkdir()
    old.write_bytes(b"not a data file")
    (project / ".coverage" / "cov.link").symlink_to(old)
    ran = run_cli(project, "--workers", "0")
    assert ran.exit_code == 0, ran.output
    assert "coverage: line 100.00 %, branch 100.00 %" in ran.output
    notice = re.search(r"testgate: not counted: 1 coverage data file a process .*", ran.output)
    assert notice is not None, ran.output
    assert notice.group(0).startswith(
        "testgate: not counted: 1 coverage data file a process of the tests wrote with the "
        "project's coverage configuration (.coverage/cov."
    )
    assert notice.group(0).endswith(") measured lines only; set [run] branch = true to count them")
    written = sorted(path.name for path in (project / ".coverage").iterdir())
    assert len(written) == 4, written  # the old file, the link, and the two processes' files
    assert old.read_bytes() == b"not a data file"


WARNS = """
class LibWarning(UserWarning):
    pass


def half(n):
    if n % 2:
        return None
    return n // 2
"""


def test_a_project_whose_warning_filter_names_its_own_category_is_measured_from_the_start(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """pytest imports a filter's category (``ignore::lib.LibWarning``, starlette's
    ``starlette.exceptions.StarletteDeprecationWarning``) as it configures, before
    pytest-cov starts: the module's own lines ran unmeasured. Such a project runs under
    ``coverage run`` from the process start, as it does for a project pytest depends on.
    Before: line 33.33 % (the class and def lines missed) where ``coverage run -m pytest``
    says 83.33 % (starlette: 99.85 % against 99.98 %)."""
    project = make_project(
        tmp_path / "sample",
        {"lib.py": WARNS, "tests/test_lib.py": TESTS},
        tool="branch = true\n",
    )
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text("utf-8").replace(
        'pythonpath = ["."]\n',
        'pythonpath = ["."]\nfilterwarnings = ["error", "ignore::lib.LibWarning"]\n',
    )
    pyproject.write_text(text, "utf-8")
    ran = run_cli(project, "--fail-under-line", "80", "--fail-under-branch", "50")
    assert ran.exit_code == 0, ran.output
    assert "testgate: pytest needs the project's lib before any plugin starts" in ran.output
    assert "coverage: line 83.33 %, branch 50.00 %" in ran.output  # only half(n)'s None
