"""Start pytest in the project's own environment: the only module that spawns it.

testgate never imports the project's code. runner.environment finds the project's
environment and what it lacks; this module starts pytest with the injected plugin on
``PYTHONPATH``. The child's environment is ``runner.child_env``'s: secrets and the
runner's file commands never reach the tests, and an outer pytest run does not leak in.
On a runner the child's output is relayed through ``runner.output.emit``, line by line,
so nothing it (or a process it left running) prints can issue a workflow command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runner import child_env, interrupts, process_group
from runner.child_env import child_environment
from runner.errors import InfraError
from runner.github.commands import on_github, stop_commands
from runner.output import emit
from runner.plugin import _testgate_wire as wire
from runner.settings import Settings

PLUGIN_DIR = Path(__file__).parent / "plugin"
PLUGIN_NAME = "_testgate_plugin"
RECORD_ENV = child_env.RECORD_ENV
SELECT_ENV = child_env.SELECT_ENV
SCHEDULE_ENV = child_env.SCHEDULE_ENV
WORKER_ENV = wire.WORKER_ENV
WORKERS_ENV = wire.WORKERS_ENV
TIMEOUTS_ENV = child_env.TIMEOUTS_ENV
RELAY_DRAIN_S = 0.25  # how long output may trail pytest's exit (a process it left running)
RELAYED_LINE_LIMIT = 16 * 1024  # bytes: a line a test prints longer is cut, saying so


@dataclass(frozen=True)
class Completed:
    """How a pytest process ended, and how long it took."""

    exit_code: int
    duration_s: float
    leftovers: tuple[str, ...] = ()
    stopped: str | None = None
    escaped: tuple[str, ...] = ()


def find_uv(environ: Mapping[str, str]) -> str:
    """The uv executable on PATH, or an InfraError that says how to get it."""
    uv = shutil.which("uv", path=environ.get("PATH"))
    if uv is None:
        raise InfraError(
            "uv is not on PATH: testgate installs and finds the project's environment with "
            "uv. Install uv ('pip install uv', or astral-sh/setup-uv on GitHub), or pass "
            "--python with an environment you installed yourself."
        )
    return uv


def timeouts_wanted(settings: Settings) -> bool:
    """Whether any test gets a time limit (``timeout`` 0 and no ``timeouts``: none)."""
    return settings.timeout > 0 or bool(settings.timeouts)


def pytest_timeout_wanted(settings: Settings) -> bool:
    """Whether the run needs pytest-timeout: only where there is no SIGALRM (Windows).

    Elsewhere the plugin enforces the limits itself, at a fraction of pytest-timeout's
    cost per test (``plugin/_testgate_timeouts``); a project that has pytest-timeout keeps
    it for its own ``@pytest.mark.timeout`` markers and options.
    """
    return timeouts_wanted(settings) and not hasattr(signal, "SIGALRM")


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
    its tests left running in the group is killed and named in ``leftovers``, and what
    left the group but carries the run's marker (a ``setsid`` daemon) in ``escaped``.
    """
    marker = process_group.marker()
    python_path = os.pathsep.join(
        part for part in (str(PLUGIN_DIR), environ.get("PYTHONPATH", "")) if part
    )
    env = child_environment(
        environ,
        PYTHONPATH=python_path,
        COVERAGE_FILE=str(coverage_file),
        **{RECORD_ENV: str(record), process_group.MARKER_ENV: marker},
        **({SELECT_ENV: str(select)} if select is not None else {}),
        **(extra_env or {}),
    )
    # On GitHub, the tests' output is untrusted: it may not issue workflow commands.
    github = on_github(environ)
    guard = stop_commands() if github else ("", "")
    emit(guard[0], commands=True)
    started = time.monotonic()
    try:
        # On a runner, pytest's output reaches the step's log only through testgate: line
        # by line, inert, and not after pytest and its group have ended (RELAY_DRAIN_S), so
        # a process a test left running cannot write past the guard.
        relayed = on_github(environ)
        interrupts.hold()  # a signal from here on stops pytest's group, once it has one
        child = process_group.start(
            command,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"} if relayed else env,
            piped=relayed,
        )
        # Beside the record: if testgate is killed (SIGKILL), the next run finds this in
        # the work dir left behind and stops what this pytest still runs (orphans).
        process_group.note_started(record.parent / process_group.STARTED, marker=marker)
        relay = _Relay(child.stdout) if child.stdout is not None else None
        if relay is not None:
            relay.start()
        exit_code, left, stopped = interrupts.wait(child, deadline=deadline, marker=marker)
        if relay is not None:
            relay.join(RELAY_DRAIN_S)
            relay.stop()
    except OSError as error:
        raise InfraError(f"could not start {command[0]}: {error}") from None
    finally:
        emit(guard[1], commands=True)
    return Completed(
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        leftovers=left.in_group,
        stopped=stopped,
        escaped=left.escaped,
    )


class _Relay(threading.Thread):
    """Reads a child's output and shows each line through ``emit`` until stopped."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lock = threading.Lock()
        self.open = True

    def run(self) -> None:
        with self.stream:
            # Read at most RELAYED_LINE_LIMIT bytes at a time: a line of megabytes is shown
            # cut, and never held whole.
            while piece := self.stream.readline(RELAYED_LINE_LIMIT):
                cut, rest = 0, piece
                while len(rest) == RELAYED_LINE_LIMIT and not rest.endswith(b"\n"):
                    rest = self.stream.readline(RELAYED_LINE_LIMIT)
                    cut += len(rest)
                line = piece.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
                if cut:
                    line += f" [... {cut} more bytes cut by testgate]"
                with self.lock:
                    if self.open:
                        emit(line + "\n", colours=True)

    def stop(self) -> None:
        with self.lock:
            self.open = False
