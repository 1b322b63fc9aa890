"""Hostile cases: on a service testgate did not start, it never deletes data it did not create.

One real ``testgate run --workers 2`` (with a rerun) is given external services that
already hold a user's data: two Redis servers whose databases hold keys (one with no
empty database left), a PostgreSQL and a MariaDB database named as testgate's first
worker database would be, a PostgreSQL role without the right to create databases, and a
MongoDB (a stand-in speaking its protocol: MongoDB lies outside this machine) that lists
a database of that name. Each case checks the exit code, the message's key words, and
that the user's keys, rows and databases are all still there afterwards, while nothing
testgate created is left.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pg8000.native
import pymysql
import pytest

from runner.services import lifecycle
from runner.services.probes import Endpoint, wait_ready
from runner.services.spec import parse_specs
from tests.conftest import Ran, copy_fixture, once_per_session, run_in_process
from tests.test_services import FakeMongo


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis(port: int, *commands: tuple[str, ...]) -> list[str]:
    """Each command's first answer line, from a Redis on this machine."""
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
    """A redis-server of this test's own, holding the user's keys."""

    def __init__(self, directory: Path, *, databases: int = 16) -> None:
        self.port = _free_port()
        directory.mkdir()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--databases", str(databases), "--dir", str(directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_ready(
            Endpoint(probe="redis", host="127.0.0.1", port=self.port),
            deadline=time.monotonic() + 10,
        )

    def sizes(self, count: int) -> list[int]:
        commands = [
            words for index in range(count) for words in (("SELECT", str(index)), ("DBSIZE",))
        ]
        return [int(answer[1:]) for answer in _redis(self.port, *commands)[1::2]]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def _postgres(database: str = "postgres") -> Any:
    return pg8000.native.Connection("postgres", host="127.0.0.1", database=database)


def _mysql() -> Any:
    return pymysql.connect(host="127.0.0.1", user="root", autocommit=True)


def _facts(base: str, redis: Redis, full: Redis, mongo: FakeMongo) -> dict[str, Any]:
    """What the servers hold after the run."""
    admin = _postgres()
    query = f"SELECT datname FROM pg_database WHERE datname LIKE '{base}%' ORDER BY 1"
    databases = [row[0] for row in admin.run(query)]
    admin.close()
    user = _postgres(f"{base}_gw0")
    rows = [row[0] for row in user.run("SELECT note FROM users_own")]
    user.close()
    connection = _mysql()
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW DATABASES LIKE '{base}%'")
        schemas = sorted(row[0] for row in cursor.fetchall())
        cursor.execute(f"SELECT note FROM `{base}_gw1`.users_own")
        mysql_rows = [row[0] for row in cursor.fetchall()]
    connection.close()
    return {
        "postgres": databases,
        "postgres_rows": rows,
        "mysql": schemas,
        "mysql_rows": mysql_rows,
        "redis_sizes": redis.sizes(4),
        "redis_keys": _redis(redis.port, ("GET", "user:0"), ("SELECT", "1"), ("GET", "user:1")),
        "full_keys": _redis(full.port, ("GET", "user:0"), ("SELECT", "1"), ("GET", "user:1")),
        "mongo_dropped": [c["$db"] for c in mongo.commands if "dropDatabase" in c],
    }


