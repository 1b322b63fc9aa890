"""``testgate run --service``: services around the run, a database of its own per xdist worker."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pg8000.native
import pytest

from runner import execute
from runner.services import lifecycle
from runner.services.spec import parse_specs
from tests.conftest import copy_fixture, fresh_plugin, run_in_process
from tests.integration.test_security import github_mode, runner_commands, runner_file_command

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


SETUP = "postgres=echo migrating $PGDATABASE; echo 'no relation `x`' >&2; exit 4"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--service", "postgres=postgresql://postgres@127.0.0.1:5432/{base}",
          "--service-setup", SETUP],
         ["services: postgres: the setup command \"echo migrating $PGDATABASE; echo 'no "
          "relation `x`' >&2; exit 4\" failed (exit 4) against database '{base}_template'; "
          "its output ends:", "    migrating {base}_template", "    no relation `x`",
          "Fix the command (service-setup of postgres), or run it by hand to see why."]),
        (["--service", "postgres=postgresql://postgres@127.0.0.1:1/{base}",
          "--services-timeout", "0.2"],
         ["services: postgres (external PostgreSQL) never became ready: not ready after",
          "  its last log lines:", "    (an external service: its logs are wherever it runs)",
          "Every service started was stopped again."]),
    ],
    ids=["setup-fails", "never-ready"],
)  # fmt: skip
def test_a_service_that_fails_is_a_problem_in_the_reports(
    tmp_path: Path, args: list[str], problem: list[str]
) -> None:
    """Exit 3 as before, and the reports say why: results.json's problems, summary.md."""
    base = "failed" + secrets.token_hex(4)
    args, problem = [arg.format(base=base) for arg in args], [p.format(base=base) for p in problem]
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", database="postgres")
    admin.run(f'CREATE DATABASE "{base}"')
    try:
        on_github = "--service-setup" in args  # there: the summary, outputs, an annotation
        ran = run_in_process(
            copy_fixture("services", tmp_path), "--workers", "2", *args,
            extra_env=github_mode(tmp_path) if on_github else {},
        )  # fmt: skip
        left = admin.run(f"SELECT datname FROM pg_database WHERE datname LIKE '{base}%'")
    finally:
        admin.run(f'DROP DATABASE "{base}"')
        admin.close()
    assert ran.exit_code == 3
    (found,) = ran.results()["run"]["problems"]
    assert found.startswith(problem[0])
    assert found.splitlines()[1:] == problem[1:]
    assert ran.results()["totals"]["tests"] == 0
    assert {gate["message"] for gate in ran.results()["gates"]} == {
        "not evaluated: the services failed, so no test ran (see the problem)"
    }
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "### Problems\n\n- services: postgres" in summary
    assert "  ```text\n" + "".join(f"  {line}\n" for line in problem[1:]) + "  ```" in summary
    assert f"problem: {problem[0]}" in ran.output
    if on_github:
        ((name, data),) = runner_commands(ran.output)
        assert (name, data.startswith(problem[0]), "%0A" in data) == ("error", True, True)
        assert (tmp_path / "step-summary.md").read_text("utf-8").count("### Problems") == 1
        outputs = runner_file_command((tmp_path / "step-output.txt").read_text())
        assert outputs["passed"] == "false"
    else:
        assert runner_commands(ran.output) == []
    assert left == [[base]]  # nothing of testgate's is left


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
