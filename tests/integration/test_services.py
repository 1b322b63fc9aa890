"""``testgate services``: specs, real services on this machine, readiness, teardown.

PostgreSQL, MariaDB, Redis and RabbitMQ are real: started from this machine's binaries
(``--backend local``) and probed where they already run (``external``). A Docker engine
and MongoDB lie outside this machine: the ``docker`` CLI is replaced by a stand-in
script that records its arguments and answers as the real one does (its port mapping
points at the real Redis), and MongoDB by a small server speaking its OP_MSG protocol
(no mongod can be installed here), which pymongo talks to as to a standalone server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import msgspec
import pg8000.native
import pytest
from pytest_httpserver import HTTPServer

from runner.cli import main
from runner.errors import ConfigError, InfraError
from runner.services import databases
from runner.services.backends import AUTO, REGISTRY
from runner.services.external import ExternalBackend
from runner.services.lifecycle import StateFile, choose_backend
from runner.services.local import LocalBackend, Recipe, find_binary, stop_local
from runner.services.probes import Endpoint, NotReady, check, resp_command, wait_ready
from runner.services.running import Running
from runner.services.spec import BACKENDS, parse_specs
from tests.conftest import environment
from tests.integration.test_security import runner_file_command

SYSTEM = {
    "postgres": "postgres=postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql=mysql://root@127.0.0.1:3306/test",
    "redis": "redis=redis://127.0.0.1:6379/0",
    "rabbitmq": "rabbitmq=amqp://guest:guest@127.0.0.1:5672/%2F",
}


def services(capfd: pytest.CaptureFixture[str], *args: str, **env: str) -> tuple[int, str, str]:
    """``testgate services ...`` in this process: exit code, stdout, stderr."""
    code = main(["services", *args], environ=environment(**env))
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        "Z"
        not in Path(f"/proc/{pid}/stat")
        .read_text("utf-8", errors="replace")
        .rsplit(")", 1)[-1]
        .split()[0]
    )


# --- specs ------------------------------------------------------------------------


def test_specs_of_every_form() -> None:
    specs = parse_specs(
        [
            "postgres:16, redis\n# a comment\nmysql:8",
            "cache=redis:7",
            "db=postgresql://app:s%40cret@db.example:6543/app",
            "web=ghcr.io/acme/web:1.2 port=8080 env=MODE=test ready=http:/health",
            "search=opensearch port=9200 'ready=cmd:curl -f localhost:9200'",
            "api=http://127.0.0.1:8000/health",
            "pg2=postgres:15 port=5433 env=POSTGRES_PASSWORD=x",
        ]
    )
    got = {spec.name: spec for spec in specs}
    assert list(got) == [
        "postgres", "redis", "mysql", "cache", "db", "web", "search", "api", "pg2",
    ]  # fmt: skip
    assert (got["api"].kind, got["api"].ready, got["api"].port) == ("generic", "http:/health", 8000)
    assert (got["postgres"].kind, got["postgres"].version, got["postgres"].image) == (
        "postgres", "16", "postgres:16",
    )  # fmt: skip
    assert (got["cache"].kind, got["cache"].prefix) == ("redis", "CACHE")
    assert (got["db"].kind, got["db"].port, got["db"].url) == (
        "postgres", 6543, "postgresql://app:s%40cret@db.example:6543/app",
    )  # fmt: skip
    assert (got["web"].kind, got["web"].port, got["web"].ready, dict(got["web"].env)) == (
        "generic", 8080, "http:/health", {"MODE": "test"},
    )  # fmt: skip
    assert got["search"].ready == "cmd:curl -f localhost:9200"
    assert (got["pg2"].kind, got["pg2"].version, got["pg2"].host_port) == ("postgres", "15", 5433)
    assert got["pg2"].container_port == 5432  # port= of a known kind is the fixed host port
    (fixed,) = parse_specs(["redis:7 port=6379"])
    assert (fixed.name, fixed.kind, fixed.host_port, fixed.container_port) == (
        "redis", "redis", 6379, 6379,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "postgress:16",
            "unknown service 'postgress' in 'postgress:16'; known services: postgres,",
        ),
        ("nginx port=1", "options such as 'port=1' need a name"),
        ("redis port=6379x", "cannot use 'port=6379x'"),
        ("9x=redis", "'9x' is not a usable name"),
        ("web=nginx", "a generic service needs port=PORT"),
        ("web=nginx port=http", "cannot use 'port=http'"),
        ("web=Not An Image port=80", "is not an image name"),
        ("db=ftp://host/x", "the scheme 'ftp' is not one testgate can probe"),
        ("db=tcp://host", "the URL needs a host and a port"),
        ("db=postgresql://host:99999/x", "the URL's port is not a port number"),
        ("db=postgresql://h/x port=1", "an external service takes no options"),
        ("redis, redis:7", "service 'redis' is given twice"),
        ("web='unclosed", "cannot be split into words"),
    ],
)
def test_bad_specs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_specs([text])
    assert message in raised.value.message


def test_unknown_service_exits_2_naming_the_known_ones(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = services(capfd, "up", "postgress", "--state-file", str(tmp_path / "s.json"))
    assert code == 2
    assert "known services: postgres, mysql, mariadb, redis, mongo, rabbitmq" in err
    code, _, err = services(capfd, "up", "redis", "--backend", "podman")
    assert (code, "--backend: 'podman' must be one of auto, docker, local, external") == (
        2, err.strip().removeprefix("testgate: error: ").split(" (")[0],
    )  # fmt: skip
    code, _, err = services(capfd, "up", TESTGATE_SERVICES="")
    assert (code, "no services given") == (2, err.split(": ", 2)[2][:17])
    code, _, err = services(
        capfd, "up", TESTGATE_SERVICES="redis", TESTGATE_SERVICES_BACKEND="external"
    )
    assert code == 2
    assert "the external backend only probes services that already run; give redis as" in err
    code, _, err = services(capfd, "up", "redis", "--timeout", "soon")
    assert (code, "--timeout: 'soon' must be a number") == (2, err[17:51])


RECORD = '{"name": "db", "kind": "postgres", "backend": "local", "host": "h", "port": 1'


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "JSON is malformed"),
        ('{"run_id": "r", "backend": "local"}', "Object missing required field `services`"),
        (
            '{"run_id": "r", "backend": "local", "services": [' + RECORD + ', "pid": "1"}]}',
            "Expected `int | null`, got `str` - at `$.services[0].pid`",
        ),
        (
            '{"run_id": "r", "backend": "local", "services": [' + RECORD + ', "rm": "/"}]}',
            "Object contains unknown field `rm` - at `$.services[0]`",
        ),
    ],
    ids=["json", "field", "type", "unknown"],
)
def test_an_unreadable_state_file_is_named_with_what_to_do(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, content: str, why: str
) -> None:
    """A state file can be forged or corrupt: each field must be of its type, and one this
    testgate does not know (it would not stop what that names) refuses the file."""
    state = tmp_path / "services.json"
    state.write_text(content, "utf-8")
    code, _, err = services(capfd, "down", "--state-file", str(state))
    assert code == 3
    assert f"the services state file {state} cannot be read ({why}" in err
    assert "stop what it names by hand, then delete it." in err
    assert state.exists()  # nothing it names was stopped, and it is left for the user


def test_every_backend_a_user_can_name_is_registered() -> None:
    """--backend and services-backend take the registry's names, and auto tries two of them."""
    assert ("auto", *REGISTRY) == BACKENDS
    assert set(AUTO) <= set(REGISTRY)
    for name, factory in REGISTRY.items():
        assert factory({}, "run").name == name
    given = parse_specs(["postgres=postgresql://127.0.0.1:5432/test"])
    assert choose_backend("external", given, {}, run_id="r").name == "external"
    with pytest.raises(ConfigError, match="give redis as NAME=URL"):
        choose_backend("external", [*given, *parse_specs(["redis"])], {}, run_id="r")


