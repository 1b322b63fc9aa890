"""Backends: the protocol every way of providing services follows, and the registry by name.

``lifecycle`` drives each service through the same steps, whatever provides it:

1. ``unavailable`` says why the backend cannot start these specs here (None: it can);
2. ``start`` starts one service without waiting, and returns the ``Running`` that the
   state file records at once (so ``down`` can remove it even when ``up`` is killed);
3. its ``endpoint`` is probed until it answers its protocol; meanwhile ``died`` says
   whether its process or container is already gone (the wait then ends at once);
4. ``ready`` finishes what needs the server answering (the local backend creates the
   service's database), and returns the ``Running`` to export;
5. ``logs`` gives the end of its log for an error message;
6. ``stop`` removes what the backend started of the recorded services (idempotent).

``REGISTRY`` maps each backend's name (``--backend``, ``services-backend``) to how it
is made; ``auto`` tries ``AUTO`` in order. A new backend is one class and one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from runner.errors import TestgateError
from runner.services.docker import DockerBackend
from runner.services.external import ExternalBackend
from runner.services.local import LocalBackend
from runner.services.probes import Endpoint
from runner.services.running import Running
from runner.services.spec import ServiceSpec


class Backend(Protocol):
    """One way of providing services (docker, local processes, external); see the module doc."""

    name: str

    def unavailable(self, specs: Sequence[ServiceSpec]) -> TestgateError | None:
        """Why these specs (those to start: no NAME=URL ones) cannot be started here, as
        the error to raise, or None when they can."""
        ...

    def start(self, spec: ServiceSpec) -> Running:
        """Start one service without waiting for it; raises InfraError when it cannot."""
        ...

    def endpoint(self, running: Running) -> Endpoint:
        """Where and how the readiness probe reaches the service while it starts."""
        ...

    def died(self, running: Running) -> str | None:
        """Why the started service is gone (``its server exited with code 1``), or None."""
        ...

    def ready(self, running: Running) -> Running:
        """What follows its first answer; the service as it is then exported."""
        ...

    def logs(self, running: Running) -> str:
        """The last lines of its log, indented for an error message."""
        ...

    def stop(self, services: Sequence[Running], *, run_id: str) -> list[str]:
        """Remove what this backend started of ``services`` (those it provides) and of the
        run ``run_id``; idempotent. Returns a warning for each service it left alone."""
        ...


Factory = Callable[[Mapping[str, str], str], Backend]  # (environment, run id) -> backend
REGISTRY: Mapping[str, Factory] = {
    DockerBackend.name: lambda environ, run_id: DockerBackend(environ, run_id=run_id),
    LocalBackend.name: lambda environ, run_id: LocalBackend(environ),
    ExternalBackend.name: lambda environ, run_id: ExternalBackend(),
}
AUTO = (DockerBackend.name, LocalBackend.name)  # what ``auto`` tries, in this order


def backend_named(name: str, *, environ: Mapping[str, str], run_id: str) -> Backend:
    """The backend registered as ``name`` (one of REGISTRY's keys)."""
    return REGISTRY[name](environ, run_id)
