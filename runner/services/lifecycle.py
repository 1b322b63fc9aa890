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
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import msgspec

from runner import interrupts, services
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
STATE_FILE = services.STATE_FILE  # kept in the package, where cli's help names it
UP_LOG_ENV = "TESTGATE_SERVICES_LOG"  # where a background 'up' writes (the action's)
STOP_WAIT_S = 30.0  # how long 'down' waits for a background 'up' to stop what it started
IGNORE_TEXT = "# testgate's state; never commit it\n*\n"


class _Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """The state file as written and read back (``pid`` and ``ready`` came later: a state
    from before them reads as done, by no 'up' that still runs)."""

    version: int = STATE_VERSION
    run_id: str
    backend: str
    pid: int = 0
    ready: bool = True
    services: tuple[Running, ...]


class StateFile:
    """The record of what ``up`` started, for ``down`` and for ``testgate run``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.run_id = uuid.uuid4().hex[:12]
        self.backend = ""
        self.services: dict[str, Running] = {}
        self.pid = os.getpid()  # the 'up' that is starting them
        self.ready = False  # every service answered: 'up' is done

    def begin(self) -> None:
        """Record that this 'up' runs, before any service starts."""
        with self.lock:
            self._write()

    def done(self) -> None:
        """Record that every service answered: a run awaiting this 'up' may go on."""
        with self.lock:
            self.ready = True
            self._write()

    def record(self, running: Running) -> None:
        with self.lock:
            self.services[running.name] = running
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"
        if not ignore.exists() and not ignore.is_symlink():  # written by rename: links stay
            write_text(ignore, IGNORE_TEXT)
        recorded = _Recorded(
            run_id=self.run_id,
            backend=self.backend,
            pid=self.pid,
            ready=self.ready,
            services=tuple(self.services.values()),
        )
        text = msgspec.json.format(msgspec.json.encode(recorded), indent=2).decode()
        write_text(self.path, text + "\n")

    @classmethod
    def load(cls, path: Path) -> StateFile | None:
        """The recorded state, or None when there is none."""
        if not path.exists():
            return None
        try:
            recorded = msgspec.json.decode(path.read_bytes(), type=_Recorded)
        except (ValueError, OSError) as error:  # msgspec's errors are ValueErrors
            raise InfraError(
                f"the services state file {path} cannot be read ({error}); stop what it "
                "names by hand, then delete it."
            ) from None
        state = cls(path)
        state.run_id, state.backend = recorded.run_id, recorded.backend
        state.services = {running.name: running for running in recorded.services}
        state.pid, state.ready = recorded.pid, recorded.ready
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
    cancelled: threading.Event | None = None,
) -> list[Running]:
    """Start every service, wait until each answers, record them; see the module doc.

    Setting ``cancelled`` (from another thread) ends every wait at once: what was started
    is stopped again and an InfraError says so.
    """
    out = sys.stderr if log is None else log
    if not specs:
        raise ConfigError("no services given: name at least one, such as 'postgres:16'.")
    if StateFile.load(state_file) is not None:
        raise ConfigError(
            f"services from an earlier 'up' are still recorded in {state_file}; run "
            "'testgate services down' first."
        )
    state = StateFile(state_file)
    state.begin()  # at once: a run awaiting this 'up', and 'down', know of it from now on
    try:
        chosen = choose_backend(backend, specs, environ, run_id=state.run_id)
    except BaseException:  # none can start them, or a signal while an engine is asked
        state.remove()
        raise
    state.backend = chosen.name
    external = ExternalBackend()  # services given as NAME=URL, whatever the backend
    stopping = threading.Event() if cancelled is None else cancelled  # the waits end at once

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
        ready = msgspec.structs.replace(
            owner.ready(started), ready_s=round(time.monotonic() - begun, 3)
        )
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
    state.done()  # after what it says: a run awaiting it shows that
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
    if state is not None and not state.ready and _starting_up(state.pid):
        # An 'up' still starting them in the background: stopped first, it stops what it
        # started, so that nothing it starts after this is left behind.
        pid = state.pid
        os.kill(pid, signal.SIGTERM)
        interrupts.wait_while(lambda: _starting_up(pid), seconds=STOP_WAIT_S)
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


def _starting_up(pid: int) -> bool:
    """Whether process ``pid`` runs and is a ``testgate services up``.

    The state file may be forged (a pull request can commit it): the pid it names is
    signalled, or waited for, only when that process is such an ``up``.
    """
    if pid <= 0:
        return False
    try:
        listed = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(pid)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        ).stdout.split()
    except OSError:  # pragma: no cover (ps is part of every POSIX system)
        return False
    return any(listed[index : index + 2] == ["services", "up"] for index in range(len(listed)))


def show_said(log: str | None) -> None:
    """What a background ``up`` said (each service ready, in what) from its ``log``; not
    its export lines, as a value may be a secret."""
    if log and Path(log).is_file():
        lines = Path(log).read_text("utf-8", "replace").splitlines()
        emit("".join(f"{line}\n" for line in lines if line.startswith("testgate: ")))


def await_up(
    path: Path, *, pid: int, cancelled: threading.Event, log: str | None = None
) -> list[Running]:
    """The services that a ``testgate services up`` in process ``pid`` is starting, once
    its state file says every one answered.

    An InfraError when that ``up`` gave up (it removed the state file: a service never
    became ready), died, or is no ``up`` at all (``pid`` 0: none was seen; a forged state
    file); ``log`` is the file its output went to: shown once it is done, its end in the
    error.
    """
    while not cancelled.is_set():
        running = _starting_up(pid)  # before the state is read: it may finish in between
        state = StateFile.load(path)
        if state is not None and state.ready:
            show_said(log)
            return list(state.services.values())
        if state is None or not running:
            said = ""
            if log and Path(log).is_file():
                lines = Path(log).read_text("utf-8", "replace").rstrip().splitlines()
                said = "; its output ends:\n" + "\n".join(f"    {line}" for line in lines[-20:])
            raise InfraError(
                f"the services that 'testgate services up' (process {pid}) was starting "
                f"never became ready{said}"
            )
        cancelled.wait(interrupts.POLL_S)
    raise InfraError("testgate was stopped while it waited for the services")


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


class Starting:
    """Services coming up in a thread of their own while the project installs.

    ``wait`` returns them once every one answers (or raises what ``up`` raised);
    ``cancel`` ends the waits, so that what ``up`` started is stopped again.
    """

    def __init__(self, bring_up: Callable[[threading.Event], list[Running]] | None) -> None:
        self.cancelled = threading.Event()
        self.finished = threading.Event()  # set by the thread as it ends
        self.services: list[Running] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if bring_up is not None:
            self.thread = threading.Thread(target=self._up, args=(bring_up,), daemon=True)

    @classmethod
    def done(cls, services: list[Running]) -> Starting:
        """Services that are up already (an earlier ``services up``)."""
        starting = cls(None)
        starting.services = services
        return starting

    def start(self) -> None:
        """Start bringing the services up. Called inside the block whose clean-up cancels
        it: a signal raised between the thread's start and that block would leave the
        thread starting services that nothing stops."""
        assert self.thread is not None, "services that are up already start nothing"
        with interrupts.deferred():  # a signal inside start: the thread would run unawaited
            self.thread.start()

    def _up(self, bring_up: Callable[[threading.Event], list[Running]]) -> None:
        try:
            self.services = bring_up(self.cancelled)
        except BaseException as error:  # handed to the thread that waits
            self.error = error
        finally:
            self.finished.set()

    def _await_thread(self) -> None:
        """Until the thread has ended, a signal handled meanwhile. Not ``Thread.join``: a
        signal that raises inside ``join`` leaves CPython 3.11's thread marked as stopped
        while it still runs (``is_alive()`` is False from then on), so a clean-up after it
        would not wait for what the thread still does."""
        thread = self.thread
        while (
            thread is not None
            and thread.ident is not None
            and not self.finished.wait(interrupts.POLL_S)
        ):  # (a thread never started, as when a signal came first, sets nothing)
            pass

    def wait(self) -> list[Running]:
        """Every service once it answers; what ``up`` raised when one never did."""
        self._await_thread()
        if self.error is not None:
            interrupts.check()  # it gave up because a signal stopped the command
            raise self.error
        return self.services

    def cancel(self) -> None:
        """End the waits and let ``up`` stop what it started; returns once it has."""
        self.cancelled.set()
        self._await_thread()


@contextlib.contextmanager
def session(
    specs: Sequence[ServiceSpec],
    *,
    project: Path,
    backend: str,
    timeout: float,
    environ: Mapping[str, str],
) -> Iterator[Starting]:
    """Services for one ``testgate run``: started in the background as the block begins,
    awaited with ``wait`` (after the installation), down after, whatever happens between.

    Without specs, the services an earlier ``testgate services up`` recorded in the
    project are used (and left running); when that ``up`` still runs in the background,
    ``wait`` awaits it (``await_up``). ``TESTGATE_SERVICES_LOG`` names the output of an
    ``up`` started in the background for this run (the action's): without its state file,
    that ``up`` has already given up, and ``wait`` says so.
    """
    if not specs:
        path = project / STATE_FILE
        state, log = StateFile.load(path), environ.get(UP_LOG_ENV)
        if state is None and not log:
            yield Starting.done([])
        elif state is not None and state.ready:
            show_said(log)
            yield Starting.done(list(state.services.values()))
        else:  # an 'up' in the background (the action's, which names its log) starts them
            pid = 0 if state is None else state.pid
            awaiting = Starting(
                lambda cancelled: await_up(path, pid=pid, cancelled=cancelled, log=log)
            )
            try:
                awaiting.start()
                yield awaiting
            finally:
                awaiting.cancel()
        return
    state_file = project / ".testgate" / "run-services.json"
    if (earlier := StateFile.load(state_file)) is not None:  # a run that was killed
        _stop_all(earlier, environ)
        names = ", ".join(sorted(earlier.services)) or "none recorded"
        emit(
            f"testgate: stopped the services an earlier run left running ({names}): it "
            "ended before it could stop them (killed, or its machine went down)\n"
        )
    # A signal (runner.interrupts) ends the readiness wait and pytest; this clean-up follows.
    starting = Starting(
        lambda cancelled: up(
            specs,
            backend=backend,
            timeout=timeout,
            state_file=state_file,
            environ=environ,
            cancelled=cancelled,
        )
    )
    try:
        starting.start()
        yield starting
    finally:
        starting.cancel()  # unless awaited: up stops what it started
        if state_file.exists():
            down(state_file=state_file, environ=environ, log=sys.stdout)
