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

from runner.errors import ConfigError, InfraError
from runner.plugin import _testgate_wire as wire
from runner.plural import counted
from runner.services.probes import ATTEMPT_TIMEOUT_S, mongo_client, resp_command
from runner.services.running import ISOLATED, WORKER, Running
from runner.services.schema import Setup, run_setup

REDIS_DATABASES = 16
SQL = ("postgres", "mysql", "mariadb")
DJANGO_ENV = wire.DJANGO_ENV  # the plugin names reruns' test databases as gw0's
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
    django: tuple[Running, ...] = ()


def create(
    services: Sequence[Running],
    *,
    count: int,
    mappings: Mapping[str, Mapping[str, str]] | None = None,
    setups: Mapping[str, Setup] | None = None,
    django: bool = False,
) -> Isolation:
    """Create the workers' databases and their schema (``setups``, see ``schema``).

    ``mappings`` are the project's own variable names per service. With ``django``
    (pytest-django in the project's environment), SQL services are handed over as they
    are: pytest-django creates and migrates each worker's ``test_<name>_gwN`` itself.
    """
    _check_names(services, mappings or {}, setups or {})
    templates: Templates = {}
    created: list[Created] = []
    notes: list[str] = []
    handed: list[Running] = []
    for service in services:
        if service.kind not in ISOLATED or service.url_variable is None:
            continue
        if django and service.kind in SQL:
            notes.append(_hand_over(service, bool((setups or {}).get(service.name))))
            handed += [service] if service.backend != "external" else []
            continue
        mapping = (mappings or {}).get(service.name)
        setup = (setups or {}).get(service.name)
        try:
            names, extra, note = _create(service, max(1, count), setup=setup, mapping=mapping)
        except InfraError as error:
            _drop_all(created)
            raise InfraError(error.message) from None
        except Exception as error:  # each client library has its own error classes
            _drop_all(created)
            raise InfraError(
                f"{service.name}: could not create the xdist workers' databases: {error}"
            ) from None
        if note:
            notes.append(f"{service.name}: {note}")
        if not names:
            continue
        created.append(Created(service=service, names=(*names, *extra)))
        if service.kind == "redis":
            differ = {key for name in names for key in service.worker_variables(name, mapping)}
            per_worker = [service.variables(mapping, database=name) for name in names]
            for variable in sorted(differ, key=list(per_worker[0]).index):
                templates[variable] = [values[variable] for values in per_worker]
        else:
            base = names[0].removesuffix("gw0") + WORKER
            templates.update(service.worker_variables(base, mapping))
    return Isolation(
        templates=templates, created=tuple(created), notes=tuple(notes), django=tuple(handed)
    )


def _hand_over(service: Running, setup: bool) -> str:
    name = f"test_{service.database_name}"
    return (
        f"{service.name}: pytest-django creates each xdist worker's database itself "
        f"({name}_gw0 …, and {name}_gw0 again in reruns); testgate hands it the server"
        + (" and does not run service-setup (pytest-django migrates)" if setup else "")
        + (
            ", and removes those databases after the run."
            if service.backend != "external"
            else "; on this external server it never drops them (--reuse-db keeps them)."
        )
    )


def _check_names(
    services: Sequence[Running], mappings: Mapping[str, object], setups: Mapping[str, object]
) -> None:
    """A mapping or setup for a service the run does not have is a typo: say so."""
    kinds = {service.name: service.kind for service in services}
    for option, names in (("service-env", mappings), ("service-setup", setups)):
        for name in names:
            if name not in kinds or (option == "service-setup" and kinds[name] not in ISOLATED):
                what = "a database service" if option == "service-setup" else "a service"
                raise ConfigError(
                    f"{option} names {name!r}, which is not {what} of this run (its "
                    f"services: {', '.join(kinds)}); use one of their names."
                )


def drop(isolation: Isolation) -> list[str]:
    """Remove what ``create`` made; return a warning for each service where that failed."""
    warnings = []
    created = list(isolation.created)
    for service in isolation.django:  # a server testgate started: all of it is its own
        prefix = f"test_{service.database_name}"
        try:
            names = tuple(name for name in _existing(service) if name.startswith(prefix))
        except Exception as error:  # each client library has its own error classes
            warnings.append(f"{service.name}: pytest-django's databases were not listed: {error}")
            continue
        created.append(Created(service=service, names=names))
    for made in created:
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


