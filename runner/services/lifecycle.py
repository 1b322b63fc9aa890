"""``services up`` and ``services down``: start, wait for, record, export and remove services.

``up`` picks a backend (``auto``: docker when an engine answers, else local binaries,
else an error that says what to install), starts every service at once, and waits for
each to answer its protocol before the deadline. Each service is written to the state
file as soon as it starts, so ``down`` can remove it even when ``up`` was killed. When
one service never becomes ready, its logs are in the error and everything already
started is removed again. ``down`` is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from runner import interrupts
from runner.errors import ConfigError, InfraError, TestgateError
from runner.output import emit
from runner.owned_dir import write_text
from runner.plural import counted
from runner.services.backends import AUTO, REGISTRY, Backend, backend_named
from runner.services.external import ExternalBackend
from runner.services.probes import NotReady, wait_ready
from runner.services.running import Running
from runner.services.spec import ServiceSpec

STATE_VERSION = 1
STATE_FILE = Path(".testgate") / "services.json"
IGNORE_TEXT = "# testgate's state; never commit it\n*\n"


class StateFile:
    """The record of what ``up`` started, for ``down`` and for ``testgate run``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.run_id = uuid.uuid4().hex[:12]
        self.backend = ""
        self.services: dict[str, Running] = {}

    def record(self, running: Running) -> None:
        with self.lock:
            self.services[running.name] = running
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"
        if not ignore.exists() and not ignore.is_symlink():  # written by rename: links stay
            write_text(ignore, IGNORE_TEXT)
        data = {
            "version": STATE_VERSION,
            "run_id": self.run_id,
            "backend": self.backend,
            "services": [running.to_json() for running in self.services.values()],
        }
        write_text(self.path, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> StateFile | None:
        """The recorded state, or None when there is none."""
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text("utf-8"))
            state = cls(path)
            state.run_id = str(data["run_id"])
            state.backend = str(data["backend"])
            state.services = {item["name"]: Running.from_json(item) for item in data["services"]}
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise InfraError(
                f"the services state file {path} cannot be read ({error}); stop what it "
                "names by hand, then delete it."
            ) from None
        return state

    def remove(self) -> None:
        """Remove the state file, and its folder when testgate made it (its .gitignore)."""
        self.path.unlink(missing_ok=True)
        ignore = self.path.parent / ".gitignore"
        with contextlib.suppress(OSError):
            if ignore.read_text("utf-8") == IGNORE_TEXT:  # never a .gitignore of the user's
                ignore.unlink()
                self.path.parent.rmdir()


def choose_backend(
    name: str, specs: Sequence[ServiceSpec], environ: Mapping[str, str], *, run_id: str
) -> Backend:
    """The backend for the specs that are not external ones (``name`` is one of BACKENDS).

    ``auto`` takes the first of ``AUTO`` that can start them; when none can, the error
    is the last one's.
    """
    to_start = [spec for spec in specs if spec.url is None]
    problem: TestgateError | None = None
    for candidate in AUTO if name == "auto" else (name,):
        chosen = backend_named(candidate, environ=environ, run_id=run_id)
        problem = chosen.unavailable(to_start)
        if problem is None:
            return chosen
    assert problem is not None
    raise problem


def up(
    specs: Sequence[ServiceSpec],
    *,
    backend: str,
    timeout: float,
    state_file: Path,
    environ: Mapping[str, str],
    log: TextIO | None = None,
) -> list[Running]:
    """Start every service, wait until each answers, record them; see the module doc."""
    out = sys.stderr if log is None else log
    if not specs:
        raise ConfigError("no services given: name at least one, such as 'postgres:16'.")
    if StateFile.load(state_file) is not None:
        raise ConfigError(
            f"services from an earlier 'up' are still recorded in {state_file}; run "
            "'testgate services down' first."
        )
    state = StateFile(state_file)
    chosen = choose_backend(backend, specs, environ, run_id=state.run_id)
    state.backend = chosen.name
    external = ExternalBackend()  # services given as NAME=URL, whatever the backend
    stopping = threading.Event()  # set when up is interrupted: the waits end at once

    def bring_up(spec: ServiceSpec) -> Running:
        owner: Backend = external if spec.url is not None else chosen
        port_free(spec)
        begun = time.monotonic()
        started = owner.start(spec)
        state.record(started)
        try:
            # The timeout counts from the start: an image pull or an initdb is not waiting.
            deadline = time.monotonic() + timeout
            wait_ready(
                owner.endpoint(started),
                deadline=deadline,
                died=lambda: (
                    "testgate was stopped"
                    if stopping.is_set()
                    else _stopped() or owner.died(started)
                ),
            )
        except NotReady as error:
            raise InfraError(
                f"{spec.name} ({started.description}) never became ready: {error}\n"
                f"  its last log lines:\n{owner.logs(started)}"
            ) from None
        data = owner.ready(started).to_json()
        data["ready_s"] = round(time.monotonic() - begun, 3)
        ready = Running.from_json(data)
        state.record(ready)
        return ready

    failures: list[str] = []
    ready: list[Running] = []
    try:
        ready, failures = _bring_all_up(bring_up, specs, stopping=stopping)
    finally:
        if failures or len(ready) < len(specs):
            _stop_all(state, environ)
    if failures:
        raise InfraError("\n".join(failures) + "\nEvery service started was stopped again.")
    for running in ready:
        spec = next(spec for spec in specs if spec.name == running.name)
        emit(
            f"testgate: {running.name} ready in {running.ready_s:.2f} s "
            f"({running.description} on {running.host}:{running.port})\n",
            stream=out,
        )
        if spec.version and running.backend == "local":
            found = running.description.rsplit(" ", 1)[-1]
            if not found.startswith(spec.version):
                emit(
                    f"testgate: notice: {spec.name} asked for version {spec.version}; "
                    f"this machine's is {found}.\n",
                    stream=out,
                )
    return ready


