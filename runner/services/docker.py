"""The ``docker`` backend: service containers, as on GitHub-hosted runners.

Thin on purpose: it builds ``docker`` command lines and reads their output, and the
readiness probes do the rest. Each container publishes its port on a random port of
127.0.0.1 (or the spec's fixed ``port=``) and carries the run's label, so ``down``
finds every container of the run even when the state file missed one. A container
that stops before it is ready fails at once, with its last log lines in the error.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.errors import InfraError
from runner.services.running import Running
from runner.services.spec import ServiceSpec

LABEL = "io.testgate.run"
LOG_LINES = 30
_PORT_LINE = re.compile(r"^(?P<host>[0-9.]+):(?P<port>\d+)$")


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


@dataclass
class Container:
    """A container started and not yet known to be ready."""

    running: Running


class DockerBackend:
    """Services as containers of the local Docker engine."""

    name = "docker"

    def __init__(self, environ: Mapping[str, str], *, run_id: str) -> None:
        self.environ = environ
        self.run_id = run_id

    def _call(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; a missing CLI is exit 127, as a shell would say."""
        try:
            return subprocess.run(
                ["docker", *args], env=dict(self.environ), capture_output=True, text=True,
                check=False,
            )  # fmt: skip
        except OSError as error:
            return subprocess.CompletedProcess(["docker", *args], 127, "", str(error))

    def _docker(self, args: Sequence[str]) -> str:
        completed = self._call(args)
        if completed.returncode != 0:
            raise InfraError(
                f"'docker {' '.join(args[:1])}' exited {completed.returncode}: "
                f"{completed.stderr.strip()[-500:]}"
            )
        return completed.stdout

    def start(self, spec: ServiceSpec) -> Container:
        container = self._docker(run_command(spec, run_id=self.run_id)[1:]).strip()
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
        except InfraError:
            self.stop(running)
            raise
        data = running.to_json()
        data["port"] = port
        return Container(running=Running.from_json(data))

    def died(self, started: Container) -> str | None:
        state = self._docker(
            [
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                str(started.running.container),
            ]
        ).split()
        if state and state[0] in ("exited", "dead"):
            return f"its container exited with code {state[-1]}"
        return None

    def logs(self, running: Running) -> str:
        completed = self._call(["logs", "--tail", str(LOG_LINES), str(running.container)])
        text = (completed.stdout + completed.stderr).rstrip()
        return "\n".join("    " + line for line in text.splitlines()[-LOG_LINES:]) or "    (empty)"

    def stop(self, running: Running) -> None:
        self._call(["rm", "--force", "--volumes", str(running.container)])

    def stop_run(self, run_id: str) -> None:
        """Remove every container that carries the run's label (idempotent)."""
        listed = self._call(["ps", "--all", "--quiet", "--filter", f"label={LABEL}={run_id}"])
        for container in listed.stdout.split():
            self.stop(Running(name="", kind="", backend=self.name, host="", port=0,
                              container=container))  # fmt: skip


def engine_answers(environ: Mapping[str, str]) -> bool:
    """Whether a Docker engine answers the ``docker`` CLI here."""
    try:
        completed = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0 and bool(completed.stdout.strip())
