"""The docker backend on a real Docker engine: ``services up/down`` and ``run --service``.

CI starts the engine and builds its images first (``.ci/docker-engine start`` and
``images``: Debian root file systems under the official names, since no registry is
reachable here) and exports DOCKER_HOST; where no engine answers, these tests skip and
say so. One scenario runs once for the session, its independent steps side by side, and
records what a user would see; each test asserts on one part of it. The scenario:
``services up`` of postgres:16, mysql:8 and redis:7 in the example project, a
``testgate run`` with two workers on them, ``down``; a ``run --service`` stopped by
SIGTERM while it waits; a container that exits at start-up, a missing image, no engine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pg8000.native
import pymysql
import pytest

from runner.services.docker import LABEL, engine_answers
from tests.conftest import ROOT, Ran, copy_fixture, once_per_session, shared_environment

TESTGATE = Path(sys.executable).parent / "testgate"
EXAMPLE = ROOT / "examples" / "inventory"

pytestmark = pytest.mark.skipif(
    not engine_answers(os.environ),
    reason="no Docker engine answers here (DOCKER_HOST="
    f"{os.environ.get('DOCKER_HOST', 'unset')}); 'bash .ci/docker-engine start' starts one",
)

# Run by the fixture project's workers: which database, on which server, each one used.
WHERE_TEST = """\
import os
from pathlib import Path
from urllib.parse import urlsplit

import pg8000.native


def test_where_my_database_is():
    url = urlsplit(os.environ["DATABASE_URL"])
    connection = pg8000.native.Connection(url.username, host=url.hostname, port=url.port,
        database=url.path.lstrip("/"), password=url.password)
    ((database, server),) = connection.run("SELECT current_database(), inet_server_addr()::text")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    Path(__file__).with_name(f"seen-{worker}").write_text(f"{database} {server}")
"""


def cli(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The console script, as a user runs it: exit code, stdout, stderr."""
    completed = subprocess.run(
        [str(TESTGATE), *args], capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})}, timeout=180,
    )  # fmt: skip
    return {"code": completed.returncode, "out": completed.stdout, "err": completed.stderr}


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=60
    ).stdout.strip()


def containers_of(run_id: str) -> list[str]:
    return docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}={run_id}").split()


def shared_services(root: Path) -> dict[str, Any]:
    """``services up`` in the example project, a ``run`` on them with two workers, ``down``."""
    project = root / "inventory"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".venv", "*-reports"))
    (project / "tests" / "test_where.py").write_text(WHERE_TEST, "utf-8")
    state = project / ".testgate" / "services.json"
    seen: dict[str, Any] = {}
    seen["up"] = cli("services", "up", "postgres:16", "mysql:8", "redis:7",
                          "--backend", "docker", "--state-file", str(state))  # fmt: skip
    if seen["up"]["code"] != 0:
        return seen
    seen["answers"] = answers(seen["up"]["out"])  # at once: ready means they answer
    recorded = json.loads(state.read_text("utf-8"))
    seen["run_id"] = recorded["run_id"]
    # Another run's container, labelled as testgate labels its own: 'down' leaves it alone.
    other = f"other-{uuid.uuid4().hex[:8]}"
    docker("run", "--detach", "--label", f"{LABEL}={other}", "redis:7")
    try:
        seen["inspect"] = {
            item["name"]: json.loads(docker("inspect", item["container"]))[0]
            for item in recorded["services"]
        }
        seen["labelled"] = sorted(containers_of(recorded["run_id"]))
        with shared_environment(project, ("--workers", "2"), os.environ) as added:
            seen["run"] = cli("run", "--project", str(project), "--workers", "2", env=added)
        seen["results"] = json.loads((project / "testgate-reports" / "results.json").read_text())
        seen["seen"] = {
            path.name: path.read_text("utf-8") for path in (project / "tests").glob("seen-*")
        }
        seen["left_databases"] = docker(
            "exec", recorded_container(recorded, "postgres"), "psql", "-h", "/run/postgresql",
            "-p", "5432", "-U", "postgres", "-tAc", "SELECT datname FROM pg_database",
        ).split()  # fmt: skip
    finally:  # whatever failed above, nothing is left running on the engine
        seen["down"] = cli("services", "down", "--state-file", str(state))
        seen["after_down"] = containers_of(recorded["run_id"])
        seen["other_after_down"] = containers_of(other)
        for container in containers_of(other):
            docker("rm", "--force", container)
    return seen


