"""``testgate run --service``: services around the run, a database of its own per xdist worker."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pg8000.native
import pytest

from runner import execute, interrupts
from runner.environment import ProjectEnv
from runner.errors import InfraError
from runner.services import lifecycle
from runner.services.served import project_services
from runner.services.spec import parse_specs
from runner.settings import load_settings
from tests.conftest import copy_fixture, fresh_plugin, run_in_process
from tests.integration.services_apps import Facts, app_run
from tests.integration.test_security import github_mode, runner_commands, runner_file_command


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return app_run(tmp_path_factory)


def test_each_worker_writes_to_its_own_database(app: Facts) -> None:
    """The services fixture's tests share one table name under -n 2; none sees another's rows.

    They run in the session's run of the SQLAlchemy app (``services_apps``), beside its own
    tests, on its external PostgreSQL and Redis."""
    ran, facts = app
    assert ran.exit_code == 0, ran.output
    private = [t for t in ran.results()["tests"] if t["id"].startswith("tests/test_private_")]
    assert len(private) == 13
    assert {t["outcome"] for t in private} == {"passed"}
    assert "testgate: postgres ready in" in ran.output
    phases = ran.results()["run"]["phases"]  # where the time went, the services' part too
    assert sorted(phases) == [
        "install_s", "reports_s", "reruns_s", "services_ready_s", "services_s", "tests_s"
    ]  # fmt: skip
    assert phases["tests_s"] == ran.results()["run"]["suite_duration_s"]
    assert "Time: install " in (ran.reports / "summary.md").read_text("utf-8")
    assert "testgate: time: install " in ran.output
    assert "stopped 0 services and removed what they left; 6 external" in ran.output
    base = facts["base"]
    assert facts["postgres"] == [base, f"{base}_gw0"]  # the workers' are dropped after the run
    assert not (ran.project / ".testgate").exists()


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
    with lifecycle.session(
        (), project=tmp_path, backend="auto", timeout=10, environ={}
    ) as starting:
        assert [running.name for running in starting.wait()] == ["redis"]
    assert state.exists()  # an earlier 'up' is left running for its own 'down'
    lifecycle.down(state_file=state, environ={})
    with lifecycle.session(
        (), project=tmp_path, backend="auto", timeout=10, environ={}
    ) as starting:
        assert starting.wait() == []


def test_a_killed_runs_services_are_removed_by_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec,) = parse_specs(["redis"])
    leftover = tmp_path / ".testgate" / "run-services.json"
    (old,) = lifecycle.up([spec], backend="local", timeout=10, state_file=leftover, environ={})
    external = parse_specs(["redis=redis://127.0.0.1:6379/0"])
    with lifecycle.session(external, project=tmp_path, backend="auto", timeout=10,
                           environ={}) as starting:  # fmt: skip
        assert [running.backend for running in starting.wait()] == ["external"]
        assert not Path(old.directory or "").exists()
    assert (  # said, not done silently
        "testgate: stopped the services an earlier run left running (redis): it ended "
        "before it could stop them (killed, or its machine went down)"
    ) in capsys.readouterr().out


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
    monkeypatch.delenv("COVERAGE_FILE", raising=False)  # else named for gw3 past this test
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


# Until the state file records a started service ('up' writes it first with none).
RECORDED = "until grep -q '\"kind\"' {state} 2>/dev/null; do sleep 0.05; done"


def slow_python(path: Path, *, script: str) -> Path:
    """A ``--python`` whose installation (testgate's probe) does ``script`` first.

    It then runs as this suite's own Python, which has pytest and its plugins.
    """
    path.write_text(f'#!/bin/sh\n{script}\nexec {sys.executable} "$@"\n', "utf-8")
    path.chmod(0o755)
    return path


def test_the_services_start_while_the_project_installs_and_a_signal_then_stops_them(
    tmp_path: Path,
) -> None:
    """The probe sees the service recorded as started before it answers; SIGTERM there
    stops the service, and the run exits 3."""
    project = copy_fixture("cancel", tmp_path)
    state = project / ".testgate" / "run-services.json"
    seen = tmp_path / "seen.json"
    python = slow_python(
        tmp_path / "python",
        script=f"{RECORDED.format(state=state)}\ncp {state} {seen}\nexec sleep 60",
    )

    def interrupt_once_seen() -> None:
        while not seen.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=interrupt_once_seen, daemon=True)
    sender.start()
    ran = run_in_process(
        project, "--python", str(python), "--service", "redis", "--services-backend", "local"
    )
    sender.join()
    assert ran.exit_code == 3, ran.output
    assert "interrupted by SIGTERM before anything could be reported" in ran.output
    (started,) = json.loads(seen.read_text("utf-8"))["services"]
    assert started["backend"] == "local"
    assert not Path(started["directory"]).exists()  # stopped, and what it left removed
    assert not state.exists()


def test_a_service_that_fails_while_the_project_installs_is_exit_3_with_its_reason(
    tmp_path: Path,
) -> None:
    project = copy_fixture("cancel", tmp_path)
    state = project / ".testgate" / "run-services.json"
    # Installing lasts until the service was given up (bounded, should it be missed). Only
    # the first call of this Python waits (uv asks it before testgate's probe does): a later
    # one would wait out the bound for a state file that is gone for good.
    waited = tmp_path / "waited"
    waits = (
        f"if [ ! -e {waited} ]; then touch {waited}\n"
        f"n=0; while [ ! -e {state} ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done\n"
        f"n=0; while [ -e {state} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\nfi"
    )
    python = slow_python(tmp_path / "python", script=waits)
    ran = run_in_process(
        project,
        "--python", str(python),
        "--service", "redis=redis://127.0.0.1:1/0",
        "--services-timeout", "1",
    )  # fmt: skip
    assert ran.exit_code == 3, ran.output
    (problem,) = ran.results()["run"]["problems"]  # the reports say why
    assert problem.startswith("services: redis (external Redis) never became ready")
    assert problem.endswith("Every service started was stopped again.")
    assert ran.results()["tests"] == []
    assert not state.exists()


def test_an_installation_that_fails_stops_the_services_started_meanwhile(tmp_path: Path) -> None:
    project = copy_fixture("cancel", tmp_path)
    state = project / ".testgate" / "run-services.json"
    seen = tmp_path / "seen.json"
    python = slow_python(
        tmp_path / "python",
        script=f"{RECORDED.format(state=state)}\ncp {state} {seen}\nexit 1",
    )
    ran = run_in_process(
        project, "--python", str(python), "--service", "redis", "--services-backend", "local"
    )
    assert ran.exit_code == 3, ran.output
    assert "did not answer testgate's probe" in ran.output
    (started,) = json.loads(seen.read_text("utf-8"))["services"]
    assert not Path(started["directory"]).exists()
    assert not state.exists()


def background_up(project: Path, *specs: str, log: Path) -> subprocess.Popen[bytes]:
    """``testgate services up`` in the background, as the action starts it; returns once
    its state file says it runs."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "testgate"), "services", "up", *specs],
            cwd=project, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "GITHUB_ACTIONS": ""},
        )  # fmt: skip
    while not (project / lifecycle.STATE_FILE).exists():
        assert process.poll() is None, log.read_text("utf-8")
        time.sleep(0.05)
    return process


