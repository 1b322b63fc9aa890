"""This checkout's action under act (``act -P ubuntu-latest=-self-hosted``): what act tests share.

act runs a workflow's jobs on this machine, without Docker. ``--local-repository`` replaces
the action with a copy of this checkout (``action_copy``) and ``astral-sh/setup-uv``, which
downloads uv over the network, with a stand-in that puts this machine's uv on PATH
(``SETUP_UV`` at ``SETUP_UV_REF``, the pin action.yml uses).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from tests.conftest import ROOT

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
# astral-sh/setup-uv@<sha>, as action.yml pins it
SETUP_UV_REF = re.findall(
    r"uses: (astral-sh/setup-uv@\w+)", (ROOT / "action.yml").read_text("utf-8")
)[0]


def action_copy(root: Path) -> Path:
    """This checkout's action as act uses it (``--local-repository``): action.yml, its lock
    and the runner, in ``root/action``."""
    action = root / "action"
    action.mkdir()
    for name in ("action.yml", "action.lock"):
        shutil.copy(ROOT / name, action / name)
    shutil.copytree(
        ROOT / "runner", action / "runner", ignore=shutil.ignore_patterns("__pycache__")
    )
    return action