def test_variables_and_worker_urls_of_each_kind() -> None:
    def running(name: str, kind: str, **fields: object) -> Running:
        return Running(name=name, kind=kind, backend="docker", host="127.0.0.1", port=1,
                       **fields)  # type: ignore[arg-type]  # fmt: skip

    postgres = running("postgres", "postgres", user="postgres", password="p w", database="test")
    assert postgres.variables() == {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "1",
        "DATABASE_URL": "postgresql://postgres:p%20w@127.0.0.1:1/test",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "p w",
        "POSTGRES_DB": "test",
        "PGHOST": "127.0.0.1",
        "PGPORT": "1",
        "PGUSER": "postgres",
        "PGPASSWORD": "p w",
        "PGDATABASE": "test",
    }
    own = {"POSTGRES_SERVER": "{host}", "POSTGRES_DB": "{database}", "DSN": "{url}?x={{y}}"}
    assert postgres.worker_variables("test_{worker}", own) == {
        "DATABASE_URL": "postgresql://postgres:p%20w@127.0.0.1:1/test_{worker}",
        "POSTGRES_DB": "test_{worker}",
        "PGDATABASE": "test_{worker}",
        "DSN": "postgresql://postgres:p%20w@127.0.0.1:1/test_{worker}?x={y}",
    }
    assert postgres.variables(own)["POSTGRES_SERVER"] == "127.0.0.1"
    second = running("reports", "postgres", database="test")
    assert "PGHOST" not in second.variables()  # libpq's names are the service postgres's
    assert second.variables()["REPORTS_DB"] == "test"
    assert postgres.worker_template() == (
        "DATABASE_URL", "postgresql://postgres:p%20w@127.0.0.1:1/test_{worker}",
    )  # fmt: skip
    cache = running("cache", "redis", database="0")
    assert cache.variables()["CACHE_URL"] == "redis://127.0.0.1:1/0"
    assert "CACHE_PASSWORD" not in cache.variables()  # no AUTH "" for clients that read it
    assert cache.worker_variables("3") == {"CACHE_URL": "redis://127.0.0.1:1/3", "CACHE_DB": "3"}
    assert running("redis", "redis", password="pw").variables()["REDIS_PASSWORD"] == "pw"
    assert cache.worker_template() == ("CACHE_URL", "redis://127.0.0.1:1/{index}")
    web = running("web", "generic", ready="http:/health")
    assert web.variables()["WEB_URL"] == "http://127.0.0.1:1/health"
    assert web.worker_template() is None
    assert "SMTP_URL" not in running("smtp", "generic").variables()
    external = running("db", "mysql", url="mysql://root@h:3306/app")
    assert external.worker_template() == ("DB_URL", "mysql://root@h:3306/app_{worker}")
    assert "MYSQL_HOST" not in external.variables()
    assert external.variables()["DB_DATABASE"] == "app"
    mariadb = running("mariadb", "mariadb", user="root", database="test")
    assert mariadb.variables()["MYSQL_DATABASE"] == mariadb.variables()["MARIADB_DATABASE"]
    rabbitmq = running("rabbitmq", "rabbitmq", user="guest", password="guest", database="%2F")
    assert rabbitmq.variables()["AMQP_URL"] == "amqp://guest:guest@127.0.0.1:1/%2F"
    assert rabbitmq.variables()["RABBITMQ_URL"] == rabbitmq.variables()["AMQP_URL"]
    assert running("rabbitmq", "rabbitmq").worker_template() is None
    mongo = running("mongo", "mongo", url="mongodb://h:27017/app")
    assert (mongo.variables()["MONGODB_URL"], mongo.variables()["MONGO_DB"]) == (
        "mongodb://h:27017/app",
        "app",
    )


