"""The real action.yml, run end to end by act (``act -P ubuntu-latest=-self-hosted``).

One workflow with four jobs runs the action, as a user's ``uses: acme/testgate@v1`` step,
on four projects: a hostile one that passes (its own ``runner/`` package, a test that writes
to ``GITHUB_ENV``: every output of a passing run is read from it, so one job proves both that
a passing project passes with every output set and that it cannot take over testgate), one
with a broken and a flaky test, one below its coverage threshold, and the example project
with its PostgreSQL service. act runs the jobs on this machine, without Docker.

Stand-ins, and only these: ``astral-sh/setup-uv`` downloads uv over the network, so act's
``--local-repository`` replaces it with a composite action that puts this machine's uv on
PATH (``SETUP_UV``, below). The action itself is a copy of this checkout's action.yml,
action.lock and runner/. act gives host jobs an empty workspace, so low, own and inventory
point the action's ``working-directory`` at their projects outside it; red is checked out, a
project in a subdirectory of the repository (``sub/dir/red``), as in a monorepo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.services.docker import engine_answers
from tests.action.act import ACT, SETUP_UV, SETUP_UV_REF, action_copy
from tests.conftest import FIXTURES, ROOT, Ran, once_per_session

JOB = """\
  {name}:
    runs-on: ubuntu-latest
    steps:{checkout}
      - id: tg
        uses: acme/testgate@v1
        with:
          working-directory: {directory}
          workers: "0"
          reruns: "1"
      - if: always()
        env:
          OUT: ${{{{ toJSON(steps.tg.outputs) }}}}
        run: echo "outputs=$OUT" | tr -d '\\n'; echo
"""
# red is a project in a subdirectory of the repository, as in a monorepo
CHECKOUT = "\n      - uses: actions/checkout@v4"
MONOREPO_DIR = "sub/dir/red"
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


SERVICES_JOB = """\
  inventory:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/testgate@v1
        with:
          working-directory: ${{ env.PROJECTS }}/inventory
          services: postgres:16
          workers: "0"
          fail-under-branch: "80"
"""
OWN_JOB = """\
  own:
    runs-on: ubuntu-latest
    steps:
      - id: tg
        uses: acme/testgate@v1
        with:
          working-directory: ${{ env.PROJECTS }}/own
          workers: "0"
      - if: always()
        env:
          OUT: ${{ toJSON(steps.tg.outputs) }}
        run: echo "outputs=$OUT" | tr -d '\\n'; echo
      - if: always()
        run: echo "next step sees HIJACK=${HIJACK:-unset}"
"""
SHADOW = """\
from pathlib import Path

Path("hijacked.txt").write_text("the project's runner/ ran instead of testgate")
print("HIJACKED")
"""
WRITES_GITHUB_ENV = """\
import os


def test_writes_the_next_steps_environment():
    path = os.environ.get("GITHUB_ENV")
    if path:
        with open(path, "a") as sink:
            sink.write("HIJACK=from-a-test\\n")
    assert path is None
