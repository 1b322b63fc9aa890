"""Real applications' ways of reading their services, each proven with a real run.

A Django project tested with pytest-django reads ``DATABASE_URL``: testgate hands it the
server, pytest-django creates each worker's ``test_<name>_gwN``, a rerun uses worker 0's
name again, and with ``--reuse-db`` on an external server what pytest-django kept stays.

The session's run of the SQLAlchemy-style app (``tests/integration/services_apps.py``) reads
``POSTGRES_SERVER`` (mapped with ``service-env``) and testgate's ``POSTGRES_*``
conventions, builds its schema with ``alembic upgrade head`` (``service-setup``: once,
into a template every worker database is copied from), and a second module reads only
libpq's ``PG*``. Two xdist workers write the same keys; a test fails once, so a rerun
runs too. The services fixture's tests beside them read ``DATABASE_URL`` and ``REDIS_*``.
The server is the machine's own PostgreSQL, given as an external service whose
user databases must come out untouched.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pg8000.native
import pytest

from runner.errors import ConfigError, InfraError
from runner.services import databases, precedence
from runner.services.schema import Setup
from tests.conftest import Ran, copy_fixture, fresh_plugin, once_per_session, run_in_process
from tests.integration.services_apps import Facts, Redis, app_run, postgres_databases
from tests.integration.test_services import external


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return app_run(tmp_path_factory)


def test_the_app_passes_with_its_schema_in_every_workers_database(
    app: Facts,
) -> None:
    ran, _ = app
    assert ran.exit_code == 0, ran.output
    totals = ran.results()["totals"]
    assert (totals["passed"], totals["flaky"], totals["failed"]) == (30, 1, 0)
    tests = {test["id"].split("::")[1].split("[")[0] for test in ran.results()["tests"]}
    assert "test_the_app_writes_to_its_workers_migrated_table" in tests
    # its setup command ran in the prepared environment: uv wrote no uv.lock into the app
    assert not (ran.project / "uv.lock").exists()


def test_the_summary_says_which_variables_the_apps_env_sets_as_well(
    app: Facts,
) -> None:
    """The app's .env points at another server: testgate sets the whole family, and says so."""
    ran, _ = app
    summary = (ran.reports / "summary.md").read_text("utf-8")
    for text in (ran.output, summary):
        assert "services: testgate also sets POSTGRES_HOSTNAME, named in the project's .env" in text
        assert ".env sets POSTGRES_HOSTNAME, POSTGRES_PORT, POSTGRES_SERVER, which testgate" in text
        assert "an app that loads it with override=True would not reach testgate's" in text
        assert "sets POSTGRES_SSLMODE, which testgate does not set" in text
        assert "db.internal" not in text  # names only, never values: a .env holds secrets


def test_no_database_testgate_made_is_left_and_the_users_is_untouched(app: Facts) -> None:
    _, facts = app
    base = facts["base"]
    assert facts["postgres"] == [base, f"{base}_gw0"]  # the template and workers' are gone
    assert facts["postgres_rows"] == ["kept", "kept"]


def _produce_django(target: Path) -> Ran:
    base = "dj" + secrets.token_hex(4)
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
    admin.run(f'CREATE DATABASE "{base}"')
    try:
        project = copy_fixture("django_app", target)
        ran = run_in_process(
            project, "--workers", "2", "--reruns", "1",
            "--service", f"postgres=postgresql://postgres@127.0.0.1:5432/{base}",
            "--", "--reuse-db",
        )  # fmt: skip
        used = (project / "tests" / "databases.txt").read_text("utf-8").splitlines()
        facts = {"base": base, "databases": postgres_databases(f"%{base}%"), "used": used}
        (target / "facts.json").write_text(json.dumps(facts), "utf-8")
    finally:
        for name in (f"test_{base}_gw0", f"test_{base}_gw1", base):
            admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return ran


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    ran = once_per_session(tmp_path_factory, "django-app", _produce_django)
    return ran, json.loads((ran.project.parent / "facts.json").read_text("utf-8"))