def _bring_all_up(
    bring_up: Callable[[ServiceSpec], Running],
    specs: Sequence[ServiceSpec],
    *,
    stopping: threading.Event,
) -> tuple[list[Running], list[str]]:
    """Bring every service up at once: those ready, and the failures' messages."""
    ready: list[Running] = []
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        try:
            for future in [pool.submit(bring_up, spec) for spec in specs]:
                try:
                    ready.append(future.result())
                except InfraError as error:
                    failures.append(error.message)
        except BaseException:  # an interruption: the other waits end, clean-up follows
            stopping.set()
            raise
    return ready, failures


def port_free(spec: ServiceSpec) -> None:
    """Fail clearly when the spec's fixed port is taken: the suite would test what is there."""
    if spec.host_port is None:  # external services take no options
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", spec.host_port))
        except OSError as error:
            raise InfraError(
                f"{spec.name}: port {spec.host_port} of 127.0.0.1 is taken ({error.strerror}), "
                "so the tests would reach whatever listens there; stop that, or give another "
                f"port=, or none for a free one ({spec.name} then exports the port it got)."
            ) from None


def _stopped() -> str | None:
    """A signal ends the wait for every service at once (they are then stopped)."""
    why = interrupts.reason()
    return None if why is None else f"testgate was interrupted by {why}"


def down(*, state_file: Path, environ: Mapping[str, str], log: TextIO | None = None) -> int:
    """Remove everything the state file records; return how many services were stopped."""
    out = sys.stderr if log is None else log
    state = StateFile.load(state_file)
    if state is None:
        emit(f"testgate: no services recorded in {state_file}; nothing to stop.\n", stream=out)
        return 0
    count = len(state.services)
    external = sum(running.backend == "external" for running in state.services.values())
    alone = _stop_all(state, environ, out=out)
    left = f"; {counted(external, 'external one')} left running" if external else ""
    emit(
        f"testgate: stopped {counted(count - external - alone, 'service')} and removed what "
        f"they left{left}.\n",
        stream=out,
    )
    return count


def _stop_all(state: StateFile, environ: Mapping[str, str], *, out: TextIO | None = None) -> int:
    """Stop what the state records and testgate started; what else it names is left alone.

    The state file may be forged (a pull request can commit ``.testgate/services.json``):
    a local service is stopped only when its dir is one testgate made
    (``made_by_testgate``), and containers are removed only by testgate's label, never by
    a recorded name. Each service left alone is a warning on ``out``; returns how many.
    """
    alone = 0
    recorded = list(state.services.values())
    names = dict.fromkeys([state.backend, *(running.backend for running in recorded)])
    for name in (name for name in names if name in REGISTRY):  # a forged name: nothing
        provider = backend_named(name, environ=environ, run_id=state.run_id)
        services = [running for running in recorded if running.backend == name]
        for warning in provider.stop(services, run_id=state.run_id):
            alone += 1
            emit(f"testgate: warning: {warning}\n", stream=out or sys.stderr)
    state.remove()
    return alone


def variables(
    services: Sequence[Running], mappings: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, str]:
    """Every exported variable of every service (``mappings``: the project's own names)."""
    found: dict[str, str] = {}
    for running in services:
        found.update(running.variables((mappings or {}).get(running.name)))
    return found


def write_env_file(path: Path, found: Mapping[str, str]) -> None:
    """``--env-file``: the variables as a dotenv file, ``NAME=VALUE`` a line.

    A dotenv file has no form for a line break (``docker run --env-file`` reads each line
    literally), so a value holding one (a URL's ``%0A``, decoded) would start a variable
    of its own in whatever reads the file: a ConfigError names it, and nothing is written.
    """
    for name, value in found.items():
        if "\n" in value or "\r" in value:
            raise ConfigError(
                f"the value of {name} holds a line break, which a dotenv file (--env-file) "
                "cannot carry: its reader would take the next line for a variable of its own. "
                "Give the service without one, or use the export lines (no --env-file) or "
                "$GITHUB_ENV, which carry any value."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}={value}\n" for name, value in found.items()), "utf-8")


def print_exports(found: Mapping[str, str], *, out: TextIO) -> None:
    """``export NAME=VALUE`` lines for ``eval``, each value shell-quoted."""
    for name, value in found.items():
        emit(f"export {name}={shlex.quote(value)}\n", stream=out)


def worker_count(workers: str, environ: Mapping[str, str]) -> int:
    """How many xdist workers ``--workers`` means (at least 1: no xdist is one worker)."""
    if workers.isdigit():
        return max(1, int(workers))
    configured = environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if configured.isdigit():
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)))


@contextlib.contextmanager
def session(
    specs: Sequence[ServiceSpec],
    *,
    project: Path,
    backend: str,
    timeout: float,
    environ: Mapping[str, str],
) -> Iterator[list[Running]]:
    """Services for one ``testgate run``: up before, down after, whatever happens between.

    Without specs, the services an earlier ``testgate services up`` recorded in the
    project are used (and left running).
    """
    if not specs:
        state = StateFile.load(project / STATE_FILE)
        yield [] if state is None else list(state.services.values())
        return
    state_file = project / ".testgate" / "run-services.json"
    if (earlier := StateFile.load(state_file)) is not None:  # a run that was killed
        _stop_all(earlier, environ)
    # A signal (runner.interrupts) ends the readiness wait and pytest; this clean-up follows.
    services = up(specs, backend=backend, timeout=timeout, state_file=state_file, environ=environ)
    try:
        yield services
    finally:
        down(state_file=state_file, environ=environ, log=sys.stdout)
