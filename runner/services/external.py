"""The ``external`` backend: services that already run somewhere, given as ``NAME=URL``.

Nothing is started or stopped: the URL says where the service listens and how to log
in, the readiness probe checks it answers, and its variables are exported as for a
service testgate started. ``down`` leaves it running.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from runner.errors import ConfigError, TestgateError
from runner.services.probes import Endpoint
from runner.services.running import Running
from runner.services.spec import KINDS, ServiceSpec


class ExternalBackend:
    """Services that are already running somewhere: probe them and export them."""

    name = "external"

    def unavailable(self, specs: Sequence[ServiceSpec]) -> TestgateError | None:
        if not specs:
            return None
        return ConfigError(
            f"the external backend only probes services that already run; give "
            f"{specs[0].name} as NAME=URL, such as postgres=postgresql://127.0.0.1:5432/test."
        )

    def start(self, spec: ServiceSpec) -> Running:
        assert spec.url is not None
        parts = urlsplit(spec.url)
        known = KINDS.get(spec.kind)
        default_port = known.port if known else 80
        return Running(
            name=spec.name,
            kind=spec.kind,
            backend=self.name,
            host=parts.hostname or "",
            port=parts.port or default_port,
            user=unquote(parts.username or (known.user if known else "")),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")),
            ready=spec.ready,
            url=spec.url,
            description=f"external {known.label if known else spec.ready}",
        )

    def endpoint(self, running: Running) -> Endpoint:
        return running.endpoint()

    def died(self, running: Running) -> str | None:
        return None

    def ready(self, running: Running) -> Running:
        return running

    def logs(self, running: Running) -> str:
        return "    (an external service: its logs are wherever it runs)"

    def stop(self, services: Sequence[Running], *, run_id: str) -> list[str]:
        return []  # left running: testgate did not start it