def test_pytest_django_gets_the_server_and_makes_each_workers_database(
    django_app: Facts,
) -> None:
    ran, facts = django_app
    assert ran.exit_code == 0, ran.output
    totals = ran.results()["totals"]
    assert (totals["passed"], totals["flaky"], totals["failed"]) == (4, 1, 0)
    base = facts["base"]
    assert "postgres: pytest-django creates each xdist worker's database itself" in ran.output
    assert "on this external server it never drops them (--reuse-db keeps them)" in ran.output
    # No test_gwN of testgate's, no third set from the rerun; --reuse-db kept pytest-django's.
    assert facts["databases"] == [base, f"test_{base}_gw0", f"test_{base}_gw1"]
    assert facts["used"][-1] == f"test_{base}_gw0"  # the rerun: the first worker's name
    assert set(facts["used"]) <= {f"test_{base}_gw0", f"test_{base}_gw1"}


def test_pytest_djangos_databases_on_a_started_server_are_removed() -> None:
    base = "own" + secrets.token_hex(4)
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
    admin.run(f'CREATE DATABASE "test_{base}_gw0"')  # as pytest-django --reuse-db leaves it
    admin.close()
    service = msgspec.structs.replace(
        external("postgres", "postgresql://postgres@127.0.0.1:5432/postgres"), backend="local",
        url=None, database=base,
    )  # fmt: skip
    setup = Setup(command="exit 1", project=Path("/"), environ={})
    isolation = databases.create([service], count=2, setups={"postgres": setup}, django=True)
    assert (isolation.templates, isolation.django) == ({}, (service,))
    assert "does not run service-setup (pytest-django migrates)" in isolation.notes[0]
    assert "and removes those databases after the run." in isolation.notes[0]
    assert databases.drop(isolation) == []
    assert postgres_databases(f"%{base}%") == []
    gone = msgspec.structs.replace(service, port=1)
    warnings = databases.drop(databases.Isolation(django=(gone,)))
    assert warnings[0].startswith("postgres: pytest-django's databases were not listed:")


def test_a_failing_setup_command_is_exit_3_naming_it_and_leaves_nothing() -> None:
    base = "setup" + secrets.token_hex(4)
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
    admin.run(f'CREATE DATABASE "{base}"')
    service = external("postgres", f"postgresql://postgres@127.0.0.1:5432/{base}")
    setup = Setup(command="echo migrating $PGDATABASE; exit 7", project=Path("/"),
                  environ={"PATH": "/usr/bin:/bin"})  # fmt: skip
    with pytest.raises(InfraError) as raised:
        databases.create([service], count=2, setups={"postgres": setup})
    assert raised.value.exit_code == 3
    assert (
        "postgres: the setup command 'echo migrating $PGDATABASE; exit 7' failed (exit 7) "
        f"against database '{base}_template'; its output ends:\n    migrating {base}_template"
    ) in raised.value.message
    assert "Fix the command (service-setup of postgres)" in raised.value.message
    assert postgres_databases(f"{base}%") == [base]
    admin.run(f'DROP DATABASE "{base}"')
    admin.close()


def test_without_a_template_the_setup_runs_once_per_worker_database(tmp_path: Path) -> None:
    """MySQL has no CREATE DATABASE … TEMPLATE; Redis and MongoDB no schema to copy."""
    log = tmp_path / "setup.log"
    setup = Setup(command=f'echo "$MYSQL_DATABASE $REDIS_DB" >> {log}',
                  project=tmp_path, environ={"PATH": "/usr/bin:/bin"})  # fmt: skip
    base = "m" + secrets.token_hex(4)
    mysql = external("mysql", f"mysql://root@127.0.0.1:3306/{base}")
    assert databases.drop(databases.create([mysql], count=2, setups={"mysql": setup})) == []
    server = Redis(tmp_path / "redis")
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        own = msgspec.structs.replace(
            external("redis", url), backend="local", url=None, database="0"
        )
        assert databases.drop(databases.create([own], count=1, setups={"redis": setup})) == []
    finally:
        server.stop()
    assert log.read_text("utf-8").splitlines() == [f"{base}_gw0 ", f"{base}_gw1 ", " 0"]


