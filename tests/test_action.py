"""The real action.yml, run end to end by act (``act -P ubuntu-latest=-self-hosted``).

One workflow with three jobs runs the action, as a user's ``uses: acme/testgate@v1`` step,
on three projects: one that passes, one with a broken and a flaky test, one below its
coverage threshold. act runs the jobs on this machine, without Docker.

Stand-ins, and only these: ``astral-sh/setup-uv`` downloads uv over the network, so act's
``--local-repository`` replaces it with a composite action that puts this machine's uv on
PATH (``SETUP_UV``, below). The action itself is a copy of this checkout's action.yml,
action.lock and runner/. act gives host jobs an empty workspace, so each job points the
action's ``working-directory`` at its project.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Ran, once_per_session

ROOT = Path(__file__).parent.parent
ACT = Path(sys.executable).parent / "act"
SETUP_UV = """\
name: setup-uv stand-in
description: >-
  Stand-in for astral-sh/setup-uv in testgate's act tests (no network here): puts the uv
  already installed on this machine on PATH. The inputs testgate passes are accepted.
inputs:
  enable-cache:
    default: "false"
  cache-dependency-glob:
    default: ""
runs:
  using: composite
  steps:
    - shell: bash
      env:
        UV_DIR: ${{ env.TESTGATE_TEST_UV_DIR }}
      run: echo "$UV_DIR" >> "$GITHUB_PATH"
"""
JOB = """\
  {name}:
    runs-on: ubuntu-latest
    steps:
      - id: tg
        uses: acme/testgate@v1
        with:
          working-directory: ${{{{ env.PROJECTS }}}}/{name}
          workers: "0"
          reruns: "1"
      - if: always()
        env:
          OUT: ${{{{ toJSON(steps.tg.outputs) }}}}
        run: echo "outputs=$OUT" | tr -d '\\n'; echo
"""
RED_TESTS = """\
from pathlib import Path


def test_broken():
    assert 1 + 1 == 3, "arithmetic, 100% broken"


def test_flaky():
    marker = Path(__file__).with_name(".ran-once")
    if not marker.exists():
        marker.write_text("x")
        raise AssertionError("fails the first time only")
"""


def make_projects(root: Path) -> None:
    """green passes; red has a broken and a flaky test; low is below its coverage gate."""
    shutil.copytree(FIXTURES / "passing", root / "green")
    shutil.copytree(FIXTURES / "passing", root / "low")
    with (root / "low" / "calc" / "__init__.py").open("a", encoding="utf-8") as source:
        source.write("\n\ndef unused(x):\n    return x * 2\n")
    red = root / "red"
    (red / "tests").mkdir(parents=True)
    (red / "pyproject.toml").write_text(
        (FIXTURES / "passing" / "pyproject.toml")
        .read_text("utf-8")
        .replace("[tool.testgate]", "[tool.testgate]\nfail-under-line = 0\nfail-under-branch = 0"),
        "utf-8",
    )
    (red / "tests" / "test_red.py").write_text(RED_TESTS, "utf-8")


def run_act(root: Path) -> Ran:
    action = root / "action"
    action.mkdir()
    for name in ("action.yml", "action.lock"):
        shutil.copy(ROOT / name, action / name)
    shutil.copytree(
        ROOT / "runner", action / "runner", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "setup-uv").mkdir()
    (root / "setup-uv" / "action.yml").write_text(SETUP_UV, "utf-8")
    make_projects(root)
    repo = root / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    jobs = "".join(JOB.format(name=name) for name in ("green", "red", "low"))
    (repo / ".github" / "workflows" / "test.yml").write_text(
        f"name: test\non: push\njobs:\n{jobs}", "utf-8"
    )
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "workflow"], check=True)
    completed = subprocess.run(
        [str(ACT), "push", "-P", "ubuntu-latest=-self-hosted",
         "--local-repository", f"acme/testgate@v1={action}",
         "--local-repository", f"astral-sh/setup-uv@v6={root / 'setup-uv'}",
         "--env", f"TESTGATE_TEST_UV_DIR={Path(shutil.which('uv') or sys.executable).parent}",
         "--env", f"PROJECTS={root}"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    return Ran(completed.returncode, completed.stdout + completed.stderr, root, root)


@pytest.fixture(scope="module")
def act_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """One act run for the module: testgate's scheduler keeps its tests on one worker."""
    return once_per_session(tmp_path_factory, "act", run_act)


