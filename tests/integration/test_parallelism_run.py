"""``workers = auto`` and the rerun budget in real runs: the decision in the terminal and
results.json, xdist taken for recorded durations, failures of one cause or beyond
``max-reruns`` reported at once, without reruns."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from runner.parallelism import cpus
from tests.conftest import Ran, copy_fixture


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


BROKEN_DATABASE = """
import pytest

@pytest.fixture
def database():
    raise RuntimeError('database "app" does not exist: create it, or start the service')

@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_query(database, n):
    pass
"""

VARIOUS = """
def test_a():
    assert 1 == 2

def test_b():
    assert 3 == 4

def test_c():
    pass
"""


def project_with(root: Path, name: str, tests: str) -> Path:
    project = copy_fixture("passing", root)
    shutil.rmtree(project / "tests")
    write(project / "tests" / f"{name}.py", tests)
    return project


def test_a_broken_environment_is_reported_at_once_not_rerun(
    tmp_path: Path, run_cli: Callable[..., Ran]
) -> None:
    project = project_with(tmp_path, "test_db", BROKEN_DATABASE)
    ran = run_cli(
        project, "--workers", "auto", "--fail-under-line", "0", "--fail-under-branch", "0"
    )
    assert ran.exit_code == 1
    run = ran.results()["run"]
    said = (
        'not rerun: all 6 failures share one cause (setup: RuntimeError: database "app" '
        "does not exist: create it, or start the service); a broken environment, which "
        "reruns would only repeat"
    )
    assert run["reruns_stopped"] == said
    assert run["workers"] == 0
    assert run["workers_reason"].startswith("no xdist: 6 tests counted in the test files")
    assert f"testgate: {run['workers_reason']}" in ran.output
    assert f"testgate: failures {said}" in ran.output
    assert "attempt 2" not in ran.output
    assert all(len(test["attempts"]) == 1 for test in ran.results()["tests"])
    assert f"> Failures {said}" in (ran.reports / "summary.md").read_text("utf-8")


def test_max_reruns_stops_reruns_of_more_failures_than_it_allows(
    tmp_path: Path, run_cli: Callable[..., Ran]
) -> None:
    project = project_with(tmp_path, "test_various", VARIOUS)
    no_gates = ("--fail-under-line", "0", "--fail-under-branch", "0")
    ran = run_cli(project, "--max-reruns", "50%", *no_gates)
    assert ran.results()["run"]["reruns_stopped"] == (
        "not rerun: 2 tests failed, more than max-reruns allows (at most 50 % of 3 tests); "
        "the run looks broken as a whole, not flaky"
    )
    # the project switches xdist and pytest-cov off in its addopts: testgate's -n and --cov
    # were refused (exit 2, "unrecognized arguments"). Without xdist, as the project says;
    # pytest-cov back on for testgate's coverage
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    addopts = 'addopts = "-p no:xdist -pno:cov"\n'
    pyproject.write_text(
        text.replace("[tool.pytest.ini_options]\n", f"[tool.pytest.ini_options]\n{addopts}")
    )
    used = "from calc import add, sign\n\ndef test_calc():\n    assert add(1, 2) == 3\n"
    write(project / "tests" / "test_used.py", used + "    assert sign(-1) != sign(1)\n")
    ran = run_cli(project, "--max-reruns", "2", "--workers", "2", *no_gates)
    assert ran.exit_code == 1, ran.output
    assert ran.results()["run"]["reruns_stopped"] is None
    off = "no xdist: -p no:xdist in pyproject.toml's addopts switches it off"
    assert ran.results()["run"]["workers_reason"] == off
    assert f"testgate: {off}" in ran.output
    assert f"attempt 2, rerun of 2 tests; {off}" in ran.output
    assert "attempt 3, rerun of 2 tests; no xdist: the last rerun runs alone" in ran.output
    assert (
        "testgate: -p no:cov in pyproject.toml's addopts switches pytest-cov off: testgate "
        "switches it back on for its coverage (-p pytest_cov)"
    ) in ran.output
    coverage = ran.results()["coverage"]
    assert (coverage["line_percent"], coverage["branch_percent"]) == (100.0, 100.0)
    attempts = {test["id"].split("::")[1]: len(test["attempts"]) for test in ran.results()["tests"]}
    assert attempts == {"test_a": 3, "test_b": 3, "test_c": 1, "test_calc": 1}


def test_recorded_durations_put_the_suite_under_xdist(
    tmp_path: Path, run_cli: Callable[..., Ran]
) -> None:
    project = copy_fixture("passing", tmp_path)
    ids = [f"tests/test_calc.py::{name}" for name in ("test_add", "test_sub", "test_slow")]
    write(project / "recorded.json", json.dumps(dict.fromkeys(ids, 20.0)))
    ran = run_cli(project, "--workers", "auto", "--durations", "recorded.json")
    run = ran.results()["run"]
    if cpus() < 2:  # pragma: no cover - one core: xdist is never worth it
        assert run["workers"] == 0
        return
    assert run["workers"] == 2
    assert run["workers_reason"].startswith("2 xdist workers: 3 recorded test durations")
    workers = {test["attempts"][0]["worker"] for test in ran.results()["tests"]}
    assert workers
    assert workers <= {"gw0", "gw1"}
