"""A database of its own for every xdist worker, created before the run, dropped after.

Two workers that truncate the same tables make each other's tests fail at random, the
kind of flakiness no rerun fixes. Before ``testgate run`` starts pytest, this gives each
worker a database of its own in every PostgreSQL, MySQL/MariaDB, MongoDB and Redis
service; the injected plugin then points each worker's variables (its URL, ``PG*``,
``MYSQL_*``, the project's own ``env`` names ...) at it. After the run (and its reruns)
exactly what was created here is removed again.

testgate only ever removes what it created. On a service it started, it owns the whole
server: ``test_gw0 … test_gwN-1`` are created fresh and Redis databases ``0 … N-1`` are
emptied. On an external service (``NAME=URL``) it never drops, empties or reuses what
was there before it came: a worker database whose name is taken gets a name of its own,
Redis workers use only database indexes that hold no key, and where isolation is
impossible without touching what was there (no right to create databases, too few
empty Redis databases) it says so and the workers share the service, as given.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.errors import InfraError
from runner.services.probes import ATTEMPT_TIMEOUT_S, mongo_command, resp_command
from runner.services.running import ISOLATED, WORKER, Running

REDIS_DATABASES = 16
Templates = dict[str, str | list[str]]


@dataclass(frozen=True)
class Created:
    """What was made for one service's workers: database names, or Redis indexes."""

    service: Running
    names: tuple[str, ...]


@dataclass(frozen=True)
class Isolation:
    """The workers' databases: the plugin's templates, what to remove, what to tell.

    A template is a text with ``{worker}`` (``test_{worker}``), or one value per worker
    (Redis indexes, in worker order).
    """

    templates: Templates = field(default_factory=dict)
    created: tuple[Created, ...] = ()
    notes: tuple[str, ...] = ()


def create(
    services: Sequence[Running],
    *,
    count: int,
    mappings: Mapping[str, Mapping[str, str]] | None = None,
) -> Isolation:
    """Create the workers' databases; ``mappings`` are the project's own names per service."""
    templates: Templates = {}
    created: list[Created] = []
    notes: list[str] = []
    for service in services:
        if service.kind not in ISOLATED or service.url_variable is None:
            continue
        mapping = (mappings or {}).get(service.name)
        try:
            names, note = _create(service, max(1, count))
        except Exception as error:  # each client library has its own error classes
            _drop_all(created)
            raise InfraError(
                f"{service.name}: could not create the xdist workers' databases: {error}"
            ) from None
        if note:
            notes.append(f"{service.name}: {note}")
        if not names:
            continue
        created.append(Created(service=service, names=names))
        if service.kind == "redis":
            differ = {key for name in names for key in service.worker_variables(name, mapping)}
            per_worker = [service.variables(mapping, database=name) for name in names]
            for variable in sorted(differ, key=list(per_worker[0]).index):
                templates[variable] = [values[variable] for values in per_worker]
        else:
            base = names[0].removesuffix("gw0") + WORKER
            templates.update(service.worker_variables(base, mapping))
    return Isolation(templates=templates, created=tuple(created), notes=tuple(notes))


def drop(isolation: Isolation) -> list[str]:
    """Remove what ``create`` made; return a warning for each service where that failed."""
    warnings = []
    for made in isolation.created:
        try:
            _drop(made)
        except Exception as error:  # each client library has its own error classes
            warnings.append(
                f"{made.service.name}: the workers' databases were not dropped: {error}"
            )
    return warnings


def _drop_all(created: Sequence[Created]) -> None:
    for made in created:
        with contextlib.suppress(Exception):
            _drop(made)


def ensure(service: Running) -> None:
    """Create the service's own database (``test``) in a server testgate just initialised."""
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            run(f'CREATE DATABASE "{service.database}"')
    elif service.kind in ("mysql", "mariadb"):
        _mysql_admin(service, [f"CREATE DATABASE IF NOT EXISTS `{service.database}`"])


def _names(base: str, count: int) -> tuple[str, ...]:
    return tuple(f"{base}_gw{index}" for index in range(count))


def _create(service: Running, count: int) -> tuple[tuple[str, ...], str]:
    """The names made for the workers (empty: shared) and a note for the user."""
    if service.kind == "redis":
        return _redis_indexes(service, count)
    names = _names(service.database_name, count)
    if service.backend != "external":  # testgate's own server: start from fresh ones
        _remove(service, names)
        _make(service, names)
        return names, ""
    taken = set(_existing(service)) & set(names)
    note = ""
    if taken:
        fresh = _names(f"{service.database_name}_{secrets.token_hex(3)}", count)
        note = (
            f"{sorted(taken)[0]} already exists on the external server and is not "
            f"testgate's, so the workers use {fresh[0]} … instead (testgate never drops "
            "a database it did not create)."
        )
        names = fresh
    try:
        _make(service, names)
    except Exception as error:  # each client library has its own error classes
        return (), (
            f"cannot create the workers' databases on the external server ({error}); the "
            f"xdist workers share {service.database_name!r} as given. Grant the right to "
            "create databases, or run with --workers 1."
        )
    return names, note


