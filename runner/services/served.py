"""The services of one ``testgate run`` or ``flaky``: booting while the project installs.

``project_services`` starts them in the background as its block begins, so that image
pulls and server boots overlap the installation of the project; ``ProjectServices.environ``
awaits them only when the suite is about to need them, then makes each xdist worker's
database (running the project's ``service-setup`` in its installed environment) and
returns the variables the tests run with. When the block ends, however it ends, the
worker databases are dropped and the services the command started are stopped.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping

from runner.child_env import child_environment
from runner.environment import ProjectEnv
from runner.errors import InfraError
from runner.execute import WORKER_ENV
from runner.output import emit
from runner.services import databases, lifecycle, precedence
from runner.services.databases import DJANGO_ENV
from runner.services.schema import Setup
from runner.settings import Settings


class ServicesFailed(InfraError):
    """A service never became ready, or its ``service-setup`` failed: the run's reports
    say so (exit 3)."""


class ProjectServices:
    """The services of one command, coming up; ``environ`` awaits them for the tests.

    Made by ``project_services``: the services are starting when it is handed out, and
    stopped (their worker databases dropped) when that block ends. What the user should
    know about them goes into ``notes``, or is printed when it is None.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        starting: lifecycle.Starting,
        environ: Mapping[str, str],
        notes: list[str] | None,
    ) -> None:
        self.settings = settings
        self.starting = starting
        self.base = environ
        self.notes = notes
        self.isolation: databases.Isolation | None = None
        self.waited_s = 0.0
        self.ready_s = 0.0

    def environ(self, project_env: ProjectEnv) -> Mapping[str, str]:
        """The tests' environment: every service answered, each xdist worker's database made.

        ``project_env`` is the installed project: a service's setup command runs in it,
        and pytest-django there takes over the SQL databases. ``waited_s`` is the time
        this took (the part of the services' start the installation did not hide), and
        ``ready_s`` how long the slowest service took to answer from its start.
        Raises ServicesFailed when a service never became ready or its setup failed.
        """
        begun = time.monotonic()
        try:
            return self._environ(project_env)
        except InfraError as error:
            raise ServicesFailed(error.message) from None
        finally:
            self.waited_s = time.monotonic() - begun

    def _environ(self, project_env: ProjectEnv) -> Mapping[str, str]:
        settings, environ = self.settings, self.base
        services = self.starting.wait()
        if not services:
            return environ
        self.ready_s = max(running.ready_s for running in services)
        count = lifecycle.worker_count(settings.workers, environ)
        found = precedence.resolve(
            project=settings.project, services=services, mappings=settings.service_env or {}
        )
        exported = {**environ, **lifecycle.variables(services, found.mappings)}
        child = project_env.environ(child_environment(exported))
        setups = {
            name: Setup(command=command, project=settings.project, environ=child)
            for name, command in (settings.service_setup or {}).items()
        }
        django = project_env.has_pytest_django
        self.isolation = databases.create(
            services, count=count, mappings=found.mappings, setups=setups, django=django
        )
        served = {**exported, WORKER_ENV: json.dumps(self.isolation.templates)}
        if django:
            served[DJANGO_ENV] = "gw0"
        told = [*found.notes, *self.isolation.notes]
        if self.notes is None:
            emit("".join(f"testgate: notice: {note}\n" for note in told), stream=sys.stdout)
        else:
            self.notes[:] = told
        return served


@contextlib.contextmanager
def project_services(
    settings: Settings, *, environ: Mapping[str, str], notes: list[str] | None = None
) -> Iterator[ProjectServices]:
    """The services of ``run`` and ``flaky``: starting as the block begins, stopped after.

    Each xdist worker gets a database of its own in every database service
    (``ProjectServices.environ``); the databases are dropped and the run's own services
    stopped afterwards, whatever the outcome. What the user should know about them (a
    shared service, the variables an app's ``.env`` sets as well) goes into ``notes``, or
    is printed when none is given.
    """
    with lifecycle.session(
        settings.services,
        project=settings.project,
        backend=settings.services_backend,
        timeout=settings.services_timeout,
        environ=environ,
    ) as starting:
        services = ProjectServices(settings, starting=starting, environ=environ, notes=notes)
        try:
            yield services
        finally:
            if services.isolation is not None:
                warnings = databases.drop(services.isolation)
                emit(
                    "".join(f"testgate: warning: {text}\n" for text in warnings), stream=sys.stderr
                )
