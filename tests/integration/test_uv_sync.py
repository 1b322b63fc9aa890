"""``uv sync`` says which environment it synced; a uv that cannot say it is asked as before."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import copy_fixture, run_in_process

# Stand-ins for a uv before 0.8, which knows no ``uv sync --output-format``: the one
# installed here, run with that option refused as uv 0.7 refuses it, or ignored (a uv
# that prints its usual text).
REFUSES = """#!/bin/sh
for arg; do
  if [ "$arg" = --output-format ]; then
    echo "error: unexpected argument '--output-format' found" >&2; exit 2
  fi
done
exec {uv} "$@"
"""
IGNORES = """#!/bin/sh
if [ "$1" = sync ]; then
  for arg; do shift; [ "$arg" = --output-format ] || [ "$arg" = json ] || set -- "$@" "$arg"; done
fi
exec {uv} "$@"
"""


@pytest.mark.parametrize("script", [REFUSES, IGNORES], ids=["refuses", "ignores"])
def test_a_uv_without_the_sync_report_still_syncs_and_finds_the_environment(
    tmp_path: Path, script: str
) -> None:
    uv = shutil.which("uv")
    assert uv is not None
    folder = tmp_path / "old-uv"
    folder.mkdir()
    (folder / "uv").write_text(script.format(uv=os.path.realpath(uv)), "utf-8")
    (folder / "uv").chmod(0o755)
    project = copy_fixture("passing", tmp_path)
    path = f"{folder}{os.pathsep}{os.environ['PATH']}"
    ran = run_in_process(project, extra_env={"PATH": path})
    assert ran.exit_code == 0, ran.output
    assert "uv sync --group dev" in ran.output
    assert "error: unexpected argument" not in ran.output  # asked again, not shown
    assert ran.results()["totals"]["passed"] == 3