def _existing(service: Running) -> list[str]:
    """The databases the external server holds now."""
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            return [row[0] for row in run("SELECT datname FROM pg_database")]
    if service.kind in ("mysql", "mariadb"):
        return [row[0] for row in _mysql_admin(service, ["SHOW DATABASES"])]
    answer = mongo_command(
        service.endpoint(),
        {"listDatabases": 1, "nameOnly": True, "$db": "admin"},
        timeout=ATTEMPT_TIMEOUT_S,
    )
    return [str(item["name"]) for item in answer.get("databases", [])]


def _make(service: Running, names: Sequence[str]) -> None:
    """Create the databases (each fails when it exists: what exists is never reused)."""
    made: list[str] = []
    try:
        for name in names:
            if service.kind == "postgres":
                with _postgres_admin(service) as run:
                    run(f'CREATE DATABASE "{name}"')
            elif service.kind in ("mysql", "mariadb"):
                _mysql_admin(service, [f"CREATE DATABASE `{name}`"])
            made.append(name)
    except Exception:
        with contextlib.suppress(Exception):
            _remove(service, made)  # only what this call made
        raise
    # MongoDB creates a database on its first write: a free name is all it takes.


def _remove(service: Running, names: Sequence[str]) -> None:
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            for name in names:
                run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif service.kind in ("mysql", "mariadb"):
        _mysql_admin(service, [f"DROP DATABASE IF EXISTS `{name}`" for name in names])
    else:
        for name in names:
            mongo_command(
                service.endpoint(), {"dropDatabase": 1, "$db": name}, timeout=ATTEMPT_TIMEOUT_S
            )


def _drop(made: Created) -> None:
    if made.service.kind == "redis":
        with _redis(made.service) as send:
            for index in made.names:
                send("SELECT", index)
                send("FLUSHDB")
    else:
        _remove(made.service, made.names)


def _redis_indexes(service: Running, count: int) -> tuple[tuple[str, ...], str]:
    """Database indexes for the workers: 0 … N-1 on testgate's own, else empty ones."""
    if service.backend != "external":
        if count > REDIS_DATABASES:
            raise InfraError(
                f"Redis has {REDIS_DATABASES} databases, not one for each of {count} workers; "
                f"use --workers {REDIS_DATABASES} or fewer."
            )
        indexes = tuple(str(index) for index in range(count))
        _drop(Created(service=service, names=indexes))
        return indexes, ""
    empty: list[str] = []
    with _redis(service) as send:
        for index in range(REDIS_DATABASES):
            if send("SELECT", str(index), check=False).startswith(b"-"):
                break  # a server configured with fewer databases
            if send("DBSIZE") == b":0":
                empty.append(str(index))
    if len(empty) < count:
        return (), (
            f"the external Redis has {len(empty)} empty database(s), not one for each of "
            f"{count} workers, and testgate never empties one it did not fill; the xdist "
            f"workers share database {service.database_name} as given. Use --workers "
            f"{max(1, len(empty))}, or a Redis of the run's own (--service redis)."
        )
    return tuple(empty[:count]), ""


@contextlib.contextmanager
def _redis(service: Running) -> Iterator[Callable[..., bytes]]:
    """A connection that sends one command and returns its one-line answer."""
    endpoint = service.endpoint()
    with socket.create_connection(
        (endpoint.host, endpoint.port), timeout=ATTEMPT_TIMEOUT_S
    ) as sock:
        reader = sock.makefile("rb")

        def send(*words: str, check: bool = True) -> bytes:
            sock.sendall(resp_command(*words))
            answer = reader.readline().strip()
            if check and answer.startswith(b"-"):
                raise InfraError(f"Redis answered {answer[:200]!r}")
            return answer

        if endpoint.password:
            send("AUTH", *((endpoint.user,) if endpoint.user else ()), endpoint.password)
        yield send


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


def _mysql_admin(service: Running, statements: Sequence[str]) -> list[Any]:
    """Run the statements; the rows the last one returned."""
    import pymysql  # noqa: PLC0415  (imported only when MySQL is used)

    connection = pymysql.connect(
        host=service.host,
        port=service.port,
        user=service.user,
        password=service.password,
        connect_timeout=ATTEMPT_TIMEOUT_S,
    )
    rows: list[Any] = []
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall())
        connection.commit()
    finally:
        connection.close()
    return rows