@pytest.mark.parametrize(
    ("option", "names", "message"),
    [
        ("mappings", {"postgre": {}}, "service-env names 'postgre', which is not a service of"),
        ("setups", {"rabbitmq": None}, "service-setup names 'rabbitmq', which is not a database"),
    ],
)
def test_an_option_naming_no_service_of_the_run_is_a_config_error(
    option: str, names: dict[str, Any], message: str
) -> None:
    services = [external("postgres", "postgresql://postgres@127.0.0.1:1/x"),
                external("rabbitmq", "amqp://guest:guest@127.0.0.1:1/%2F")]  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        databases.create(services, count=1, **{option: names})  # type: ignore[arg-type]


def test_a_setup_that_fails_on_a_started_server_removes_what_was_made() -> None:
    base = "own" + secrets.token_hex(4)
    service = msgspec.structs.replace(
        external("postgres", "postgresql://postgres@127.0.0.1:5432/postgres"), backend="local",
        url=None, database=base,
    )  # fmt: skip
    setup = Setup(command="exit 1", project=Path("/"), environ={})
    with pytest.raises(InfraError, match="the setup command 'exit 1' failed"):
        databases.create([service], count=1, setups={"postgres": setup})
    assert postgres_databases(f"{base}%") == []


def test_a_started_server_that_refuses_to_create_databases_is_exit_3() -> None:
    role = "role" + secrets.token_hex(4)
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
    admin.run(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    service = msgspec.structs.replace(
        external("postgres", f"postgresql://{role}@127.0.0.1:5432/postgres"), backend="local",
        url=None, database=role,
    )  # fmt: skip
    try:
        with pytest.raises(InfraError, match="could not create the xdist workers' databases"):
            databases.create([service], count=1)
    finally:
        admin.run(f'DROP ROLE "{role}"')
        admin.close()


def test_without_xdist_pytest_django_names_its_database_as_the_first_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = fresh_plugin(monkeypatch, "_testgate_plugin_django")
    alone, under_xdist = SimpleNamespace(numprocesses=0), SimpleNamespace(numprocesses=2)
    environ = {databases.DJANGO_ENV: "gw0"}
    plugin.django_suffix(SimpleNamespace(option=under_xdist), environ)
    assert "TOX_PARALLEL_ENV" not in environ  # each worker gets xdist's own suffix
    plugin.django_suffix(SimpleNamespace(option=alone), environ)
    assert environ["TOX_PARALLEL_ENV"] == "gw0"
    users = {databases.DJANGO_ENV: "gw0", "TOX_PARALLEL_ENV": "py311"}
    plugin.django_suffix(SimpleNamespace(option=alone), users)
    assert users["TOX_PARALLEL_ENV"] == "py311"


def test_env_files_complete_the_mapping_and_only_names_are_told(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# local\nCACHE_URI='redis://other:1/0'\n  export CACHE_TTL=5\nnot a line\n", "utf-8"
    )
    (tmp_path / ".env.test").write_text("DATABASE_URL=postgresql://elsewhere/db\n", "utf-8")
    (tmp_path / ".env.testing").write_text("SENTRY_DSN=\n", "utf-8")  # no service's
    cache = msgspec.structs.replace(external("cache", "redis://127.0.0.1:6379/0"), database="0")
    postgres = external("postgres", "postgresql://postgres@127.0.0.1:5432/app")
    found = precedence.resolve(
        project=tmp_path, services=[cache, postgres], mappings={"postgres": {"X": "{host}"}}
    )
    assert found.mappings == {"cache": {"CACHE_URI": "{url}"}, "postgres": {"X": "{host}"}}
    assert cache.worker_variables("3", found.mappings["cache"])["CACHE_URI"].endswith(":6379/3")
    assert found.notes[0].startswith(
        "testgate also sets CACHE_URI, named in the project's .env and"
    )
    assert found.notes[1].startswith(".env sets CACHE_URI, which testgate sets as well")
    assert found.notes[2].startswith(".env.test sets DATABASE_URL, which testgate sets")
    assert "sets CACHE_TTL, which testgate does not set" in found.notes[3]
    assert precedence.resolve(project=tmp_path / "none", services=[cache], mappings={}).notes == ()