# --- real services on this machine ----------------------------------------------------


def test_local_backend_starts_probes_exports_and_removes_all_four(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "state" / "services.json"
    env_file = tmp_path / "services.env"
    code, out, err = services(
        capfd, "up", "postgres:16", "mariadb", "redis:7", "rabbitmq", "--backend", "local",
        "--timeout", "90", "--state-file", str(state), "--env-file", str(env_file),
    )  # fmt: skip
    assert code == 0, err
    for name in ("postgres", "mariadb", "redis", "rabbitmq"):
        assert f"testgate: {name} ready in " in err
    assert "notice: postgres asked for version 16; this machine's is 15." in err
    assert "notice: redis" not in err  # 7 is what this machine has
    exported = dict(line.split("=", 1) for line in env_file.read_text("utf-8").splitlines())
    mysql = {f"{family}_{key}" for family in ("MYSQL", "MARIADB")
             for key in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")}  # fmt: skip
    assert set(exported) == {
        "POSTGRES_HOST", "POSTGRES_PORT", "DATABASE_URL", "POSTGRES_USER", "POSTGRES_PASSWORD",
        "POSTGRES_DB", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", *mysql,
        "MYSQL_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_URL", "REDIS_DB", "RABBITMQ_HOST",
        "RABBITMQ_PORT", "AMQP_URL", "RABBITMQ_URL", "RABBITMQ_USER", "RABBITMQ_PASSWORD",
        "RABBITMQ_VHOST",
    }  # fmt: skip
    assert (exported["PGPORT"], exported["PGDATABASE"]) == (exported["POSTGRES_PORT"], "test")
    assert exported["RABBITMQ_VHOST"] == "/"
    assert out == ""  # with --env-file, no export lines
    assert (
        exported["DATABASE_URL"]
        == f"postgresql://postgres:postgres@127.0.0.1:{exported['POSTGRES_PORT']}/test"
    )
    recorded = StateFile.load(state)
    assert recorded is not None
    started = list(recorded.services.values())
    for running in started:  # each answers its protocol, its own database included
        check(running.endpoint())
        assert running.port not in (5432, 3306, 6379, 5672)
        assert alive(running.pid or 0)
    code, _, err = services(capfd, "down", "--state-file", str(state))
    assert (code, "stopped 4 services") == (0, err.split(": ", 1)[1][:18])
    for running in started:
        assert not alive(running.pid or 0)
        assert not Path(running.directory or "").exists()
    assert not state.exists()
    assert not state.parent.exists()
    code, _, err = services(capfd, "down", "--state-file", str(state))
    assert (code, "nothing to stop") == (0, err.strip()[-16:-1])


@pytest.mark.parametrize(
    ("kind", "init_says", "made"),
    [
        ("postgres", "The files belonging to this database system will be owned by user",
         "PG_VERSION"),
        ("mariadb", "Installing MariaDB/MySQL system tables in", "mysql"),
    ],
    ids=["postgres", "mariadb"],
)  # fmt: skip
def test_a_local_database_copies_the_machines_initialised_data_dir(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, kind: str, init_says: str, made: str
) -> None:
    """initdb (mariadb-install-db) runs once per machine, server version and options: later
    starts copy its data dir from testgate's cache dir, and answer as a fresh one does."""
    cache = tmp_path / "cache"
    logs = []
    for attempt in ("first", "second"):
        state = tmp_path / attempt / "services.json"
        code, _, err = services(
            capfd, "up", kind, "--backend", "local", "--state-file", str(state),
            XDG_CACHE_HOME=str(cache),
        )  # fmt: skip
        assert code == 0, err
        recorded = StateFile.load(state)
        assert recorded is not None
        (running,) = recorded.services.values()
        check(running.endpoint())  # its own database "test" included
        logs.append(Path(running.log or "").read_text("utf-8"))
        code, _, err = services(capfd, "down", "--state-file", str(state))
        assert code == 0, err
    assert init_says in logs[0]
    assert init_says not in logs[1]  # copied, not initialised again
    (template,) = (cache / "testgate" / "services").iterdir()
    assert template.name.startswith(f"{kind}-")
    assert (template / "data" / made).exists()


def test_external_services_are_probed_and_exported_to_github_env(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    github_env = tmp_path / "github_env"
    github_env.write_text("EARLIER=1\n", "utf-8")
    code, out, err = services(
        capfd, "up", *SYSTEM.values(), "--state-file", str(tmp_path / "s.json"),
        GITHUB_ENV=str(github_env),
    )  # fmt: skip
    assert code == 0, err
    assert "mysql ready in" in err
    assert "(external MySQL on 127.0.0.1:3306)" in err
    assert "exported to later steps: POSTGRES_HOST, POSTGRES_PORT, DATABASE_URL" in out
    exported = runner_file_command(github_env.read_bytes().decode())
    assert exported["EARLIER"] == "1"
    assert exported["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/test"
    assert exported["AMQP_URL"] == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert exported["MYSQL_PORT"] == "3306"
    assert exported["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    code, _, err = services(capfd, "down", "--state-file", str(tmp_path / "s.json"))
    assert code == 0
    assert "stopped 0 services and removed what they left; 4 external ones left running" in err
    check(Endpoint(probe="redis", host="127.0.0.1", port=6379))  # still running: untouched


def test_export_lines_are_shell_quoted_for_eval(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = services(
        capfd, "up", "redis=redis://127.0.0.1:6379/0", "--state-file", str(tmp_path / "s.json")
    )
    assert code == 0
    assert out.splitlines() == [
        "export REDIS_HOST=127.0.0.1",
        "export REDIS_PORT=6379",
        "export REDIS_URL=redis://127.0.0.1:6379/0",
        "export REDIS_DB=0",
    ]
    code, _, err = services(capfd, "up", "redis", "--state-file", str(tmp_path / "s.json"))
    assert code == 2
    assert "run 'testgate services down' first" in err
    services(capfd, "down", "--state-file", str(tmp_path / "s.json"))


def _recorded(state: Path) -> list[dict[str, Any]]:
    """The services a state file records (none while there is no file)."""
    return list(json.loads(state.read_text("utf-8"))["services"]) if state.exists() else []


def test_a_service_killed_while_starting_fails_at_once_with_its_log(tmp_path: Path) -> None:
    state = tmp_path / "services.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "services", "up", "rabbitmq", "--backend", "local",
         "--state-file", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not _recorded(state) and time.monotonic() < deadline:  # 'up' writes it first empty
        time.sleep(0.01)
    (recorded,) = _recorded(state)
    os.kill(recorded["pid"], signal.SIGKILL)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3
    assert time.monotonic() - started < 10  # not the 60 s deadline
    assert "rabbitmq (local RabbitMQ) never became ready: its server exited with code -9" in err
    assert "its last log lines:" in err
    assert "Every service started was stopped again." in err
    assert not state.exists()
    assert not Path(recorded["directory"]).exists()


def test_a_service_that_never_answers_times_out_and_the_others_are_removed(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never says a word
    port = silent.getsockname()[1]
    state = tmp_path / "services.json"
    (tmp_path / "tmp").mkdir()
    with silent:
        code, _, err = services(
            capfd, "up", "redis", f"rabbitmq=amqp://guest:guest@127.0.0.1:{port}/%2F",
            "--backend", "local", "--timeout", "0.6", "--state-file", str(state),
            TMPDIR=str(tmp_path / "tmp"),
        )  # fmt: skip
    assert code == 3
    assert "rabbitmq (external RabbitMQ) never became ready: not ready after" in err
    assert "(last probe: TimeoutError: timed out)" in err
    assert "its logs are wherever it runs" in err
    assert not state.exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # the local Redis was removed


def test_worker_databases_are_created_fresh_and_dropped() -> None:
    service = external("postgres", "postgresql://postgres@127.0.0.1:5432/test")
    mysql = external("mysql", "mysql://root@127.0.0.1:3306/test")
    rabbitmq = external("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/%2F")  # shared by all
    isolation = databases.create([service, mysql, rabbitmq], count=3)
    assert isolation.templates == {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test_{worker}",
        "POSTGRES_DB": "test_{worker}",
        "PGDATABASE": "test_{worker}",
        "MYSQL_URL": "mysql://root@127.0.0.1:3306/test_{worker}",
        **{f"{family}_DATABASE": "test_{worker}" for family in ("MYSQL", "MARIADB")},
    }
    assert isolation.notes == ()
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="test")
    query = "SELECT datname FROM pg_database WHERE datname LIKE 'test_gw%' ORDER BY 1"
    assert admin.run(query) == [["test_gw0"], ["test_gw1"], ["test_gw2"]]
    assert databases.drop(isolation) == []
    assert admin.run(query) == []
    missing = external("postgres", "postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(InfraError, match="postgres: could not create the xdist workers' databases"):
        databases.create([service, missing], count=1)
    assert admin.run(query) == []  # what was made for the services before it is removed
    admin.close()
    gone = databases.Isolation(created=(databases.Created(service=missing, names=("x",)),))
    assert databases.drop(gone)[0].startswith("postgres: the workers' databases were not dropped:")


def test_redis_with_a_password_and_its_worker_indexes(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--requirepass", "sesame", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        endpoint = Endpoint(probe="redis", host="127.0.0.1", port=port, password="sesame")
        wait_ready(endpoint, deadline=time.monotonic() + 10)
        with pytest.raises(NotReady, match="AUTH answered b'-WRONGPASS"):
            check(Endpoint(probe="redis", host="127.0.0.1", port=port, password="wrong"))
        with pytest.raises(NotReady, match="PING answered b'-NOAUTH"):
            check(Endpoint(probe="redis", host="127.0.0.1", port=port))
        service = external("redis", f"redis://:sesame@127.0.0.1:{port}/0")
        isolation = databases.create([service], count=2)
        assert isolation.templates == {
            "REDIS_URL": [f"redis://:sesame@127.0.0.1:{port}/{index}" for index in (0, 1)],
            "REDIS_DB": ["0", "1"],
        }
        assert databases.drop(isolation) == []
        own = msgspec.structs.replace(service, backend="local", url=None, database="0")
        _redis_set(port, "sesame", "3")
        isolation = databases.create([own], count=4)  # its own server: 0 … 3, emptied first
        assert isolation.templates["REDIS_DB"] == ["0", "1", "2", "3"]
        assert databases.drop(isolation) == []
        with pytest.raises(InfraError, match="Redis has 16 databases, not one for each of 17"):
            databases.create([own], count=17)
        wrong = external("redis", f"redis://:wrong@127.0.0.1:{port}/0")
        with pytest.raises(InfraError, match="Redis answered b'-WRONGPASS"):
            databases.create([wrong], count=1)
    finally:
        server.terminate()
        server.wait()


def _redis_set(port: int, password: str, index: str) -> None:
    """A key in database ``index`` of a Redis on this machine."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")
        for command in (("AUTH", password), ("SELECT", index), ("SET", "key", "value")):
            sock.sendall(resp_command(*command))
            assert reader.readline().startswith(b"+OK")


def external(name: str, url: str) -> Running:
    """A service given as NAME=URL, as the external backend records it."""
    return ExternalBackend().start(parse_specs([f"{name}={url}"])[0])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- protocols of services outside this machine ---------------------------------------


HANDSHAKES = frozenset({"hello", "isMaster", "ismaster"})
HELLO: dict[str, object] = {
    "ok": 1.0, "isWritablePrimary": True, "ismaster": True, "helloOk": True,
    "maxWireVersion": 21, "minWireVersion": 0, "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
}  # fmt: skip


class FakeMongo(socketserver.ThreadingTCPServer):
    """A standalone MongoDB server speaking OP_MSG (MongoDB lies outside this machine).

    It answers the driver's handshakes as a server would and every other command with
    ``reply`` (in a message of ``opcode``), recording those commands without the fields
    the driver adds to each.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: dict[str, object], opcode: int = 2013) -> None:
        self.reply, self.opcode, self.commands = reply, opcode, []  # type: ignore[var-annotated]
        super().__init__(("127.0.0.1", 0), _MongoHandler)


class _MongoHandler(socketserver.BaseRequestHandler):
    server: FakeMongo

    def handle(self) -> None:
        reader = self.request.makefile("rb")
        while len(header := reader.read(16)) == 16:
            length, request_id, _, _ = struct.unpack("<iiii", header)
            command = bson.decode(reader.read(length - 16)[5:])
            reply, opcode = HELLO, 2013
            if not HANDSHAKES & set(command):
                self.server.commands.append(command)
                reply, opcode = self.server.reply, self.server.opcode
            payload = b"\x00\x00\x00\x00\x00" + bson.encode(reply)
            self.request.sendall(
                struct.pack("<iiii", 16 + len(payload), 2, request_id, opcode) + payload
            )


@pytest.fixture
def mongo() -> Iterator[FakeMongo]:
    server = FakeMongo({"ok": 1.0, "databases": []})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_mongo_answers_hello_and_drops_worker_databases(mongo: FakeMongo) -> None:
    port = mongo.server_address[1]
    check(Endpoint(probe="mongo", host="127.0.0.1", port=port))
    service = external("mongo", f"mongodb://127.0.0.1:{port}/app")
    isolation = databases.create([service], count=2)
    assert isolation.templates == {
        "MONGODB_URL": f"mongodb://127.0.0.1:{port}/app_{{worker}}",
        "MONGO_URL": f"mongodb://127.0.0.1:{port}/app_{{worker}}",
        "MONGO_DB": "app_{worker}",
    }
    assert databases.drop(isolation) == []
    assert mongo.commands == [  # only the names the server did not hold are dropped
        {"ping": 1, "$db": "admin"},
        {"listDatabases": 1, "nameOnly": True, "$db": "admin"},
        {"dropDatabase": 1, "comment": None, "$db": "app_gw0"},
        {"dropDatabase": 1, "comment": None, "$db": "app_gw1"},
    ]
    mongo.commands.clear()
    started = msgspec.structs.replace(service, backend="docker")  # its own server: fresh ones
    assert databases.drop(databases.create([started], count=1)) == []
    assert [command["$db"] for command in mongo.commands] == ["app_gw0", "app_gw0"]
    mongo.reply = {"ok": 0.0, "errmsg": "not authorized"}
    with pytest.raises(NotReady, match="ping answered 'not authorized'"):
        check(Endpoint(probe="mongo", host="127.0.0.1", port=port))
    mongo.opcode = 1
    with pytest.raises(NotReady, match="ProtocolError: Got opcode 1 but expected"):
        check(Endpoint(probe="mongo", host="127.0.0.1", port=port))
    nothing = Endpoint(probe="mongo", host="127.0.0.1", port=_free_port())
    with pytest.raises(NotReady, match=r"ServerSelectionTimeoutError: 127\.0\.0\.1:"):
        check(nothing, timeout=0.2)  # pymongo finds no server: the attempt ends, no hang


def test_http_tcp_and_command_readiness(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/health").respond_with_data("ok")
    httpserver.expect_request("/broken").respond_with_data("no", status=503)
    http = Endpoint(probe="generic", host="127.0.0.1", port=httpserver.port, ready="http:/health")
    check(http)
    with pytest.raises(NotReady, match="GET /broken answered HTTP 503"):
        check(
            Endpoint(probe="generic", host="127.0.0.1", port=httpserver.port, ready="http:/broken")
        )
    check(Endpoint(probe="generic", host="127.0.0.1", port=httpserver.port))
    ready = Endpoint(probe="generic", host="h", port=1, ready='cmd:test "$WEB_PORT" = 1',
                     env={"WEB_PORT": "1", "PATH": os.environ["PATH"]})  # fmt: skip
    check(ready)
    with pytest.raises(NotReady, match="the ready command exited 3: not yet"):
        check(Endpoint(probe="generic", host="h", port=1, ready="cmd:echo not yet; exit 3"))
    amqp_on_mysql = Endpoint(probe="amqp", host="127.0.0.1", port=3306)  # MySQL greets first
    with pytest.raises(NotReady, match=r"not Connection\.Start"):
        check(amqp_on_mysql)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed.listen(1)
    port = closed.getsockname()[1]

    def hang_up() -> None:
        connection = closed.accept()[0]
        connection.recv(8)  # the header, read before hanging up without an answer
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(NotReady, match="the connection closed after 0 bytes"):
        check(Endpoint(probe="amqp", host="127.0.0.1", port=port))
    closed.close()


def test_a_postgresql_that_requires_tls_is_probed_over_tls() -> None:
    """The probe asks for TLS as libpq's ``prefer`` does: a server that offers it gets it."""
    (spec,) = parse_specs(["postgres"])
    backend = LocalBackend(dict(os.environ))  # its own dir, as 'services up' makes it
    running = backend.start(spec)
    endpoint = dataclasses.replace(running.endpoint(), database="postgres")
    try:
        wait_ready(endpoint, deadline=time.monotonic() + 60, died=lambda: backend.died(running))
        data = next(Path(str(running.directory)).rglob("PG_VERSION")).parent
        subprocess.run(  # an EC key: made in milliseconds, where RSA 2048 takes 0.3 s of CPU
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=x", "-days", "1",
             "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        for name in ("server.key", "server.crt"):
            os.chown(data / name, data.stat().st_uid, data.stat().st_gid)
            (data / name).chmod(0o600)
        (data / "pg_hba.conf").write_text("hostssl all all all trust\nhost all all all reject\n")
        login = {"host": running.host, "port": running.port, "database": "postgres"}
        admin = pg8000.native.Connection(running.user, **login, ssl_context=False)
        admin.run("ALTER SYSTEM SET ssl = on")
        admin.run("SELECT pg_reload_conf()")
        admin.close()
        plain = "no encryption"
        for _ in range(500):  # until the server has reloaded: plain text is refused
            try:
                pg8000.native.Connection(running.user, **login, ssl_context=False).close()
            except pg8000.native.DatabaseError as error:
                plain = str(error)
                break
            time.sleep(0.01)
        assert "no encryption" in plain
        check(endpoint)  # over TLS
    finally:
        stop_local(running)


def test_a_server_that_hangs_up_on_the_tls_request_is_not_ready() -> None:
    closed = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        connection = closed.accept()[0]
        connection.recv(8)
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = closed.getsockname()[1]
    with pytest.raises(NotReady, match="the TLS request was answered with b'', not S or N"):
        check(Endpoint(probe="postgres", host="127.0.0.1", port=port, user="postgres"))
    closed.close()


def test_databases_are_checked_with_a_real_query() -> None:
    with pytest.raises(NotReady, match='database "absent" does not exist'):
        check(Endpoint(probe="postgres", host="127.0.0.1", port=5432, user="postgres",
                       database="absent"))  # fmt: skip
    with pytest.raises(NotReady, match="Unknown database 'absent'"):
        check(Endpoint(probe="mysql", host="127.0.0.1", port=3306, user="root", database="absent"))


# --- the docker backend, at its command boundary -----------------------------------------

FAKE_DOCKER = r"""#!/bin/sh
# A stand-in for the docker CLI with an engine behind it (no engine runs here). It records
# each call and answers as docker does; its containers "publish" the machine's real ports.
echo "$*" >> "$DOCKER_CALLS"
case "$1" in
  version) echo "28.2.2" ;;
  run) [ -n "$DOCKER_RUN_FAILS" ] && { echo "Unable to find image '$DOCKER_RUN_FAILS' locally" >&2
       echo "docker: Error response from daemon: pull access denied" >&2
       echo "Run 'docker run --help' for more information" >&2; exit 125; }
       [ -n "$DOCKER_RUN_ERROR" ] && { echo "docker: $DOCKER_RUN_ERROR" >&2; exit 125; }
       echo "c0ffee$(wc -l < "$DOCKER_CALLS")" | tee -a "$DOCKER_CALLS.run" ;;
  port) printf '%s\n' "0.0.0.0:$DOCKER_PORT" "[::]:$DOCKER_PORT" ;;
  inspect) echo "$DOCKER_STATE" ;;
  wait) [ -n "$DOCKER_WAIT_FAILS" ] && { echo "Error: $DOCKER_WAIT_FAILS" >&2; exit 1; }
        case "$DOCKER_STATE" in exited*) echo "${DOCKER_STATE##* }" ;;
          *) echo $$ >> "$DOCKER_CALLS.wait"; exec sleep 60 ;; esac ;;
  logs) echo "database system is starting up"; echo "FATAL: out of memory" >&2 ;;
  ps) cat "$DOCKER_CALLS.run" 2>/dev/null; echo "c0ffee-stray" ;;  # the run's, by label
  rm) ;;
esac
"""


@pytest.fixture
def docker(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER, "utf-8")
    (bin_dir / "docker").chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DOCKER_CALLS": str(tmp_path / "calls"),
        "DOCKER_PORT": "6379",
        "DOCKER_STATE": "running 0",
    }


def test_docker_backend_runs_labelled_containers_and_removes_them(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    state = tmp_path / "services.json"
    code, out, err = services(capfd, "up", "redis:7", "--state-file", str(state), **docker)
    assert code == 0, err
    assert "(container redis:7 on 127.0.0.1:6379)" in err
    assert "export REDIS_URL=redis://127.0.0.1:6379/0" in out
    run_id = json.loads(state.read_text("utf-8"))["run_id"]
    calls = Path(docker["DOCKER_CALLS"]).read_text("utf-8").splitlines()
    assert calls[:3] == [
        "version --format {{.Server.Version}}",
        f"run --detach --label io.testgate.run={run_id} --label io.testgate.service=redis "
        "--publish 127.0.0.1::6379 redis:7",
        "port c0ffee2 6379/tcp",
    ]
    assert not any(call.startswith("inspect") for call in calls)
    waits = Path(docker["DOCKER_CALLS"] + ".wait")  # a 'docker wait' that got to wait
    for waited in waits.read_text("utf-8").split() if waits.exists() else []:
        assert not alive(int(waited))  # once ready, its 'docker wait' is ended
    code, _, _ = services(capfd, "down", "--state-file", str(state), **docker)
    assert code == 0
    assert Path(docker["DOCKER_CALLS"]).read_text("utf-8").splitlines()[-3:] == [
        f"ps --all --quiet --filter label=io.testgate.run={run_id}",
        "rm --force --volumes c0ffee2",
        "rm --force --volumes c0ffee-stray",
    ]


def test_a_container_that_exits_fails_with_its_last_log_lines(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    docker.update(DOCKER_PORT=str(_free_port()), DOCKER_STATE="exited 1")
    code, _, err = services(
        capfd, "up", "postgres:16", "--backend", "docker", "--state-file",
        str(tmp_path / "s.json"), **docker,
    )  # fmt: skip
    assert code == 3
    assert (
        "postgres (container postgres:16) never became ready: its container exited with code 1"
        in err
    )
    assert "    database system is starting up\n    FATAL: out of memory" in err
    calls = Path(docker["DOCKER_CALLS"]).read_text("utf-8")
    assert "--env POSTGRES_PASSWORD=postgres --env POSTGRES_DB=test postgres:16" in calls
    assert ("wait c0ffee2" in calls, "inspect" in calls) == (True, False)  # it told the exit
    assert "rm --force --volumes c0ffee2" in calls
    docker["DOCKER_PORT"] = "none"  # exited at once: the engine publishes no port
    code, _, err = services(
        capfd, "up", "postgres:16", "--backend", "docker", "--state-file",
        str(tmp_path / "s.json"), **docker,
    )  # fmt: skip
    assert code == 3
    assert "postgres (container postgres:16) never became ready: its container exited" in err
    assert "    FATAL: out of memory" in err
    docker.update(DOCKER_PORT=str(_free_port()), DOCKER_STATE="exited 2", DOCKER_WAIT_FAILS="x")
    code, _, err = services(
        capfd, "up", "postgres:16", "--backend", "docker", "--state-file",
        str(tmp_path / "s.json"), **docker,
    )  # fmt: skip
    assert code == 3  # 'docker wait' failed: 'docker inspect' tells
    assert "never became ready: its container exited with code 2" in err


def test_without_docker_wait_the_engine_is_asked_at_most_every_half_second(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    """An engine whose 'docker wait' fails: 'docker inspect' tells whether it still runs."""
    port = _free_port()
    docker.update(DOCKER_PORT=str(port), DOCKER_WAIT_FAILS="unknown command")
    listener = socket.socket()

    def listen_later() -> None:  # the service answers after a while
        time.sleep(0.6)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=listen_later, daemon=True).start()
    state = str(tmp_path / "s.json")
    began = time.monotonic()
    code, _, err = services(capfd, "up", "web=nginx port=80", "--state-file", state, **docker)
    took = time.monotonic() - began
    listener.close()
    assert code == 0, err
    inspected = Path(docker["DOCKER_CALLS"]).read_text("utf-8").count("\ninspect ")
    assert 1 <= inspected <= 1 + took / 0.5  # not at every probe, every few milliseconds
    assert services(capfd, "down", "--state-file", state, **docker)[0] == 0


def test_docker_port_output_that_names_no_port_is_an_error(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    docker["DOCKER_PORT"] = "not-a-port"
    code, _, err = services(
        capfd, "up", "web=nginx port=80", "--backend", "docker", "--state-file",
        str(tmp_path / "s.json"), **docker,
    )  # fmt: skip
    assert code == 3
    assert "cannot read a published port from 'docker port'" in err
    assert "rm --force --volumes c0ffee2" in Path(docker["DOCKER_CALLS"]).read_text("utf-8")


def test_a_container_that_never_answers_and_an_image_that_cannot_run(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    docker["DOCKER_PORT"] = str(_free_port())  # running, but nothing answers there
    state = str(tmp_path / "s.json")
    code, _, err = services(capfd, "up", "redis", "--timeout", "0.3", "--state-file", state,
                            **docker)  # fmt: skip
    assert code == 3
    assert "redis (container redis) never became ready: not ready after" in err
    code, _, err = services(capfd, "up", "web=nope:1 port=80", "--state-file", state,
                            DOCKER_RUN_FAILS="nope:1", **docker)  # fmt: skip
    assert code == 3
    assert (
        "web: the image nope:1 is not on this machine and the engine could not pull it "
        "(Error response from daemon: pull access denied); pull or build nope:1 first" in err
    )
    assert not Path(state).exists()
    code, _, err = services(capfd, "up", "web=nope:1 port=80", "--state-file", state,
                            DOCKER_RUN_ERROR="no space left on device", **docker)  # fmt: skip
    assert (code, "'docker run' exited 125: docker: no space left on device") == (
        3, err.split("error: ", 1)[1].split("\n")[0],
    )  # fmt: skip


def test_down_without_the_docker_cli_still_clears_the_record(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    state = str(tmp_path / "s.json")
    assert services(capfd, "up", "redis", "--state-file", state, **docker)[0] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = services(capfd, "down", "--state-file", state, PATH=str(empty))
    assert (code, "stopped 1 service ") == (0, err.split(": ", 1)[1][:18])
    assert not Path(state).exists()


def test_without_an_engine_the_error_says_what_to_do(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nowhere = f"unix://{tmp_path}/no-engine.sock"  # whether or not an engine runs here
    code, _, err = services(capfd, "up", "redis", "--backend", "docker", "--state-file",
                            str(tmp_path / "s.json"), DOCKER_HOST=nowhere)  # fmt: skip
    assert code == 3
    assert "no Docker engine answers 'docker version' here" in err
    code, _, err = services(capfd, "up", "web=nginx port=80", "redis", "--state-file",
                            str(tmp_path / "s.json"), PATH=str(empty))  # fmt: skip
    assert code == 3
    assert "web: a generic image (nginx) has no local equivalent" in err
    assert "redis: redis-server not found (Debian: apt-get install redis-server)" in err
    code, _, err = services(capfd, "up", "redis", "--backend", "external")
    assert code == 2
    assert "give redis as NAME=URL" in err


# --- local recipes' failure paths ------------------------------------------------------


def test_a_broken_installation_fails_with_its_output(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("initdb", "postgres"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n", "utf-8")
        (bin_dir / name).chmod(0o755)
    (spec,) = parse_specs(["postgres"])
    hidden = LocalBackend({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, root=tmp_path)
    reason = r"\(it runs as the postgres user, who must be able to reach it\)"
    with pytest.raises(InfraError, match="could not run .*initdb: Permission denied " + reason):
        hidden.start(spec)  # pytest's temporary directories are private to root
    for folder in (bin_dir, *bin_dir.parents):  # the postgres user runs these scripts
        if folder == Path(tempfile.gettempdir()):
            break
        folder.chmod(0o755)
    for name, script in (
        ("initdb", "echo 'initdb: out of disk' >&2; exit 1"),
        ("postgres", "exit 0"),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n", "utf-8")
        (bin_dir / name).chmod(0o755)
    backend = LocalBackend({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, root=tmp_path)
    with pytest.raises(InfraError, match="initdb failed \\(exit 1\\) preparing") as raised:
        backend.start(spec)
    assert "    initdb: out of disk" in raised.value.message
    assert [path.name for path in tmp_path.iterdir()] == ["bin"]
    assert find_binary("no-such-server", {"PATH": str(bin_dir)}) is None
    found = find_binary("pg_controldata", {"PATH": str(bin_dir)})  # not on PATH: Debian's dirs
    assert found is not None
    assert found.startswith("/usr/lib/postgresql/")
    with pytest.raises(InfraError, match="there is no 'nobody-here' user"):
        LocalBackend._account(Recipe(kind="x", binaries=(), init=(), server=(), install="",
                                     run_as="nobody-here"))  # fmt: skip


def test_a_server_that_ignores_the_stop_signal_is_killed(tmp_path: Path) -> None:
    """As after 'services up' has exited: the server is not this process's child."""
    launcher = subprocess.run(
        ["sh", "-c", "setsid sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' "
         ">/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(launcher.stdout)
    time.sleep(0.1)  # let the shell set its trap
    running = Running(name="x", kind="redis", backend="local", host="127.0.0.1", port=1,
                      pid=pid, directory=str(tmp_path / "gone"),
                      log=str(tmp_path / "none"))  # fmt: skip
    stop_local(running, grace_s=0.3)
    assert not alive(pid)
    assert LocalBackend.logs(running) == "(no log)"
    ended = subprocess.Popen(["true"], start_new_session=True)
    ended.wait()
    stop_local(msgspec.structs.replace(running, pid=ended.pid))  # already gone: no error
    assert not alive(ended.pid)
