"""Start pytest in the project's own environment: the only module that spawns it.

testgate never imports the project's code. runner.environment finds the project's
environment and what it lacks; this module starts pytest with the injected plugin on
``PYTHONPATH``. The child's environment is ``runner.child_env``'s: secrets and the
runner's file commands never reach the tests, and an outer pytest run does not leak in.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner import child_env, interrupts, process_group
from runner.child_env import child_environment
from runner.errors import InfraError
from runner.github import on_github, stop_commands
from runner.output import emit
from runner.settings import Settings

PLUGIN_DIR = Path(__file__).parent / "plugin"
PLUGIN_NAME = "_testgate_plugin"
RECORD_ENV = child_env.RECORD_ENV
SELECT_ENV = child_env.SELECT_ENV
SCHEDULE_ENV = child_env.SCHEDULE_ENV
WORKER_ENV = "TESTGATE_WORKER_ENV"
TIMEOUTS_ENV = child_env.TIMEOUTS_ENV


@dataclass(frozen=True)
class Completed:
    """How a pytest process ended, and how long it took."""

    exit_code: int
    duration_s: float
    leftovers: tuple[str, ...] = ()
    stopped: str | None = None


def find_uv(environ: Mapping[str, str]) -> str:
    """The uv executable on PATH, or an InfraError that says how to get it."""
    uv = shutil.which("uv", path=environ.get("PATH"))
    if uv is None:
        raise InfraError(
            "uv is not on PATH: testgate runs the suite in the project's environment with "
            "'uv run'. Install uv ('pip install uv', or astral-sh/setup-uv on GitHub)."
        )
    return uv


def timeouts_wanted(settings: Settings) -> bool:
    """Whether any test gets a time limit (``timeout`` 0 and no ``timeouts``: none)."""
    return settings.timeout > 0 or bool(settings.timeouts)


def timeouts_plan(settings: Settings) -> str:
    """The plugin's time limits: the default and the per-marker ones, as JSON."""
    return json.dumps({"default": settings.timeout, "markers": dict(settings.timeouts)})


def run_pytest(
    command: Sequence[str],
    *,
    cwd: Path,
    environ: Mapping[str, str],
    record: Path,
    coverage_file: Path,
    select: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    deadline: float | None = None,
) -> Completed:
    """Run pytest, its output streaming to ours; return its exit code and wall time.

    ``select`` names the plugin's selection file (a rerun or replay); ``extra_env`` adds
    variables such as a fresh ``PYTHONHASHSEED``. pytest runs in a process group of its
    own, stopped as a whole on a signal or at ``deadline`` (``time.monotonic()``); what
    its tests left running in the group is killed and named in ``leftovers``.
    """
    python_path = os.pathsep.join(
        part for part in (str(PLUGIN_DIR), environ.get("PYTHONPATH", "")) if part
    )
    env = child_environment(
        environ,
        PYTHONPATH=python_path,
        COVERAGE_FILE=str(coverage_file),
        **{RECORD_ENV: str(record)},
        **({SELECT_ENV: str(select)} if select is not None else {}),
        **(extra_env or {}),
    )
    # On GitHub, the tests' output is untrusted: it may not issue workflow commands.
    guard = stop_commands() if on_github(environ) else ("", "")
    emit(guard[0], commands=True)
    started = time.monotonic()
    try:
        child = process_group.start(command, cwd=cwd, env=env)
        exit_code, leftovers, stopped = interrupts.wait(child, deadline=deadline)
    except OSError as error:
        raise InfraError(f"could not start {command[0]}: {error}") from None
    finally:
        emit(guard[1], commands=True)
    return Completed(
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        leftovers=leftovers,
        stopped=stopped,
    )