def test_a_run_awaits_the_services_an_up_in_the_background_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "up.log"
    process = background_up(tmp_path, "redis", "--backend", "local", log=log)
    environ = {lifecycle.UP_LOG_ENV: str(log)}
    with lifecycle.session((), project=tmp_path, backend="auto", timeout=10,
                           environ=environ) as starting:  # fmt: skip
        (redis,) = starting.wait()
    assert process.wait() == 0
    assert (redis.name, redis.backend) == ("redis", "local")
    shown = capsys.readouterr().out
    assert "testgate: redis ready in" in shown  # what 'up' said, shown
    assert "export" not in shown  # not its variables: a value may be a secret
    lifecycle.down(state_file=tmp_path / lifecycle.STATE_FILE, environ={})
    assert not Path(redis.directory or "").exists()


def test_down_stops_an_up_still_waiting_in_the_background(tmp_path: Path) -> None:
    process = background_up(
        tmp_path, "redis=redis://127.0.0.1:1/0", "--timeout", "60", log=tmp_path / "up.log"
    )
    lifecycle.down(state_file=tmp_path / lifecycle.STATE_FILE, environ={})
    assert process.wait(timeout=30) == 3  # stopped by its signal, after its own clean-up
    assert not (tmp_path / lifecycle.STATE_FILE).exists()


