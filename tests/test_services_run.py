"""``testgate run --service``: services around the run, a database of its own per xdist worker."""

from __future__ import annotations

import os
from pathlib import Path

import pg8000.native
import pytest

from runner import execute
from runner.services import lifecycle
from runner.services.spec import parse_specs
from tests.conftest import copy_fixture, fresh_plugin, run_in_process

# Its own base database, so the workers' databases (postgres_gw0, ...) are this test's alone.
WORKER_QUERY = "SELECT datname FROM pg_database WHERE datname LIKE 'postgres_gw%'"


def test_each_worker_writes_to_its_own_database(tmp_path: Path) -> None:
    """The fixture's tests share one table name under -n 2; none sees another's rows."""
    project = copy_fixture("services", tmp_path)
    ran = run_in_process(
        project,
        "--workers", "2",
        "--service", "postgres=postgresql://postgres@127.0.0.1:5432/postgres",
        "--service", "redis=redis://127.0.0.1:6379/0",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    totals = ran.results()["totals"]
    assert (totals["passed"], totals["failed"]) == (13, 0)
    assert "testgate: postgres ready in" in ran.output
    assert "stopped 0 services and removed what they left; 2 external" in ran.output
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="test")
    assert admin.run(WORKER_QUERY) == []  # dropped after the run
    admin.close()
    assert not (project / ".testgate").exists()


def test_a_run_uses_the_services_an_earlier_up_recorded(tmp_path: Path) -> None:
    (spec,) = parse_specs(["redis=redis://127.0.0.1:6379/0"])
    state = tmp_path / lifecycle.STATE_FILE
    lifecycle.up([spec], backend="auto", timeout=10, state_file=state, environ={})
    with lifecycle.session((), project=tmp_path, backend="auto", timeout=10, environ={}) as found:
        assert [running.name for running in found] == ["redis"]
    assert state.exists()  # an earlier 'up' is left running for its own 'down'
    lifecycle.down(state_file=state, environ={})
    with lifecycle.session((), project=tmp_path, backend="auto", timeout=10, environ={}) as found:
        assert found == []


def test_a_killed_runs_services_are_removed_by_the_next_run(tmp_path: Path) -> None:
    (spec,) = parse_specs(["redis"])
    leftover = tmp_path / ".testgate" / "run-services.json"
    (old,) = lifecycle.up([spec], backend="local", timeout=10, state_file=leftover, environ={})
    external = parse_specs(["redis=redis://127.0.0.1:6379/0"])
    with lifecycle.session(external, project=tmp_path, backend="auto", timeout=10,
                           environ={}) as found:  # fmt: skip
        assert [running.backend for running in found] == ["external"]
        assert not Path(old.directory or "").exists()


@pytest.mark.parametrize(
    ("workers", "environ", "expected"),
    [("3", {}, 3), ("0", {}, 1), ("auto", {"PYTEST_XDIST_AUTO_NUM_WORKERS": "5"}, 5)],
)
def test_worker_count(workers: str, environ: dict[str, str], expected: int) -> None:
    assert lifecycle.worker_count(workers, environ) == expected


def test_worker_count_auto_is_the_cpus_this_process_may_use() -> None:
    assert lifecycle.worker_count("auto", {}) == len(os.sched_getaffinity(0))


def test_the_plugin_points_each_worker_at_its_own_database_before_any_conftest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plugin sets the variables when pytest imports it (-p), before conftest files."""
    templates = (
        '{"DATABASE_URL": "pg://h/test_{worker}", "REDIS_URL": "r://h/{index}",'
        ' "REDIS_DB": ["2", "3", "5", "7"]}'
    )
    monkeypatch.setenv(execute.WORKER_ENV, templates)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_DB", raising=False)
    module = fresh_plugin(monkeypatch, "_testgate_plugin_workers")
    assert (os.environ["DATABASE_URL"], os.environ["REDIS_URL"]) == ("pg://h/test_gw3", "r://h/3")
    assert os.environ["REDIS_DB"] == "7"  # one value per worker, in worker order
    without_xdist = {execute.WORKER_ENV: templates}
    module.worker_environment(without_xdist)
    assert (without_xdist["DATABASE_URL"], without_xdist["REDIS_URL"]) == (
        "pg://h/test_gw0",
        "r://h/0",
    )
