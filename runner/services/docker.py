"""The ``docker`` backend: service containers, as on GitHub-hosted runners.

Thin on purpose: it builds ``docker`` command lines and reads their output, and the
readiness probes do the rest. Each container publishes its port on a random port of
127.0.0.1 (or the spec's fixed ``port=``) and carries the run's label, so ``down``
finds every container of the run even when the state file missed one. A container
that stops before it is ready fails at once, with its last log lines in the error. An
image that is neither here nor pullable is named in the error, with the engine's own
reason.
"""

from __future__ import annotations

import re
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence

import msgspec

from runner.errors import InfraError, TestgateError
from runner.services.probes import Endpoint
from runner.services.running import Running
from runner.services.spec import ServiceSpec

LABEL = "io.testgate.run"
LOG_LINES = 30
# How often a waiting probe asks the engine whether the container still runs when its
# 'docker wait' failed: each 'docker inspect' costs a process start, which would otherwise
# slow every probe's retry.
INSPECT_EVERY_S = 0.5
_PORT_LINE = re.compile(r"^(?P<host>[0-9.]+):(?P<port>\d+)$")
_NOT_HERE = "Unable to find image"


def run_command(spec: ServiceSpec, *, run_id: str) -> list[str]:
    """``docker run -d …`` for one service."""
    known = spec.known
    env = {**(known.container_env if known else {}), **spec.env}
    command = [
        "docker",
        "run",
        "--detach",
        "--label",
        f"{LABEL}={run_id}",
        "--label",
        f"io.testgate.service={spec.name}",
        "--publish",
        f"127.0.0.1:{spec.host_port or ''}:{spec.container_port}",
    ]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    return [*command, spec.image]


def parse_port(output: str) -> int:
    """The host port from ``docker port``'s output (IPv4 line first)."""
    for line in output.splitlines():
        match = _PORT_LINE.match(line.strip())
        if match:
            return int(match.group("port"))
    raise InfraError(f"cannot read a published port from 'docker port': {output.strip()!r}")


