"""One real run of the fixture app against external services that hold a user's data.

``tests/fixtures/sqlalchemy_app`` (an app reading ``POSTGRES_*``, mapped
``POSTGRES_SERVER``, libpq's ``PG*``, its schema from ``alembic upgrade head``, and Redis
and MySQL of its own) runs once per session with ``--workers 2`` and reruns (its flaky test
passes the first, so the second has nothing left to run). Beside its tests run those of
``tests/fixtures/services``, which read ``DATABASE_URL``, ``REDIS_URL`` and ``REDIS_DB`` (on
a table of their own, ``private_rows``: the app's migrated ``items`` has other columns). Its
services are external and already hold data: a Redis whose databases 0 and 1 hold keys, a
Redis with no empty database at all, a PostgreSQL database with the user's table and one
named as testgate's first worker database would be, a role without the right to create
databases, a MariaDB database named as the second worker's, and a MongoDB (a stand-in
speaking its protocol; MongoDB lies outside this machine) that lists one. What the servers
hold afterwards is recorded for ``test_services_apps`` (what an app sees) and
``test_security_services`` (what a user keeps).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pg8000.native
import pymysql
import pytest

from runner.services.probes import Endpoint, wait_ready
from tests.conftest import FIXTURES, Ran, copy_fixture, once_per_session, run_in_process
from tests.integration.test_services import FakeMongo

Facts = tuple[Ran, dict[str, Any]]
PRIVATE_ROWS = FIXTURES / "services" / "tests" / "test_private_rows.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_commands(port: int, *commands: tuple[str, ...]) -> list[str]:
    """Each command's answer (a bulk string's value), from a Redis on this machine."""
    answers = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")
        for words in commands:
            data = b"*%d\r\n" % len(words) + b"".join(
                b"$%d\r\n%s\r\n" % (len(word), word.encode()) for word in words
            )
            sock.sendall(data)
            answer = reader.readline().strip()
            if answer.startswith(b"$") and answer != b"$-1":
                answer = reader.readline().strip()
            answers.append(answer.decode())
    return answers


class Redis:
    """A redis-server of the test's own, to hold a user's keys."""

    def __init__(self, directory: Path, *, databases: int = 16) -> None:
        self.port = free_port()
        directory.mkdir()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--databases", str(databases), "--dir", str(directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        endpoint = Endpoint(probe="redis", host="127.0.0.1", port=self.port)
        wait_ready(endpoint, deadline=time.monotonic() + 10)

    def sizes(self, count: int) -> list[int]:
        commands = [c for index in range(count) for c in (("SELECT", str(index)), ("DBSIZE",))]
        return [int(answer[1:]) for answer in redis_commands(self.port, *commands)[1::2]]

    def user_keys(self) -> list[str]:
        return redis_commands(self.port, ("GET", "user:0"), ("SELECT", "1"), ("GET", "user:1"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def postgres(database: str = "postgres") -> Any:
    return pg8000.native.Connection("postgres", host="127.0.0.1", database=database)


def postgres_databases(pattern: str) -> list[str]:
    """The server's databases whose names are LIKE ``pattern``."""
    admin = postgres()
    query = f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1"
    names = [row[0] for row in admin.run(query)]
    admin.close()
    return names


def mysql(*statements: str) -> list[Any]:
    """Run the statements as root; the rows of the last."""
    connection = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    rows: list[Any] = []
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
            rows = [row[0] for row in cursor.fetchall()]
    connection.close()
    return rows


def _facts(base: str, redis: Redis, full: Redis, mongo: FakeMongo) -> dict[str, Any]:
    """What the servers hold after the run."""
    kept = postgres(base)
    rows = [row[0] for row in kept.run("SELECT note FROM users_own")]
    kept.close()
    kept = postgres(f"{base}_gw0")
    rows += [row[0] for row in kept.run("SELECT note FROM users_own")]
    kept.close()
    return {
        "base": base,
        "postgres": postgres_databases(f"{base}%"),
        "postgres_rows": rows,
        "mysql": mysql(f"SHOW DATABASES LIKE '{base}%'"),
        "mysql_rows": mysql(f"SELECT note FROM `{base}_gw1`.users_own"),
        "redis_sizes": redis.sizes(4),
        "redis_keys": redis.user_keys(),
        "full_keys": full.user_keys(),
        "mongo_dropped": [c["$db"] for c in mongo.commands if "dropDatabase" in c],
    }


def _prepare(base: str) -> None:
    """The user's own data, there before testgate comes."""
    admin = postgres()
    for name in (base, f"{base}_gw0"):
        admin.run(f'CREATE DATABASE "{name}"')
        user = postgres(name)
        user.run("CREATE TABLE users_own (note text)")
        user.run("INSERT INTO users_own VALUES ('kept')")
        user.close()
    admin.run(f'CREATE ROLE "{base}" LOGIN NOCREATEDB')
    admin.close()
    mysql(
        f"CREATE DATABASE `{base}`",
        f"CREATE DATABASE `{base}_gw1`",
        f"CREATE TABLE `{base}_gw1`.users_own (note text)",
        f"INSERT INTO `{base}_gw1`.users_own VALUES ('kept')",
    )


def _clean(base: str) -> None:
    admin = postgres()
    for name in (f"{base}_gw0", base):
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.run(f'DROP ROLE IF EXISTS "{base}"')
    admin.close()
    mysql(f"DROP DATABASE IF EXISTS `{base}`", f"DROP DATABASE IF EXISTS `{base}_gw1`")


def _produce(target: Path) -> Ran:
    base = "app" + secrets.token_hex(4)
    redis, full = Redis(target / "redis"), Redis(target / "full", databases=2)
    for server in (redis, full):
        redis_commands(
            server.port, ("SET", "user:0", "kept"), ("SELECT", "1"), ("SET", "user:1", "kept")
        )
    mongo = FakeMongo({"ok": 1.0, "databases": [{"name": "app"}, {"name": "app_gw0"}]})
    threading.Thread(target=mongo.serve_forever, daemon=True).start()
    _prepare(base)
    try:
        project = copy_fixture("sqlalchemy_app", target)
        shutil.copy(PRIVATE_ROWS, project / "tests")
        ran = run_in_process(
            project,
            "--workers", "2", "--reruns", "2",
            "--service", f"postgres=postgresql://postgres@127.0.0.1:5432/{base}",
            "--service", f"redis=redis://127.0.0.1:{redis.port}/0",
            "--service", f"full=redis://127.0.0.1:{full.port}/0",
            "--service", f"limited=postgresql://{base}@127.0.0.1:5432/{base}",
            "--service", f"mysql=mysql://root@127.0.0.1:3306/{base}",
            "--service", f"mongo=mongodb://127.0.0.1:{mongo.server_address[1]}/app",
        )  # fmt: skip
        (target / "facts.json").write_text(json.dumps(_facts(base, redis, full, mongo)), "utf-8")
    finally:
        mongo.shutdown()
        mongo.server_close()
        redis.stop()
        full.stop()
        _clean(base)
    return ran


def app_run(factory: pytest.TempPathFactory) -> Facts:
    """The session's one run of the app, and what the servers held after it."""
    ran = once_per_session(factory, "sqlalchemy-app", _produce)
    return ran, json.loads((ran.project.parent / "facts.json").read_text("utf-8"))