def job_lines(ran: Ran, job: str) -> list[str]:
    return [line for line in ran.output.splitlines() if line.startswith(f"[test/{job}")]


def outputs(ran: Ran, job: str) -> dict[str, str]:
    (line,) = [line for line in job_lines(ran, job) if "| outputs=" in line]
    found: dict[str, str] = json.loads(line.split("| outputs=", 1)[1])
    return found


def test_a_passing_project_passes_with_every_output_set(act_run: Ran) -> None:
    lines = job_lines(act_run, "green")
    assert any("🏁  Job succeeded" in line for line in lines), act_run.output[-3000:]
    found = outputs(act_run, "green")
    assert {key: found[key] for key in ("passed", "tests", "failed", "flaky", "skipped")} == {
        "passed": "true", "tests": "3", "failed": "0", "flaky": "0", "skipped": "0",
    }  # fmt: skip
    assert (found["line-coverage"], found["branch-coverage"]) == ("100.00", "100.00")
    assert (found["reports-dir"], found["diff-coverage"]) == ("testgate-reports", "")
    assert float(found["duration"]) > 0
    assert found["results-artifact"] == "testgate-results-green-0-attempt-1"
    summary = (act_run.project / "green" / "testgate-reports" / "summary.md").read_text("utf-8")
    assert "testgate passed" in summary
    # act gives no token: the base branch's history artifact is not read, and that is said
    assert found["history-artifact"] == "testgate-history"
    results = (act_run.project / "green" / "testgate-reports" / "results.json").read_text("utf-8")
    assert "the testgate-history artifact was not read" in json.loads(results)["run"]["warnings"][0]


def test_failures_and_flaky_tests_become_annotations_and_fail_the_job(act_run: Ran) -> None:
    lines = job_lines(act_run, "red")
    assert any("🏁  Job failed" in line for line in lines)
    errors = [line.split("❗  ", 1)[1] for line in lines if "❗  ::error" in line]
    assert errors == [
        "::error title=failed%3A tests/test_red.py%3A%3Atest_broken,file=tests/test_red.py,line=5"
        "::AssertionError: arithmetic, 100%25 broken%0Aassert (1 + 1) == 3"
    ]
    warnings = [line.split("🚧  ", 1)[1] for line in lines if "🚧  ::warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "::warning title=flaky (nondeterministic)%3A tests/test_red.py%3A%3Atest_flaky,"
        "file=tests/test_red.py,line=12::flaky: failed 1 of 2 attempts"
    )
    found = outputs(act_run, "red")
    assert (found["passed"], found["failed"], found["flaky"], found["tests"]) == (
        "false", "1", "1", "2",
    )  # fmt: skip
    # pytest's own output ran inside a stop-commands guard, opened and closed
    guards = [re.search(r"::stop-commands::(\w+)", line) for line in lines]
    tokens = [match.group(1) for match in guards if match]
    assert tokens
    assert all(any(f"::{token}::" in line for line in lines) for token in tokens)


def test_coverage_below_the_threshold_fails_the_job(act_run: Ran) -> None:
    lines = job_lines(act_run, "low")
    assert any("🏁  Job failed" in line for line in lines)
    found = outputs(act_run, "low")
    assert (found["passed"], found["failed"], found["tests"]) == ("false", "0", "3")
    assert float(found["line-coverage"]) < 100
    summary = (act_run.project / "low" / "testgate-reports" / "summary.md").read_text("utf-8")
    assert "line-coverage" in summary
    assert "FAIL" in summary


def test_the_action_validates_against_the_github_actions_schema() -> None:
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.github-actions", str(ROOT / "action.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok -- validation done" in checked.stdout
