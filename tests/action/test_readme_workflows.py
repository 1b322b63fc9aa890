"""The README's workflows, extracted from README.md and run by act, unedited, on the example.

The three complete workflows the README shows (single job, matrix + merge, scheduled
flaky detection) are copied byte for byte into a repository holding the example project
(``examples/inventory``) at its root, and act runs them on this machine
(``-P ubuntu-latest=-self-hosted``): the README cannot drift from what works.

Stand-ins, and only for what needs the network: ``astral-sh/setup-uv`` (it downloads uv
and Pythons: the stand-in puts this machine's on PATH), and the artifact and cache
actions (GitHub's services: the stand-ins keep them in a folder). ``OWNER/testgate@v1``
is this checkout's action.

The act runs cost about a minute of wall time on 2 cores (six jobs with a PostgreSQL
each, and 59 rounds of flaky detection), far over the suite's budget: CI runs them in a
job of its own (``TESTGATE_README_ACT=1``: .ci/run and .github/workflows/ci.yml); elsewhere they
are skipped, saying how to run them. The static checks of the README's blocks always
run. The act runs measure no runner code, so coverage loses nothing.
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

from tests.action.act import ACT, SETUP_UV_REF, action_copy
from tests.conftest import ROOT, Ran, once_per_session

slow_act = pytest.mark.skipif(
    os.environ.get("TESTGATE_README_ACT") != "1",
    reason="the README's workflows under act take about a minute: TESTGATE_README_ACT=1 runs "
    "them (.ci/run does, before the suite)",
)
# The matrix's Pythons, where this machine has them (elsewhere uv downloads them)
PYTHONS = [Path(sys.base_prefix) / "bin", *sorted(Path.home().glob(".pyenv/versions/3.12*/bin"))]

SETUP_UV = """\
name: setup-uv stand-in
description: Puts this machine's uv and Pythons on PATH (setup-uv would download them).
inputs:
  enable-cache: {default: "false"}
  cache-dependency-glob: {default: ""}
runs:
  using: composite
  steps:
    - shell: bash
      run: printf '%s\\n' $TESTGATE_TEST_PATHS >> "$GITHUB_PATH"
"""
UPLOAD = """\
name: upload-artifact stand-in
description: Keeps an artifact in $TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/artifacts/NAME.
inputs:
  name: {default: artifact}
  path: {required: true}
  if-no-files-found: {default: warn}
  include-hidden-files: {default: "false"}
  overwrite: {default: "false"}
runs:
  using: composite
  steps:
    - shell: bash
      env: {NAME: "${{ inputs.name }}", FROM: "${{ inputs.path }}",
            OVERWRITE: "${{ inputs.overwrite }}", MISSING: "${{ inputs.if-no-files-found }}"}
      run: |
        to="$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/artifacts/$NAME"
        # One upload at a time, as GitHub's artifact service takes them: a matrix's jobs
        # upload side by side, and under act every one gets the same name (act gives a
        # composite action no strategy.job-index), so the last one wins, as overwrite says.
        mkdir -p "$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW"
        exec 9> "$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/.uploads.lock"
        flock 9
        if [ ! -e "$FROM" ]; then
          if [ "$MISSING" = ignore ]; then exit 0; fi
          echo "::error::no files at $FROM"; exit 1
        fi
        if [ -e "$to" ] && [ "$OVERWRITE" != true ]; then
          echo "::error::an artifact named $NAME exists (set overwrite)"; exit 1
        fi
        rm -rf "$to"; mkdir -p "$to"; cp -R "$FROM" "$to/"
"""
DOWNLOAD = """\
name: download-artifact stand-in
description: Brings artifacts back from $TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/artifacts.
inputs:
  name: {default: ""}
  pattern: {default: ""}
  path: {default: "."}
