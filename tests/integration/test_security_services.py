"""Hostile cases: on a service testgate did not start, it never deletes data it did not create.

The session's one real run of the fixture app (``tests/integration/services_apps.py``) is given
external services that already hold a user's data. Each case checks the run's exit
code, the message's key words, and that the user's keys, rows and databases are all
still there afterwards, while nothing testgate created is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.services import lifecycle
from runner.services.spec import parse_specs
from tests.integration.services_apps import Facts, app_run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return app_run(tmp_path_factory)


def test_the_run_passes_with_every_worker_isolated_where_it_can_be(hostile: Facts) -> None:
    ran, _ = hostile
    assert ran.exit_code == 0, ran.output
    totals = ran.results()["totals"]
    assert (totals["passed"], totals["flaky"], totals["failed"]) == (30, 1, 0)


def test_a_redis_whose_databases_hold_keys_keeps_them(hostile: Facts) -> None:
    """The workers used the empty databases 2 and 3, emptied them after, and left 0 and 1."""
    _, facts = hostile
    assert facts["redis_keys"] == ["kept", "+OK", "kept"]
    assert facts["redis_sizes"] == [1, 1, 0, 0]


def test_a_redis_without_an_empty_database_is_shared_and_never_emptied(hostile: Facts) -> None:
    ran, facts = hostile
    assert "full: the external Redis has 0 empty databases, not one for each of 2" in ran.output
    assert "testgate never empties one it did not fill; the xdist workers share" in ran.output
    assert facts["full_keys"] == ["kept", "+OK", "kept"]


@pytest.mark.parametrize(("service", "worker"), [("postgres", "gw0"), ("mysql", "gw1")])
def test_a_database_named_as_a_workers_is_never_dropped(
    hostile: Facts, service: str, worker: str
) -> None:
    ran, facts = hostile
    base = facts["base"]
    taken = f"{service}: {base}_{worker} already exists on the external server and is not "
    assert taken in ran.output
    assert "testgate never drops a database it did not create" in ran.output
    assert facts[f"{service}_rows"] == ["kept"] * (2 if service == "postgres" else 1)
    assert facts[service] == [base, f"{base}_{worker}"]  # and none of testgate's is left


def test_without_the_right_to_create_databases_the_workers_share_the_given_one(
    hostile: Facts,
) -> None:
    ran, _ = hostile
    assert "limited: cannot create the workers' databases on the external server" in ran.output
    assert "Grant the right to create databases, or run with --workers 1." in ran.output


def test_a_mongodb_database_named_as_a_workers_is_never_dropped(hostile: Facts) -> None:
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