def _produce(target: Path) -> Ran:
    base = "sec" + secrets.token_hex(4)
    redis, full = Redis(target / "redis"), Redis(target / "full", databases=2)
    for server in (redis, full):
        _redis(server.port, ("SET", "user:0", "kept"), ("SELECT", "1"), ("SET", "user:1", "kept"))
    admin = _postgres()
    admin.run(f'CREATE DATABASE "{base}"')
    admin.run(f'CREATE DATABASE "{base}_gw0"')
    admin.run(f'CREATE ROLE "{base}" LOGIN NOCREATEDB')
    user = _postgres(f"{base}_gw0")
    user.run("CREATE TABLE users_own (note text)")
    user.run("INSERT INTO users_own VALUES ('kept')")
    user.close()
    connection = _mysql()
    with connection.cursor() as cursor:
        for statement in (f"CREATE DATABASE `{base}`", f"CREATE DATABASE `{base}_gw1`",
                          f"CREATE TABLE `{base}_gw1`.users_own (note text)",
                          f"INSERT INTO `{base}_gw1`.users_own VALUES ('kept')"):  # fmt: skip
            cursor.execute(statement)
    connection.close()
    mongo = FakeMongo({"ok": 1.0, "databases": [{"name": "app"}, {"name": "app_gw0"}]})
    threading.Thread(target=mongo.serve_forever, daemon=True).start()
    try:
        project = copy_fixture("hostile_services", target)
        ran = run_in_process(
            project,
            "--workers", "2", "--reruns", "1",
            "--service", f"redis=redis://127.0.0.1:{redis.port}/0",
            "--service", f"full=redis://127.0.0.1:{full.port}/0",
            "--service", f"postgres=postgresql://postgres@127.0.0.1:5432/{base}",
            "--service", f"limited=postgresql://{base}@127.0.0.1:5432/{base}",
            "--service", f"mysql=mysql://root@127.0.0.1:3306/{base}",
            "--service", f"mongo=mongodb://127.0.0.1:{mongo.server_address[1]}/app",
        )  # fmt: skip
        facts = _facts(base, redis, full, mongo)
        facts["base"] = base
        (target / "facts.json").write_text(json.dumps(facts), "utf-8")
    finally:
        mongo.shutdown()
        mongo.server_close()
        redis.stop()
        full.stop()
        admin.run(f'DROP DATABASE IF EXISTS "{base}_gw0" WITH (FORCE)')
        admin.run(f'DROP DATABASE IF EXISTS "{base}" WITH (FORCE)')
        admin.run(f'DROP ROLE IF EXISTS "{base}"')
        admin.close()
        connection = _mysql()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{base}`")
            cursor.execute(f"DROP DATABASE IF EXISTS `{base}_gw1`")
        connection.close()
    return ran


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, dict[str, Any]]:
    ran = once_per_session(tmp_path_factory, "hostile-services", _produce)
    return ran, json.loads((ran.project.parent / "facts.json").read_text("utf-8"))


def test_the_run_passes_with_one_flaky_test_and_isolated_workers(
    hostile: tuple[Ran, dict[str, Any]],
) -> None:
    ran, _ = hostile
    assert ran.exit_code == 0, ran.output
    totals = ran.results()["totals"]
    assert (totals["passed"], totals["flaky"], totals["failed"]) == (13, 1, 0)


def test_a_redis_whose_databases_hold_keys_keeps_them(hostile: tuple[Ran, dict[str, Any]]) -> None:
    """The workers used the empty databases 2 and 3, emptied them after, and left 0 and 1."""
    _, facts = hostile
    assert facts["redis_keys"] == ["kept", "+OK", "kept"]
    assert facts["redis_sizes"] == [1, 1, 0, 0]


def test_a_redis_without_an_empty_database_is_shared_and_never_emptied(
    hostile: tuple[Ran, dict[str, Any]],
) -> None:
    ran, facts = hostile
    assert "full: the external Redis has 0 empty database(s), not one for each of 2" in ran.output
    assert "testgate never empties one it did not fill; the xdist workers share" in ran.output
    assert facts["full_keys"] == ["kept", "+OK", "kept"]


@pytest.mark.parametrize(("service", "worker"), [("postgres", "gw0"), ("mysql", "gw1")])
def test_a_database_named_as_a_workers_is_never_dropped(
    hostile: tuple[Ran, dict[str, Any]], service: str, worker: str
) -> None:
    ran, facts = hostile
    base = facts["base"]
    assert (
        f"{service}: {base}_{worker} already exists on the external server and is not "
        in ran.output
    )
    assert "testgate never drops a database it did not create" in ran.output
    assert facts[f"{service}_rows"] == ["kept"]
    assert facts[service] == [base, f"{base}_{worker}"]  # and none of testgate's is left


def test_without_the_right_to_create_databases_the_workers_share_the_given_one(
    hostile: tuple[Ran, dict[str, Any]],
) -> None:
    ran, _ = hostile
    assert "limited: cannot create the workers' databases on the external server" in ran.output
    assert "Grant the right to create databases, or run with --workers 1." in ran.output


def test_a_mongodb_database_named_as_a_workers_is_never_dropped(
    hostile: tuple[Ran, dict[str, Any]],
) -> None:
    ran, facts = hostile
    assert "mongo: app_gw0 already exists on the external server" in ran.output
    assert "app_gw0" not in facts["mongo_dropped"]
    assert len(facts["mongo_dropped"]) == 2  # the two fresh names it used


def test_services_down_never_removes_a_gitignore_of_the_users(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("build/\n", "utf-8")
    state = tmp_path / "services.json"
    (spec,) = parse_specs(["redis=redis://127.0.0.1:6379/0"])
    lifecycle.up([spec], backend="auto", timeout=10, state_file=state, environ={})
    assert lifecycle.down(state_file=state, environ={}) == 1
    assert [path.name for path in tmp_path.iterdir()] == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text("utf-8") == "build/\n"
