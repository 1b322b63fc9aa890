"""action.yml's own bash, run by bash with what GitHub would hand it (no act: milliseconds).

Each test takes one step's ``run`` text from action.yml and runs it with the step's
environment as GitHub fills it from the inputs; ``uv`` is a stand-in on PATH that prints
the arguments it was given, the one thing under test being how the step hands them on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from runner.settings import FALSE_WORDS, TRUE_WORDS
from tests.conftest import ROOT

UV = f"""#!{sys.executable}
import json, sys
print(json.dumps(sys.argv[1:]))
"""


def steps() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / "action.yml").read_text("utf-8"))
    found: list[dict[str, Any]] = loaded["runs"]["steps"]
    return found


def step(name: str) -> dict[str, Any]:
    (found,) = [item for item in steps() if item["name"] == name]
    return found


def bash(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The step's script under bash, with a ``uv`` stand-in first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "uv").write_text(UV, "utf-8")
    (bin_dir / "uv").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env={"PATH": path, "RUNNER_TEMP": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )


SYNC = "Sync the project"


@pytest.mark.parametrize(
    ("given", "arguments"),
    [
        ("--all-extras --dev", ["--all-extras", "--dev"]),
        # a block scalar (sync-args: |) holds one argument per line: every line counts
        ("--all-extras\n--group docs\n", ["--all-extras", "--group", "docs"]),
        ("--extra 'gpu support' --frozen", ["--extra", "gpu support", "--frozen"]),
    ],
)
def test_sync_args_reach_uv_sync_whole(tmp_path: Path, given: str, arguments: list[str]) -> None:
    ran = bash(step(SYNC)["run"], tmp_path, SYNC_ARGS=given, UV_PYTHON="", PYTHON=sys.executable)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == ["sync", *arguments]


def test_sync_args_that_cannot_be_split_stop_the_step(tmp_path: Path) -> None:
    ran = bash(step(SYNC)["run"], tmp_path, SYNC_ARGS="--extra 'gpu", PYTHON=sys.executable)
    assert ran.returncode == 2
    assert "::error title=testgate::sync-args cannot be split into arguments" in ran.stdout
    assert '["sync"' not in ran.stdout  # uv sync never ran
    assert "sync-args: No closing quotation" in ran.stderr


def test_setup_uv_takes_the_boolean_words_testgate_takes() -> None:
    # GitHub compares strings without case: contains() of the words is the input's truth.
    condition = step("Install uv")["if"]
    assert condition == (
        f"inputs.setup-uv == '' || contains(fromJSON('{json.dumps(list(TRUE_WORDS))}'), "
        "inputs.setup-uv)"
    )


@pytest.mark.parametrize("given", ["", *TRUE_WORDS, *FALSE_WORDS, "True", "NO"])
def test_a_setup_uv_word_passes_the_check(tmp_path: Path, given: str) -> None:
    ran = bash(steps()[0]["run"], tmp_path, SETUP_UV=given)
    assert ran.returncode == 0, ran.stdout + ran.stderr


@pytest.mark.parametrize("given", ["ture", "enabled", "yes please"])
def test_any_other_setup_uv_value_stops_the_action(tmp_path: Path, given: str) -> None:
    ran = bash(steps()[0]["run"], tmp_path, SETUP_UV=given)
    assert ran.returncode == 2
    assert "::error title=testgate::setup-uv must be true or false" in ran.stdout


@pytest.mark.parametrize("given", ["", "run"])
def test_an_empty_mode_is_run(tmp_path: Path, given: str) -> None:
    # GitHub hands an input given as "" (mode: ${{ matrix.mode }} with no such key) as "".
    fake = tmp_path / "testgate"
    fake.write_text('#!/bin/sh\necho "testgate $*"\n', "utf-8")
    fake.chmod(0o755)
    output = tmp_path / "output.txt"
    ran = bash(
        step("testgate ${{ inputs.mode }}")["run"],
        tmp_path,
        TESTGATE=str(fake),
        TESTGATE_MODE=given,
        GITHUB_OUTPUT=str(output),
        JOB_NAME="test",
    )
    assert (ran.returncode, ran.stdout) == (0, "testgate run\n"), ran.stderr


def test_the_uv_cache_glob_stays_in_the_workspace_when_the_directory_is_empty() -> None:
    # working-directory: "" made the glob /**/uv.lock: every uv.lock on the machine.
    glob = step("Install uv")["with"]["cache-dependency-glob"]
    assert glob.splitlines()[0] == "${{ inputs.working-directory || '.' }}/**/uv.lock"


@pytest.mark.parametrize("mode", ["flaky", "Run", "merge-all", "run\n::warning::x"])
def test_a_mode_the_action_has_not_stops_it_before_anything_starts(
    tmp_path: Path, mode: str
) -> None:
    # The first step: services and the project's install would otherwise run first.
    ran = bash(steps()[0]["run"], tmp_path, MODE=mode)
    assert ran.returncode == 2
    shown = mode.replace("\n", " ")  # one line: no second workflow command
    assert ran.stdout.splitlines() == [
        f"::error title=testgate::mode must be run, merge or flaky-detect, not {shown}"
    ]


def test_merge_without_reports_dirs_says_where_it_looked(tmp_path: Path) -> None:
    # A project in a subdirectory merges there: download-artifact's path must say so.
    ran = bash(
        step("testgate ${{ inputs.mode }}")["run"], tmp_path, TESTGATE="true",
        TESTGATE_MODE="merge", GITHUB_OUTPUT=str(tmp_path / "output.txt"), JOB_NAME="merge",
    )  # fmt: skip
    assert ran.returncode == 3
    assert (
        f"merge mode found no testgate-reports-* directories in {tmp_path}: download the "
        "shards' artifacts there first (actions/download-artifact's path, when "
        "working-directory is not the workspace)" in ran.stdout
    )


def test_services_are_stopped_only_when_their_step_ran() -> None:
    # A failed input check or install before it: nothing started, and no testgate command
    # to run 'down' with (before: a second, confusing error, "services: command not found").
    start, stop = step("Start services"), step("Stop services")
    assert stop["if"] == (
        'always() && contains(fromJSON(\'["success", "failure", "cancelled"]\'), '
        f"steps.{start['id']}.outcome)"
    )