"""


def make_projects(root: Path) -> None:
    """own passes (a hostile project); red has a broken and a flaky test; low is below its
    coverage gate; inventory is the example project, with its PostgreSQL from ``services:``."""
    shutil.copytree(ROOT / "examples" / "inventory", root / "inventory",
                    ignore=shutil.ignore_patterns(".venv", "*-reports"))  # fmt: skip
    shutil.copytree(FIXTURES / "passing", root / "low")
    with (root / "low" / "calc" / "__init__.py").open("a", encoding="utf-8") as source:
        source.write("\n\ndef unused(x):\n    return x * 2\n")
    red = root / "repo" / MONOREPO_DIR
    (red / "tests").mkdir(parents=True)
    (red / "pyproject.toml").write_text(
        (FIXTURES / "passing" / "pyproject.toml")
        .read_text("utf-8")
        .replace("[tool.testgate]", "[tool.testgate]\nfail-under-line = 0\nfail-under-branch = 0"),
        "utf-8",
    )
    (red / "tests" / "test_red.py").write_text(RED_TESTS, "utf-8")
    own = root / "own"
    shutil.copytree(FIXTURES / "passing", own)
    (own / "runner").mkdir()
    (own / "runner" / "__init__.py").write_text("", "utf-8")
    (own / "runner" / "__main__.py").write_text(SHADOW, "utf-8")
    (own / "tests" / "test_env.py").write_text(WRITES_GITHUB_ENV, "utf-8")
    with (own / "pyproject.toml").open("a", encoding="utf-8") as config:
        config.write('\n[tool.coverage.run]\nsource = ["calc"]\n')


def run_act(root: Path) -> Ran:
    action = action_copy(root)
    (root / "setup-uv").mkdir()
    (root / "setup-uv" / "action.yml").write_text(SETUP_UV, "utf-8")
    make_projects(root)
    repo = root / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".gitignore").write_text(".venv/\ntestgate-reports/\n", "utf-8")
    jobs = (
        "".join(
            JOB.format(name=name, checkout="", directory=f"${{{{ env.PROJECTS }}}}/{name}")
            for name in ("low",)
        )
        + JOB.format(name="red", checkout=CHECKOUT, directory=MONOREPO_DIR)
        + OWN_JOB
        + SERVICES_JOB
    )
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
         "--local-repository", f"{SETUP_UV_REF}={root / 'setup-uv'}",
         "--env", f"TESTGATE_TEST_UV_DIR={Path(shutil.which('uv') or sys.executable).parent}",
         "--env", f"PROJECTS={root}",
         *(["--env", f"DOCKER_HOST={os.environ['DOCKER_HOST']}"]
           if "DOCKER_HOST" in os.environ else [])],
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
    """The own job's project passes (the passing fixture and one more test): its outputs."""
    lines = job_lines(act_run, "own")
    assert any("🏁  Job succeeded" in line for line in lines), act_run.output[-3000:]
    found = outputs(act_run, "own")
    assert {key: found[key] for key in ("passed", "tests", "failed", "flaky", "skipped")} == {
        "passed": "true", "tests": "4", "failed": "0", "flaky": "0", "skipped": "0",
    }  # fmt: skip
    assert (found["line-coverage"], found["branch-coverage"]) == ("100.00", "100.00")
    # outside the workspace (act's host jobs: PROJECTS), the reports dir's own path
    reports = (act_run.project / "own" / "testgate-reports").resolve()
    assert (found["reports-dir"], found["diff-coverage"]) == (str(reports), "")
    assert float(found["duration"]) > 0
    assert found["results-artifact"] == "testgate-results-own-0-attempt-1"
    summary = (act_run.project / "own" / "testgate-reports" / "summary.md").read_text("utf-8")
    assert "testgate passed" in summary
    # own is no git repository: no base branch, so no history to read and nothing to warn of
    assert found["history-artifact"] == "testgate-history"
    results = (act_run.project / "own" / "testgate-reports" / "results.json").read_text("utf-8")
    assert json.loads(results)["run"]["warnings"] == []


def test_failures_and_flaky_tests_become_annotations_and_fail_the_job(act_run: Ran) -> None:
    lines = job_lines(act_run, "red")
    assert any("🏁  Job failed" in line for line in lines)
    errors = [line.split("❗  ", 1)[1] for line in lines if "❗  ::error" in line]
    # GitHub resolves file= from the repository root: the project's place is prefixed
    assert errors == [
        "::error title=failed%3A tests/test_red.py%3A%3Atest_broken,"
        f"file={MONOREPO_DIR}/tests/test_red.py,line=5"
        "::AssertionError: arithmetic, 100%25 broken%0Aassert (1 + 1) == 3"
    ]
    warnings = [line.split("🚧  ", 1)[1] for line in lines if "🚧  ::warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "::warning title=flaky (nondeterministic)%3A tests/test_red.py%3A%3Atest_flaky,"
        f"file={MONOREPO_DIR}/tests/test_red.py,line=12::flaky: failed 1 of 2 attempts"
    )
    found = outputs(act_run, "red")
    assert (found["passed"], found["failed"], found["flaky"], found["tests"]) == (
        "false", "1", "1", "2",
    )  # fmt: skip
    # a later step's path (upload-artifact's) is resolved from the workspace
    assert found["reports-dir"] == f"{MONOREPO_DIR}/testgate-reports"
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


def test_a_project_cannot_replace_testgate_nor_set_the_next_steps_environment(
    act_run: Ran,
) -> None:
    lines = job_lines(act_run, "own")
    assert any("🏁  Job succeeded" in line for line in lines), act_run.output[-3000:]
    found = outputs(act_run, "own")
    assert (found["passed"], found["tests"], found["failed"]) == ("true", "4", "0")
    assert not any("HIJACKED" in line for line in lines)
    assert not (act_run.project / "own" / "hijacked.txt").exists()
    assert any("next step sees HIJACK=unset" in line for line in lines)


def test_services_run_as_containers_when_an_engine_answers(act_run: Ran) -> None:
    lines = job_lines(act_run, "inventory")
    assert any("🏁  Job succeeded" in line for line in lines), "\n".join(lines[-60:])
    ready = [re.search(r"postgres ready in .* \((.*) on 127\.0\.0\.1:(\d+)\)", line)
             for line in lines]  # fmt: skip
    ((started, port),) = [match.groups() for match in ready if match]
    if not engine_answers(os.environ):
        pytest.skip(f"no Docker engine answers here: the job used {started}")
    assert started == "container postgres:16"
    assert any("stopped 1 service" in line for line in lines)
    published = subprocess.run(["docker", "ps", "--all", "--format", "{{.Ports}}"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"127.0.0.1:{port}->" not in published  # the job's container is gone


def test_the_action_validates_against_the_github_actions_schema() -> None:
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.github-actions", str(ROOT / "action.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok -- validation done" in checked.stdout