def _create(
    service: Running, count: int, *, setup: Setup | None, mapping: Mapping[str, str] | None
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The workers' names (empty: shared), other names made (a template), a note."""
    if service.kind == "redis":
        indexes, note = _redis_indexes(service, count)
        for index in indexes if setup else ():
            _setup(service, setup, index, mapping)
        return indexes, (), note
    base = service.database_name
    template = bool(setup) and service.kind == "postgres"
    names = _names(base, count)
    extra = (f"{base}_template",) if template else ()
    note = ""
    if service.backend != "external":  # testgate's own server: start from fresh ones
        _remove(service, [*extra, *names])
    elif taken := set(_existing(service)) & {*names, *extra}:
        fresh = f"{base}_{secrets.token_hex(3)}"
        names, extra = _names(fresh, count), ((f"{fresh}_template",) if template else ())
        note = (
            f"{sorted(taken)[0]} already exists on the external server and is not "
            f"testgate's, so the workers use {names[0]} … instead (testgate never drops "
            "a database it did not create)."
        )
    made: list[str] = []
    try:
        _make(service, extra or names, made=made)
    except Exception as error:  # each client library has its own error classes
        if service.backend != "external":
            raise
        return (
            (),
            (),
            (
                f"cannot create the workers' databases on the external server ({error}); the "
                f"xdist workers share {base!r} as given"
                + (" and its setup command is not run there" if setup else "")
                + ". Grant the right to create databases, or run with --workers 1."
            ),
        )
    try:
        if extra:  # PostgreSQL: the schema once, copied into every worker's database
            _setup(service, setup, extra[0], mapping)
            _make(service, names, made=made, template=extra[0])
        for name in names if setup and not extra else ():
            _setup(service, setup, name, mapping)
    except Exception:
        with contextlib.suppress(Exception):
            _remove(service, made)  # only what was made here
        raise
    return names, extra, note


def _setup(
    service: Running, setup: Setup | None, database: str, mapping: Mapping[str, str] | None
) -> None:
    assert setup is not None
    run_setup(
        setup,
        service=service.name,
        database=database,
        variables=service.variables(mapping, database=database),
    )


def _existing(service: Running) -> list[str]:
    """The databases the external server holds now."""
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            return [row[0] for row in run("SELECT datname FROM pg_database")]
    if service.kind in ("mysql", "mariadb"):
        return [row[0] for row in _mysql_admin(service, ["SHOW DATABASES"])]
    with mongo_client(service.endpoint(), timeout=ATTEMPT_TIMEOUT_S) as client:
        return client.list_database_names()


def _make(
    service: Running, names: Sequence[str], *, made: list[str], template: str | None = None
) -> None:
    """Create the databases, adding each to ``made``; one that exists is an error, never reused.

    MongoDB creates a database on its first write: a free name is all it takes.
    """
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        for name in names:
            if service.kind == "postgres":
                with _postgres_admin(service) as run:
                    run(f'CREATE DATABASE "{name}"{copy}')
            elif service.kind in ("mysql", "mariadb"):
                _mysql_admin(service, [f"CREATE DATABASE `{name}`"])
            made.append(name)
    except Exception:
        with contextlib.suppress(Exception):
            _remove(service, [name for name in made if name in names])
        raise


def _remove(service: Running, names: Sequence[str]) -> None:
    if service.kind == "postgres":
        with _postgres_admin(service) as run:
            for name in names:
                run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif service.kind in ("mysql", "mariadb"):
        _mysql_admin(service, [f"DROP DATABASE IF EXISTS `{name}`" for name in names])
    else:
        with mongo_client(service.endpoint(), timeout=ATTEMPT_TIMEOUT_S) as client:
            for name in names:
                client.drop_database(name)


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
            f"the external Redis has {counted(len(empty), 'empty database')}, not one for each of "
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