def answers(exports: str) -> dict[str, str]:
    """What a user's own client gets from each exported URL, right after ``up``."""
    urls = {
        name: urlsplit(shlex.split(value)[0])
        for line in exports.splitlines()
        for name, _, value in [line.removeprefix("export ").partition("=")]
        if name.endswith("_URL")
    }
    database = urls["DATABASE_URL"]
    postgres = pg8000.native.Connection(
        database.username or "", host=database.hostname, port=database.port,
        password=database.password, database=database.path.lstrip("/"),
    )  # fmt: skip
    mysql_url = urls["MYSQL_URL"]
    mysql = pymysql.connect(
        host=mysql_url.hostname, port=mysql_url.port or 3306, user=mysql_url.username,
        database=mysql_url.path.lstrip("/"),
    )  # fmt: skip
    with mysql.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        (mysql_database,) = cursor.fetchone() or ("",)
    mysql.close()
    redis = urls["REDIS_URL"]
    with socket.create_connection((redis.hostname, redis.port or 6379), timeout=5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        pong = sock.recv(7).decode()
    found = {
        "postgres": str(postgres.run("SELECT current_database()")[0][0]),
        "mysql": str(mysql_database),
        "redis": pong.strip(),
    }
    postgres.close()
    return found


def recorded_container(recorded: dict[str, Any], name: str) -> str:
    (container,) = [item["container"] for item in recorded["services"] if item["name"] == name]
    return str(container)


def terminated_run(root: Path) -> dict[str, Any]:
    """``run --service`` sent SIGTERM while it waits for a service: its containers go."""
    project = root / "terminated"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".venv", "*-reports"))
    state = project / ".testgate" / "run-services.json"
    process = subprocess.Popen(
        [str(TESTGATE), "run", "--project", str(project), "--services-backend", "docker",
         "--service", "redis:7", "--service", "never=redis:7 port=9999"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = ""
    for _ in range(600):  # until both containers are recorded, before either answers
        if state.exists():
            recorded = json.loads(state.read_text("utf-8"))
            if len(recorded["services"]) == 2:
                run_id = recorded["run_id"]
                break
        time.sleep(0.05)
    started = containers_of(run_id)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return {
        "code": process.returncode, "out": out + err, "started": started,
        "left": containers_of(run_id), "state_left": state.exists(),
    }  # fmt: skip


def container_databases(state: Path) -> list[str]:
    """Every database in the recorded PostgreSQL container, listed from inside it."""
    recorded = json.loads(state.read_text("utf-8"))
    listed = docker(
        "exec", recorded_container(recorded, "postgres"), "psql", "-h", "/run/postgresql",
        "-U", "postgres", "-tAc", "SELECT datname FROM pg_database ORDER BY 1",
    )  # fmt: skip
    return listed.split()


def app_in_a_container(root: Path, fixture: str, *pytest_args: str) -> dict[str, Any]:
    """A fixture app run on a postgres:16 container: 2 workers, a rerun, then its databases."""
    project = copy_fixture(fixture, root / "apps")
    state = project / ".testgate" / "services.json"
    seen: dict[str, Any] = {
        "up": cli("services", "up", "postgres:16", "--backend", "docker",
                  "--state-file", str(state)),
    }  # fmt: skip
    if seen["up"]["code"] != 0:
        return seen
    try:
        seen["before"] = container_databases(state)
        args = ("--workers", "2", "--reruns", "1", "--", *pytest_args)
        # The app's environment is the one its local runs use (test_services_apps): built
        # and its bytecode compiled once for the session, not again here.
        with shared_environment(project, args, os.environ) as added:
            seen["run"] = cli("run", "--project", str(project), *args, env=added)
        seen["results"] = json.loads((project / "testgate-reports" / "results.json").read_text())
        seen["after"] = container_databases(state)
        used = project / "tests" / "databases.txt"  # the Django app's record of its databases
        seen["used"] = used.read_text("utf-8").split() if used.exists() else []
    finally:
        seen["down"] = cli("services", "down", "--state-file", str(state))
    return seen


def apps(root: Path) -> dict[str, Any]:
    """The Django app (pytest-django) and the SQLAlchemy app (alembic) on containers."""
    (root / "apps").mkdir()
    return {
        "django": app_in_a_container(root, "django_app"),
        "sqlalchemy": app_in_a_container(root, "sqlalchemy_app", "tests/test_items.py"),
    }


def failures(root: Path) -> dict[str, Any]:
    """A container that exits during start-up, an image that is nowhere, no engine at all."""
    return {
        "exits": cli("services", "up", "pg=postgres:16 env=POSTGRES_PASSWORD=",
                          "--backend", "docker", "--state-file", str(root / "exits.json")),
        "missing": cli("services", "up", "web=testgate-absent/none:1 port=80",
                            "--backend", "docker", "--state-file", str(root / "missing.json")),
        "no_engine": cli("run", "--project", str(root / "nowhere"), "--service", "redis:7",
                              "--services-backend", "docker",
                              env={"DOCKER_HOST": f"unix://{root}/no-engine.sock"}),
    }  # fmt: skip


def scenario(root: Path) -> Ran:
    (root / "nowhere").mkdir()
    (root / "nowhere" / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    steps: dict[str, Callable[[Path], dict[str, Any]]] = {
        "shared": shared_services,
        "terminated": terminated_run,
        "failures": failures,
        "apps": apps,
    }
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        futures = {name: pool.submit(step, root) for name, step in steps.items()}
        seen = {name: future.result() for name, future in futures.items()}
    (root / "seen.json").write_text(json.dumps(seen), "utf-8")
    return Ran(0, "", root, root)


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ran = once_per_session(tmp_path_factory, "docker-engine", scenario)
    found: dict[str, Any] = json.loads((ran.project / "seen.json").read_text("utf-8"))
    return found


def test_services_up_starts_labelled_containers_published_on_localhost(
    seen: dict[str, Any],
) -> None:
    shared = seen["shared"]
    assert shared["up"]["code"] == 0, shared["up"]["err"]
    inspect = shared["inspect"]
    assert sorted(inspect) == ["mysql", "postgres", "redis"]
    for name, container in inspect.items():
        assert container["State"]["Running"] is True
        labels = container["Config"]["Labels"]
        assert (labels[LABEL], labels["io.testgate.service"]) == (shared["run_id"], name)
        (binding,) = next(iter(container["NetworkSettings"]["Ports"].values()))
        assert binding["HostIp"] == "127.0.0.1"
        port = binding["HostPort"]
        assert (
            f"({'container ' + container['Config']['Image']} on 127.0.0.1:{port})"
            in (shared["up"]["err"])
        )
    assert sorted(container["Id"][:12] for container in inspect.values()) == shared["labelled"]
    assert shared["answers"] == {"postgres": "test", "mysql": "test", "redis": "+PONG"}
    out = shared["up"]["out"]
    assert "export DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:" in out
    assert "export MYSQL_URL=mysql://root@127.0.0.1:" in out
    assert "export REDIS_URL=redis://127.0.0.1:" in out


def test_a_run_gets_per_worker_databases_inside_the_container_dropped_after(
    seen: dict[str, Any],
) -> None:
    shared = seen["shared"]
    assert shared["run"]["code"] == 0, shared["run"]["out"][-3000:] + shared["run"]["err"]
    totals = shared["results"]["totals"]  # the example's integration test included
    assert (totals["passed"], totals["failed"], totals["errors"]) == (totals["tests"], 0, 0)
    container_ip = shared["inspect"]["postgres"]["NetworkSettings"]["IPAddress"]
    databases = sorted(text.split()[0] for text in shared["seen"].values())
    assert databases in (["test_gw0"], ["test_gw1"], ["test_gw0", "test_gw1"])
    assert {text.split()[1] for text in shared["seen"].values()} == {f"{container_ip}/32"}
    assert "test" in shared["left_databases"]
    assert [name for name in shared["left_databases"] if name.startswith("test_gw")] == []


def test_down_removes_exactly_this_runs_containers(seen: dict[str, Any]) -> None:
    shared = seen["shared"]
    assert shared["down"]["code"] == 0
    assert "stopped 3 services" in shared["down"]["err"]
    assert shared["after_down"] == []
    assert len(shared["other_after_down"]) == 1  # another run's container survives


def test_sigterm_during_a_run_removes_its_containers(seen: dict[str, Any]) -> None:
    terminated = seen["terminated"]
    assert len(terminated["started"]) == 2, terminated["out"]
    assert terminated["code"] == 3  # interrupted: SPEC's exit code for every command
    assert (terminated["left"], terminated["state_left"]) == ([], False)


def test_a_container_that_exits_during_start_up_fails_with_its_logs(
    seen: dict[str, Any],
) -> None:
    exits = seen["failures"]["exits"]
    assert exits["code"] == 3
    assert (
        "pg (container postgres:16) never became ready: its container exited with code 1"
        in (exits["err"])
    )
    assert "superuser password is not specified" in exits["err"]


def test_a_missing_image_and_a_missing_engine_are_named(seen: dict[str, Any]) -> None:
    missing = seen["failures"]["missing"]
    assert missing["code"] == 3
    assert (
        "web: the image testgate-absent/none:1 is not on this machine and the engine could "
        "not pull it (" in missing["err"]
    )
    no_engine = seen["failures"]["no_engine"]
    assert no_engine["code"] == 3
    assert "no Docker engine answers 'docker version' here" in no_engine["out"]  # its report


@pytest.mark.parametrize(("app", "counts"), [("django", (4, 1, 0)), ("sqlalchemy", (8, 1, 0))])
def test_the_fixture_apps_pass_on_a_container_and_leave_no_database(
    seen: dict[str, Any], app: str, counts: tuple[int, int, int]
) -> None:
    """Two workers write the same table unseen by each other; a test passes on its rerun.

    Afterwards the container holds the databases it held before: neither testgate's
    (the workers', the schema template) nor pytest-django's are left.
    """
    ran = seen["apps"][app]
    assert ran["up"]["code"] == 0, ran["up"]["err"]
    assert ran["run"]["code"] == 0, ran["run"]["out"][-3000:] + ran["run"]["err"]
    totals = ran["results"]["totals"]
    assert (totals["passed"], totals["flaky"], totals["failed"]) == counts
    assert ran["after"] == ran["before"]
    assert sorted(ran["before"]) == ["postgres", "template0", "template1", "test"]
    assert ran["down"]["code"] == 0


def test_pytest_django_makes_the_workers_databases_in_the_container(seen: dict[str, Any]) -> None:
    ran = seen["apps"]["django"]
    assert (
        "postgres: pytest-django creates each xdist worker's database itself" in ran["run"]["out"]
    )
    assert set(ran["used"]) <= {"test_test_gw0", "test_test_gw1"}
    assert ran["used"][-1] == "test_test_gw0"  # the rerun: the first worker's name again
