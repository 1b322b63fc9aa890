"""Start pytest in the project's own environment: the only module that spawns it.

testgate never imports the project's code. It asks ``uv run`` for the project's
environment, probes once what is installed there (pytest, xdist, pytest-cov), adds
what is missing with ``uv run --with``, and starts pytest with the injected plugin on
``PYTHONPATH``. The child's environment is ``runner.environment``'s: secrets and the
runner's file commands never reach the tests, and an outer pytest run does not leak in.
On a runner the child's output is relayed through ``runner.output.emit``, line by line,
so nothing it (or a process it left running) prints can issue a workflow command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runner import environment
from runner.environment import child_environment
from runner.errors import InfraError
from runner.github import on_github, stop_commands
from runner.output import emit
from runner.settings import Settings

PLUGIN_DIR = Path(__file__).parent / "plugin"
PLUGIN_NAME = "_testgate_plugin"
RECORD_ENV = environment.RECORD_ENV
SELECT_ENV = environment.SELECT_ENV
SCHEDULE_ENV = environment.SCHEDULE_ENV
WORKER_ENV = "TESTGATE_WORKER_ENV"
RELAY_DRAIN_S = 0.25  # how long output may trail pytest's exit (a process it left running)
RELAYED_LINE_LIMIT = 16 * 1024  # bytes: a line a test prints longer is cut, saying so

_PROBE = """
import importlib.util, json, platform, sys
have = lambda name: importlib.util.find_spec(name) is not None
print(json.dumps({"python": platform.python_version(), "platform": sys.platform,
    "pytest": have("pytest"), "xdist": have("xdist"), "pytest_cov": have("pytest_cov"),
    "randomly": have("pytest_randomly")}))
"""


@dataclass(frozen=True)
class ProjectEnv:
    """What the project's environment holds, as far as running its tests goes."""

    python: str
    platform: str
    has_pytest: bool
    has_xdist: bool
    has_cov: bool
    has_randomly: bool = False


@dataclass(frozen=True)
class Completed:
    """How a pytest process ended, and how long it took."""

    exit_code: int
    duration_s: float


def find_uv(environ: Mapping[str, str]) -> str:
    """The uv executable on PATH, or an InfraError that says how to get it."""
    uv = shutil.which("uv", path=environ.get("PATH"))
    if uv is None:
        raise InfraError(
            "uv is not on PATH: testgate runs the suite in the project's environment with "
            "'uv run'. Install uv ('pip install uv', or astral-sh/setup-uv on GitHub)."
        )
    return uv


def uv_run(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The ``uv run`` prefix for the project's environment."""
    command = [find_uv(environ), "run", "--project", str(settings.project)]
    if not settings.sync:
        command.append("--no-sync")
    if settings.python_version:
        command += ["--python", settings.python_version]
    return command


def probe(settings: Settings, environ: Mapping[str, str]) -> ProjectEnv:
    """Ask the project's environment which Python it is and which plugins it has."""
    command = [*uv_run(settings, environ), "python", "-c", _PROBE]
    # The project's Python runs its dependencies' .pth files, outside pytest's guard: on
    # GitHub what it (or uv) says is shown through the one writer, inert.
    github = on_github(environ)
    completed = subprocess.run(
        command,
        cwd=settings.project,
        env=child_environment(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if github else None,
        check=False,
    )
    if github:
        emit(completed.stderr.decode("utf-8", "replace"), stream=sys.stderr, colours=True)
    if completed.returncode != 0:
        raise InfraError(
            f"'uv run' could not prepare the project's environment in {settings.project} "
            f"(exit {completed.returncode}); its message is above. Check that "
            "'uv sync' works there."
        )
    try:
        found = json.loads(completed.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        return ProjectEnv(
            python=str(found["python"]),
            platform=str(found["platform"]),
            has_pytest=bool(found["pytest"]),
            has_xdist=bool(found["xdist"]),
            has_cov=bool(found["pytest_cov"]),
            has_randomly=bool(found["randomly"]),
        )
    except (ValueError, KeyError, IndexError, TypeError):
        raise InfraError(
            "the project's Python did not answer testgate's probe: "
            f"{completed.stdout[-500:]!r}. Does 'uv run python' work in the project?"
        ) from None


def pytest_command(
    *,
    settings: Settings,
    env: ProjectEnv,
    environ: Mapping[str, str],
    cov_args: Sequence[str],
    workers: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The full command: ``uv run [--with plugins] python -m pytest`` with testgate's flags.

    ``workers`` overrides the setting (reruns use fewer); ``extra_args`` come last.
    """
    command = uv_run(settings, environ)
    workers = settings.workers if workers is None else workers
    parallel = workers != "0"
    wanted = (
        ("pytest", env.has_pytest),
        ("pytest-xdist", env.has_xdist or not parallel),
        ("pytest-cov", env.has_cov),
    )
    for package, present in wanted:
        if not present:
            command += ["--with", package]
    command += ["python", "-m", "pytest", "-p", PLUGIN_NAME]
    if parallel:
        command += ["-n", workers, "--dist", settings.dist]
    return [*command, *cov_args, *settings.pytest_args, *extra_args]


def run_pytest(
    command: Sequence[str],
    *,
    cwd: Path,
    environ: Mapping[str, str],
    record: Path,
    coverage_file: Path,
    select: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Completed:
    """Run pytest, its output streaming to ours; return its exit code and wall time.

    ``select`` names the plugin's selection file (a rerun or replay); ``extra_env`` adds
    variables such as a fresh ``PYTHONHASHSEED``.
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
    github = on_github(environ)
    guard = stop_commands() if github else ("", "")
    emit(guard[0], commands=True)
    started = time.monotonic()
    try:
        if github:
            exit_code = _run_relayed(command, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"})
        else:
            exit_code = subprocess.run(command, cwd=cwd, env=env, check=False).returncode
    except OSError as error:
        raise InfraError(f"could not start {command[0]}: {error}") from None
    finally:
        emit(guard[1], commands=True)
    return Completed(exit_code=exit_code, duration_s=time.monotonic() - started)


def _run_relayed(command: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> int:
    """Run ``command`` with its output shown through ``emit``; its exit code.

    The stop-commands guard ends when pytest does, but a process a test left running
    could write after it: so on a runner the output reaches the step's log only through
    testgate, line by line, inert; what comes later than ``RELAY_DRAIN_S`` after pytest
    has exited is dropped (and testgate does not wait for such a process).
    """
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    relay = _Relay(process.stdout)  # type: ignore[arg-type]
    relay.start()
    exit_code = process.wait()
    relay.join(RELAY_DRAIN_S)
    relay.stop()
    return exit_code


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