def test_a_background_up_that_gave_up_is_an_error_with_the_end_of_its_output(
    tmp_path: Path,
) -> None:
    log = tmp_path / "up.log"
    log.write_text("testgate: error: db (container postgres:16) never became ready\n", "utf-8")
    environ = {lifecycle.UP_LOG_ENV: str(log)}
    session = lifecycle.session((), project=tmp_path, backend="auto", timeout=10, environ=environ)
    with session as starting, pytest.raises(InfraError) as raised:
        starting.wait()
    assert raised.value.message == (
        "the services that 'testgate services up' (process 0) was starting never became "
        "ready; its output ends:\n    testgate: error: db (container postgres:16) never "
        "became ready"
    )


def test_a_background_up_that_died_is_an_error(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    state = lifecycle.StateFile(tmp_path / lifecycle.STATE_FILE)
    state.pid = int(gone.stdout)
    state.begin()
    with pytest.raises(InfraError, match=rf"\(process {state.pid}\) was starting never"):
        lifecycle.await_up(state.path, pid=state.pid, cancelled=threading.Event())
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(InfraError, match="stopped while it waited"):
        lifecycle.await_up(state.path, pid=os.getpid(), cancelled=stopped)


def test_an_up_without_a_backend_leaves_no_state(tmp_path: Path) -> None:
    (spec,) = parse_specs(["redis"])
    state = tmp_path / lifecycle.STATE_FILE
    environ = {"PATH": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    with pytest.raises(InfraError, match="no Docker engine answers"):
        lifecycle.up([spec], backend="docker", timeout=10, state_file=state, environ=environ)
    assert not state.exists()


def test_flakys_services_say_their_notices_once_awaited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a list to collect them (``flaky``), the notices are printed when the
    services are awaited, before the tests start."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    (tmp_path / ".env").write_text("REDIS_HOSTNAME=elsewhere\n", "utf-8")
    settings = load_settings(
        project=tmp_path,
        flags={"services": "redis=redis://127.0.0.1:6379/0", "workers": "2"},
        environ={},
    )
    with project_services(settings, environ={}) as services:
        served = services.environ(ProjectEnv(python="3.11", platform="linux"))
        told = capsys.readouterr().out
    assert "REDIS_URL" in json.loads(served[execute.WORKER_ENV])  # a database per worker
    assert "testgate: notice: " in told
    assert "REDIS_HOSTNAME" in told


def test_a_setup_command_runs_in_the_installed_environment(tmp_path: Path) -> None:
    """Its scripts come first on PATH, as in pytest's own run: no 'uv run', which would
    sync the project's default groups before testgate's own installation."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n', "utf-8")
    found = tmp_path / "found.txt"
    settings = load_settings(
        project=tmp_path,
        flags={
            "services": "postgres=postgresql://postgres@127.0.0.1:5432/postgres",
            "service-setup": f"postgres=command -v python > {found}; command -v pytest >> {found}",
            "workers": "2",
        },
        environ={},
    )
    installed = ProjectEnv(python="3.11", platform="linux", executable=sys.executable)
    with project_services(settings, environ={"PATH": os.environ["PATH"]}) as services:
        services.environ(installed)
    scripts = Path(sys.executable).parent
    assert found.read_text("utf-8").split() == [sys.executable, str(scripts / "pytest")]
    assert not (tmp_path / "uv.lock").exists()


def test_a_forged_state_names_a_process_that_is_never_signalled_nor_awaited(
    tmp_path: Path,
) -> None:
    """A pull request can commit .testgate/services.json with an 'up' still starting: the
    pid it names (here this very process) is no 'testgate services up', so 'down' sends
    it nothing and a run does not wait for it."""
    state = lifecycle.StateFile(tmp_path / lifecycle.STATE_FILE)
    state.pid = os.getpid()
    state.begin()
    with pytest.raises(InfraError, match="never became ready"):
        lifecycle.await_up(state.path, pid=state.pid, cancelled=threading.Event())
    lifecycle.down(state_file=state.path, environ={})  # this process lives on
    assert not state.path.exists()


def test_a_signal_ends_ups_wait_and_stops_what_it_started(tmp_path: Path) -> None:
    (spec,) = parse_specs(["redis=redis://127.0.0.1:1/0"])
    state = tmp_path / "services.json"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    with interrupts.handling_signals():
        timer.start()
        with pytest.raises(interrupts.Interrupted):
            lifecycle.up([spec], backend="auto", timeout=60, state_file=state, environ={})
    timer.join()
    assert not state.exists()


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI here to ask an engine")
def test_a_signal_while_the_engine_is_asked_leaves_no_state_behind(tmp_path: Path) -> None:
    """An engine that never answers 'docker version': SIGTERM ends 'up' there, and the
    state file it began goes with it (else the next 'up' refuses to start)."""
    with socket.socket(socket.AF_UNIX) as engine:  # accepts, never answers
        engine.bind(str(tmp_path / "engine.sock"))
        engine.listen()
        environ = {"DOCKER_HOST": f"unix://{tmp_path}/engine.sock", "PATH": os.environ["PATH"]}
        state = tmp_path / "services.json"
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        with interrupts.handling_signals():
            timer.start()
            with pytest.raises(interrupts.Interrupted):
                lifecycle.up(parse_specs(["redis:7"]), backend="docker", timeout=60,
                             state_file=state, environ=environ)  # fmt: skip
        timer.join()
    assert not state.exists()


def test_an_up_recorded_as_done_is_awaited_at_once_without_a_log(tmp_path: Path) -> None:
    state = lifecycle.StateFile(tmp_path / lifecycle.STATE_FILE)
    state.ready = True
    state.begin()
    assert lifecycle.await_up(state.path, pid=0, cancelled=threading.Event()) == []


def test_an_up_done_before_the_run_began_is_shown_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = lifecycle.StateFile(tmp_path / lifecycle.STATE_FILE)
    state.ready = True
    state.begin()
    log = tmp_path / "up.log"
    log.write_text("testgate: db ready in 2.10 s\nexport DB_PASSWORD=secret\n", "utf-8")
    environ = {lifecycle.UP_LOG_ENV: str(log)}
    with lifecycle.session((), project=tmp_path, backend="auto", timeout=10,
                           environ=environ) as starting:  # fmt: skip
        assert starting.wait() == []
    assert capsys.readouterr().out == "testgate: db ready in 2.10 s\n"


def test_a_run_waits_while_the_up_it_awaits_still_runs(tmp_path: Path) -> None:
    """Polled until that process ends; one that ends without its services ready failed."""
    up = subprocess.Popen(["sh", "-c", "sleep 1", "services", "up"])  # named as an 'up' is
    state = lifecycle.StateFile(tmp_path / lifecycle.STATE_FILE)
    state.pid = up.pid
    state.begin()
    with pytest.raises(InfraError, match=rf"\(process {up.pid}\) was starting never"):
        lifecycle.await_up(state.path, pid=up.pid, cancelled=threading.Event())
    assert up.wait() == 0  # it had ended: the wait lasted as long as it ran
