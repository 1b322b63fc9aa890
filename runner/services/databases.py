"""A database of its own for every xdist worker, created before the run, dropped after.

Two workers that truncate the same tables make each other's tests fail at random, the
kind of flakiness no rerun fixes. Before ``testgate run`` starts pytest, this creates
``test_gw0 … test_gwN-1`` in each PostgreSQL and MySQL/MariaDB service (fresh: an old
one of that name is dropped first), and empties Redis database indexes ``0 … N-1``;
the injected plugin then points each worker's URL variable at its own. After the run
(and its reruns), the databases are dropped again.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from runner.errors import InfraError
from runner.services.probes import ATTEMPT_TIMEOUT_S, mongo_command, resp_command
from runner.services.running import WORKER, Running

REDIS_DATABASES = 16


def create(services: Sequence[Running], *, count: int) -> dict[str, str]:
    """Create the workers' databases; return the plugin's ``variable -> template`` map."""
    templates: dict[str, str] = {}
    for service in services:
        template = service.worker_template()
        if template is None:
            continue
        try:
            _create(service, count)
        except Exception as error:  # each client library has its own error classes
            raise InfraError(
                f"{service.name}: could not create the xdist workers' databases: {error}"
            ) from None
        templates[template[0]] = template[1]
    return templates


def drop(services: Sequence[Running], *, count: int) -> list[str]:
    """Drop the workers' databases; return a warning for each that could not be."""
    warnings = []
    for service in services:
        if service.worker_template() is None:
            continue
        try:
            _drop(service, count)
        except Exception as error:  # each client library has its own error classes
            warnings.append(f"{service.name}: the workers' databases were not dropped: {error}")
    return warnings


def ensure(service: Running) -> None:
    """Create the service's own database (``test``) in a server testgate just initialised."""
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            run(f'CREATE DATABASE "{service.database}"')
    elif service.kind in ("mysql", "mariadb"):
        _mysql_admin(service, [f"CREATE DATABASE IF NOT EXISTS `{service.database}`"])


def _names(service: Running, count: int) -> list[str]:
    base = f"{service.database_name}_{WORKER}"
    return [base.replace(WORKER, f"gw{index}") for index in range(max(1, count))]


def _create(service: Running, count: int) -> None:
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            for name in _names(service, count):
                run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                run(f'CREATE DATABASE "{name}"')
    elif service.kind in ("mysql", "mariadb"):
        statements = []
        for name in _names(service, count):
            statements += [f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}`"]
        _mysql_admin(service, statements)
    elif service.kind == "redis":
        if count > REDIS_DATABASES:
            raise InfraError(
                f"Redis has {REDIS_DATABASES} databases, not one for each of {count} workers; "
                f"use --workers {REDIS_DATABASES} or fewer."
            )
        _redis_flush(service, count)
    else:  # MongoDB creates a database on first write; start from an empty one
        _mongo_drop(service, count)


def _drop(service: Running, count: int) -> None:
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            for name in _names(service, count):
                run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif service.kind in ("mysql", "mariadb"):
        _mysql_admin(
            service, [f"DROP DATABASE IF EXISTS `{name}`" for name in _names(service, count)]
        )
    elif service.kind == "redis":
        _redis_flush(service, count)
    else:
        _mongo_drop(service, count)


@contextlib.contextmanager
def _postgres_admin(service: Running) -> Iterator[Callable[..., Any]]:
    """A connection to the server's maintenance database, for CREATE/DROP DATABASE."""
    import pg8000.native  # noqa: PLC0415  (imported only when PostgreSQL is used)

    database = service.database_name if service.backend == "external" else "postgres"
    connection = pg8000.native.Connection(
        service.user,
        host=service.host,
        port=service.port,
        database=database,
        password=service.password or None,
        timeout=ATTEMPT_TIMEOUT_S * 6,
    )
    try:
        yield connection.run
    finally:
        connection.close()


def _mysql_admin(service: Running, statements: Sequence[str]) -> None:
    import pymysql  # noqa: PLC0415  (imported only when MySQL is used)

    connection = pymysql.connect(
        host=service.host,
        port=service.port,
        user=service.user,
        password=service.password,
        connect_timeout=ATTEMPT_TIMEOUT_S,
    )
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()


def _redis_flush(service: Running, count: int) -> None:
    endpoint = service.endpoint()
    with socket.create_connection(
        (endpoint.host, endpoint.port), timeout=ATTEMPT_TIMEOUT_S
    ) as sock:
        reader = sock.makefile("rb")
        if endpoint.password:
            user = (endpoint.user,) if endpoint.user else ()
            sock.sendall(resp_command("AUTH", *user, endpoint.password))
            reader.readline()
        for index in range(max(1, count)):
            sock.sendall(resp_command("SELECT", str(index)) + resp_command("FLUSHDB"))
            for _ in range(2):
                answer = reader.readline()
                if answer.startswith(b"-"):
                    raise InfraError(f"Redis answered {answer.strip()[:200]!r}")


def _mongo_drop(service: Running, count: int) -> None:
    for name in _names(service, count):
        mongo_command(
            service.endpoint(), {"dropDatabase": 1, "$db": name}, timeout=ATTEMPT_TIMEOUT_S
        )