runs:
  using: composite
  steps:
    - shell: bash
      env: {NAME: "${{ inputs.name }}", PATTERN: "${{ inputs.pattern }}", TO: "${{ inputs.path }}"}
      run: |
        cd "$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/artifacts"
        mkdir -p "$GITHUB_WORKSPACE/$TO"
        if [ -n "$NAME" ]; then
          if [ ! -d "$NAME" ]; then echo "::error::no artifact $NAME"; exit 1; fi
          for item in "$NAME"/* "$NAME"/.[!.]*; do
            if [ -e "$item" ]; then cp -R "$item" "$GITHUB_WORKSPACE/$TO/"; fi
          done
          exit 0
        fi
        for found in $PATTERN; do
          mkdir -p "$GITHUB_WORKSPACE/$TO/$found"
          for item in "$found"/*/* "$found"/*/.[!.]*; do
            if [ -e "$item" ]; then cp -R "$item" "$GITHUB_WORKSPACE/$TO/$found/"; fi
          done
        done
"""
CACHE_RESTORE = """\
name: cache/restore stand-in
description: Restores a cache by key, or the newest key with the prefix.
inputs:
  path: {required: true}
  key: {required: true}
  restore-keys: {default: ""}
runs:
  using: composite
  steps:
    - shell: bash
      env:
        TO: ${{ inputs.path }}
        KEY: ${{ inputs.key }}
        PREFIX: ${{ inputs.restore-keys }}
      run: |
        store="$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/cache"
        mkdir -p "$store"; cd "$store"
        found=$(ls -t | grep -x -F "$KEY" || (ls -t | grep -F "$PREFIX" | head -n 1) || true)
        if [ -n "$PREFIX$found" ] && [ -n "$found" ]; then
          mkdir -p "$(dirname "$GITHUB_WORKSPACE/$TO")"
          cp "$found/$(basename "$TO")" "$GITHUB_WORKSPACE/$TO"
          echo "restored cache $found"
        fi
"""
CACHE_SAVE = """\
name: cache/save stand-in
description: Saves into $TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/cache/KEY.
inputs:
  path: {required: true}
  key: {required: true}
runs:
  using: composite
  steps:
    - shell: bash
      env: {FROM: "${{ inputs.path }}", KEY: "${{ inputs.key }}"}
      run: |
        store="$TESTGATE_TEST_STORE/$GITHUB_WORKFLOW/cache/$KEY"
        mkdir -p "$store"; cp "$FROM" "$store/"
        echo "saved cache $KEY"
"""
# by the repository act looks up, then the action's path inside it
STAND_INS = {
    "actions/upload-artifact@v4": {"": UPLOAD},
    "actions/download-artifact@v4": {"": DOWNLOAD},
    "actions/cache@v4": {"restore": CACHE_RESTORE, "save": CACHE_SAVE},
}


def readme_workflows() -> dict[str, str]:
    """The README's complete workflows (its YAML blocks with ``jobs:``), by ``name:``."""
    text = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)
    found = {}
    for block in blocks:
        if re.search(r"^jobs:$", block, re.M):
            (name,) = re.findall(r"^name: (\S+)$", block, re.M)
            found[name] = block
    return found


def run_act(root: Path) -> Ran:
    """One act run per event: push (single job and matrix), then schedule (flaky)."""
    action = action_copy(root)
    stand_ins: list[str] = []
    for uses, texts in {SETUP_UV_REF: {"": SETUP_UV}, **STAND_INS}.items():
        folder = root / "stand-ins" / uses.replace("/", "-").replace("@", "-")
        for inside, text in texts.items():
            (folder / inside).mkdir(parents=True)
            (folder / inside / "action.yml").write_text(text, "utf-8")
        stand_ins += ["--local-repository", f"{uses}={folder}"]
    repo = root / "repo"
    shutil.copytree(ROOT / "examples" / "inventory", repo)
    (repo / ".github" / "workflows").mkdir(parents=True)
    for name, block in readme_workflows().items():
        (repo / ".github" / "workflows" / f"{name}.yml").write_text(block, "utf-8")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "the example, with the README's workflows"], check=True)
    (root / "store").mkdir()
    paths = [Path(shutil.which("uv") or sys.executable).parent, *PYTHONS]
    output = ""
    codes = []
    for event in ("push", "schedule"):
        completed = subprocess.run(
            [str(ACT), event, "-P", "ubuntu-latest=-self-hosted",
             "--local-repository", f"OWNER/testgate@v1={action}", *stand_ins,
             "--env", f"TESTGATE_TEST_PATHS={' '.join(map(str, paths))}",
             "--env", f"TESTGATE_TEST_STORE={root / 'store'}"],
            cwd=repo, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        output += completed.stdout + completed.stderr
        codes.append(completed.returncode)
    return Ran(max(codes), output, repo, root / "store")


@pytest.fixture(scope="module")
def act_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return once_per_session(tmp_path_factory, "readme-act", run_act)


def job_lines(ran: Ran, workflow: str, job: str) -> list[str]:
    return [line for line in ran.output.splitlines() if line.startswith(f"[{workflow}/{job}")]


@slow_act
def test_the_single_job_passes_with_pyprojects_threshold(act_run: Ran) -> None:
    lines = "\n".join(job_lines(act_run, "test", "test"))
    assert re.search(r"branch-coverage +80 % +87.50 % +pass", lines), lines[-3000:]
    assert (act_run.reports / "test" / "artifacts" / "testgate-results-test-0-attempt-1").is_dir()


def test_the_readme_shows_three_complete_workflows(npm_tools: Path, tmp_path: Path) -> None:
    workflows = readme_workflows()
    for name, block in workflows.items():
        (tmp_path / f"{name}.yml").write_text(block, "utf-8")
    linted = subprocess.run(
        ["node", str(npm_tools / "lint.mjs"), *sorted(map(str, tmp_path.glob("*.yml")))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(linted.stdout) == []  # actionlint, as for .github/workflows
    assert sorted(workflows) == ["flaky-detection", "test", "test-matrix"]
    for block in workflows.values():
        assert re.search(r"^on:", block, re.M)
        assert "checks: write" in block
        assert "actions: read" in block
        assert "services: postgres:16" in block
    assert "overwrite: true" in workflows["test-matrix"]
    assert "results-artifact" in workflows["test-matrix"]
    assert "flaky.json" in workflows["flaky-detection"]


@slow_act
def test_every_workflow_runs_as_written(act_run: Ran) -> None:
    failed = {line.split("]")[0] for line in act_run.output.splitlines() if "Job failed" in line}
    told = [line for line in act_run.output.splitlines() if line.split("]")[0] in failed]
    assert act_run.exit_code == 0, "\n".join(told)[-6000:] or act_run.output[-6000:]
    for workflow, job in [("test", "test"), ("test-matrix", "merge"), ("flaky-detection", "flaky")]:
        lines = job_lines(act_run, workflow, job)
        assert any("🏁  Job succeeded" in line for line in lines), (workflow, job)


@slow_act
def test_the_merge_gates_the_whole_matrix_with_pyprojects_thresholds(act_run: Ran) -> None:
    lines = "\n".join(job_lines(act_run, "test-matrix", "merge"))
    merged = "Merged 4 runs: `py3.11-linux shard 1/2 (testgate-reports-py3.11-1)`, "
    assert merged in act_run.output  # the job summary, printed by act
    assert re.search(r"branch-coverage +80 % ", lines), lines[-3000:]
    artifacts = act_run.reports / "test-matrix" / "artifacts"
    names = sorted(path.name for path in artifacts.iterdir())
    assert [name for name in names if name.startswith("testgate-reports-")] == [
        "testgate-reports-py3.11-1", "testgate-reports-py3.11-2",
        "testgate-reports-py3.12-1", "testgate-reports-py3.12-2",
    ]  # fmt: skip
    # (four on GitHub; act leaves strategy.job-index empty, so the shards share one name)
    assert [name for name in names if name.startswith("testgate-results-test-")]
    saved = list(act_run.reports.glob("test-matrix/cache/testgate-durations-*/durations.json"))
    assert len(saved) == 1
    assert len(json.loads(saved[0].read_text("utf-8"))) == 8


@slow_act
def test_flaky_detection_reports_its_verdicts(act_run: Ran) -> None:
    lines = "\n".join(job_lines(act_run, "flaky-detection", "flaky"))
    assert "testgate flaky: 8 stable" in lines, lines[-3000:]
    report = act_run.reports / "flaky-detection" / "artifacts" / "testgate-flaky-report"
    report = report / "flaky.json"
    assert {test["verdict"] for test in json.loads(report.read_text("utf-8"))["tests"]} == {
        "stable"
    }