class DockerBackend:
    """Services as containers of the local Docker engine."""

    name = "docker"

    def __init__(self, environ: Mapping[str, str], *, run_id: str) -> None:
        self.environ = environ
        self.run_id = run_id
        self.inspected: dict[str, float] = {}  # container -> monotonic time of its last inspect
        # container -> its 'docker wait', which ends when the container does: asking it
        # costs no process start, so the probes' retries are never slowed by asking
        # whether the container still runs. Ended once it is ready or removed.
        self.watches: dict[str, subprocess.Popen[str]] = {}
        weakref.finalize(self, _end_all, self.watches)

    def unavailable(self, specs: Sequence[ServiceSpec]) -> TestgateError | None:
        if engine_answers(self.environ):
            return None
        return InfraError(
            "no Docker engine answers 'docker version' here; start Docker, or use "
            "--backend local to run the services from this machine's own binaries."
        )

    def _call(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; a missing CLI is exit 127, as a shell would say."""
        try:
            return subprocess.run(
                ["docker", *args], env=dict(self.environ), capture_output=True, text=True,
                encoding="utf-8", errors="replace", check=False,
            )  # fmt: skip
        except OSError as error:
            return subprocess.CompletedProcess(["docker", *args], 127, "", str(error))

    def _docker(self, args: Sequence[str]) -> str:
        return _checked(args, self._call(args))

    def start(self, spec: ServiceSpec) -> Running:
        args = run_command(spec, run_id=self.run_id)[1:]
        completed = self._call(args)
        if completed.returncode != 0 and _NOT_HERE in completed.stderr:
            reason = completed.stderr.split(_NOT_HERE, 1)[1].partition("\n")[2]
            reason = " ".join(
                line.strip()
                for line in reason.splitlines()
                if line.strip() and not line.startswith("Run 'docker")
            )
            raise InfraError(
                f"{spec.name}: the image {spec.image} is not on this machine and the engine "
                f"could not pull it ({reason.removeprefix('docker: ')[:300] or 'no reason given'}"
                f"); pull or build {spec.image} first, or correct the name in the service spec."
            )
        container = _checked(args, completed).strip()
        known = spec.known
        running = Running(
            name=spec.name,
            kind=spec.kind,
            backend=self.name,
            host="127.0.0.1",
            port=0,
            user=known.user if known else "",
            password=known.password if known else "",
            database=known.database if known else "",
            ready=spec.ready,
            container=container,
            description=f"container {spec.image}",
        )
        try:
            port = parse_port(self._docker(["port", container, f"{spec.container_port}/tcp"]))
        except InfraError as error:
            # A container that already exited publishes no port: say why it exited.
            died = self.died(running)
            message = error.message
            if died is not None:
                message = (
                    f"{spec.name} ({running.description}) never became ready: {died}\n"
                    f"  its last log lines:\n{self.logs(running)}"
                )
            self._remove(container)
            raise InfraError(message) from None
        self.inspected[container] = 0.0
        self.watches[container] = subprocess.Popen(
            ["docker", "wait", container], env=dict(self.environ), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            encoding="utf-8", errors="replace",
        )  # fmt: skip
        return msgspec.structs.replace(running, port=port)

    def endpoint(self, running: Running) -> Endpoint:
        return running.endpoint()

    def died(self, running: Running) -> str | None:
        container = str(running.container)
        watch = self.watches.get(container)
        if watch is not None:
            if watch.poll() is None:
                return None
            said = _end(self.watches.pop(container)).strip()
            if watch.returncode == 0 and said.isdigit():
                return f"its container exited with code {said}"
        # No 'docker wait' (it failed, or the container published no port): ask the engine.
        if time.monotonic() - self.inspected.get(container, 0.0) < INSPECT_EVERY_S:
            return None
        self.inspected[container] = time.monotonic()
        state = self._docker(
            ["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container]
        ).split()
        if state and state[0] in ("exited", "dead"):
            return f"its container exited with code {state[-1]}"
        return None

    def logs(self, running: Running) -> str:
        completed = self._call(["logs", "--tail", str(LOG_LINES), str(running.container)])
        text = (completed.stdout + completed.stderr).rstrip()
        return "\n".join("    " + line for line in text.splitlines()[-LOG_LINES:]) or "    (empty)"

    def ready(self, running: Running) -> Running:
        watch = self.watches.pop(str(running.container), None)
        if watch is not None:
            _end(watch)
        return running

    def stop(self, services: Sequence[Running], *, run_id: str) -> list[str]:
        """Remove every container that carries the run's label, never one by a recorded
        name (a state file may be forged): those of ``services`` are among them."""
        listed = self._call(["ps", "--all", "--quiet", "--filter", f"label={LABEL}={run_id}"])
        for container in listed.stdout.split():
            self._remove(container)
        _end_all(self.watches)
        return []

    def _remove(self, container: str) -> None:
        self._call(["rm", "--force", "--volumes", container])


def _end(watch: subprocess.Popen[str]) -> str:
    """End a ``docker wait`` (stopped, if it still waits: the container runs on); what it said."""
    if watch.poll() is None:
        watch.kill()
    said, _ = watch.communicate()
    return said or ""


def _end_all(watches: dict[str, subprocess.Popen[str]]) -> None:
    while watches:
        _end(watches.popitem()[1])


def _checked(args: Sequence[str], completed: subprocess.CompletedProcess[str]) -> str:
    """The output of ``docker ARGS``, or an InfraError with the end of what it said."""
    if completed.returncode != 0:
        raise InfraError(
            f"'docker {' '.join(args[:1])}' exited {completed.returncode}: "
            f"{completed.stderr.strip()[-500:]}"
        )
    return completed.stdout


def engine_answers(environ: Mapping[str, str]) -> bool:
    """Whether a Docker engine answers the ``docker`` CLI here."""
    try:
        completed = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=dict(environ),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0 and bool(completed.stdout.strip())
