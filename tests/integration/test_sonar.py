"""``testgate sonar``: the real pysonar, a local SonarQube, and the quality gate in our verdict.

SonarQube lies outside this machine: a local HTTP server (pytest-httpserver) answers the
endpoints pysonar and the gate poll call, and records each request. pysonar itself is
real; it is given a stand-in for SonarQube's scanner engine (the Java program it would
download from the server) through its own ``sonar.scanner.javaExePath`` property: the
stand-in records the properties pysonar hands it and writes ``report-task.txt`` as the
engine does.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from runner.errors import InfraError
from runner.results import RunInfo, RunResult
from runner.settings import load_settings
from runner.sonar import Sonar, properties, quality_gate, read_report_task
from tests.conftest import Ran, copy_fixture, once_per_session, run_in_process

TOKEN = "squ_secret_token_for_tests"
ENGINE = """#!{python}
import json, os, pathlib, sys
properties = {{p["key"]: p["value"] for p in json.load(sys.stdin)["scannerProperties"]}}
pathlib.Path(os.environ["ENGINE_RECORD"]).write_text(json.dumps(properties))
task = pathlib.Path(properties["sonar.scanner.metadataFilePath"])
task.parent.mkdir(parents=True, exist_ok=True)
host = properties["sonar.host.url"]
task.write_text(f"serverUrl={{host}}\\nceTaskId=T1\\nceTaskUrl={{host}}/api/ce/task?id=T1\\n"
                f"dashboardUrl={{host}}/dashboard?id=p\\n")
print(json.dumps({{"level": "INFO", "message": "ANALYSIS SUCCESSFUL"}}))
"""


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A passing project with the reports of a real run, private to this test."""
    shared = once_per_session(
        tmp_path_factory, "passing", lambda root: run_in_process(copy_fixture("passing", root))
    )
    assert shared.exit_code == 0, shared.output
    copy = copy_fixture("passing", tmp_path)
    shutil.copytree(shared.reports, copy / "testgate-reports")
    return copy


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    path = tmp_path / "fake-java"
    path.write_text(ENGINE.format(python=sys.executable), "utf-8")
    path.chmod(0o755)
    return path


class Server:
    """The local SonarQube: answers, and remembers every request's path and token."""

    def __init__(self, httpserver: HTTPServer) -> None:
        self.http = httpserver
        self.seen: list[tuple[str, str | None]] = []
        self.task_states = ["PENDING", "SUCCESS"]
        self.gate: dict[str, Any] = {"status": "OK", "conditions": []}
        self.version_status = 200
        for path, answer in (
            ("/api/v2/analysis/version", self.version),
            ("/api/ce/task", self.task),
            ("/api/qualitygates/project_status", self.project_status),
        ):
            httpserver.expect_request(path).respond_with_handler(self.recorded(answer))

    @property
    def url(self) -> str:
        return self.http.url_for("").rstrip("/")

    def recorded(self, answer: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            self.seen.append((request.path, request.headers.get("Authorization")))
            return answer(request)

        return handler

    def version(self, request: Request) -> Response:
        return Response("10.8.0.100000", status=self.version_status)

    def task(self, request: Request) -> Response:
        state = self.task_states.pop(0) if len(self.task_states) > 1 else self.task_states[0]
        body = {"task": {"id": request.args["id"], "status": state, "analysisId": "A1"}}
        return Response(json.dumps(body), content_type="application/json")

    def project_status(self, request: Request) -> Response:
        assert request.args["analysisId"] == "A1"
        return Response(json.dumps({"projectStatus": self.gate}), content_type="application/json")


@pytest.fixture
def server(httpserver: HTTPServer) -> Server:
    return Server(httpserver)


def sonar(project: Path, server: Server, engine: Path, *args: str, **env: str) -> Ran:
    extra = {
        "SONAR_TOKEN": TOKEN,
        "SONAR_SCANNER_JAVA_EXE_PATH": str(engine),
        "SONAR_SCANNER_ENGINE_JAR_PATH": str(engine),
        "SONAR_USER_HOME": str(project / ".sonar-home"),
        "ENGINE_RECORD": str(project / "engine-properties.json"),
        **env,
    }
    key = () if "--sonar-project-key" in args else ("--sonar-project-key", "calc")
    return run_in_process(
        project, "--sonar-host-url", server.url, *key, *args, extra_env=extra, command="sonar"
    )


def read_outputs(path: Path) -> dict[str, str]:
    """The step outputs a ``$GITHUB_OUTPUT`` file sets (``NAME<<DELIMITER`` form)."""
    found = re.findall(r"^(\S+)<<(\S+)\n(.*?)\n\2$", path.read_text("utf-8"), re.M | re.S)
    return {name: value for name, _, value in found}


def engine_saw(project: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((project / "engine-properties.json").read_text("utf-8"))
    return data


def test_an_upload_reaches_the_gate_and_the_token_stays_secret(
    project: Path, server: Server, engine: Path
) -> None:
    ran = sonar(project, server, engine, "--sonar-project-key", "calc")
    assert ran.exit_code == 0, ran.output
    assert ran.gate("sonar-quality-gate") == {
        "name": "sonar-quality-gate",
        "threshold": None,
        "actual": None,
        "passed": True,
        "message": "OK",
        "verdict": "pass",
    }
    assert [path for path, _ in server.seen] == [
        "/api/v2/analysis/version",
        "/api/ce/task",
        "/api/ce/task",
        "/api/qualitygates/project_status",
    ]
    assert {token for _, token in server.seen} == {f"Bearer {TOKEN}"}
    assert TOKEN not in ran.output
    assert "ANALYSIS SUCCESSFUL" in ran.output
    seen = engine_saw(project)
    assert seen["sonar.python.version"] == "3.11"
    assert seen["sonar.python.coverage.reportPaths"] == "testgate-reports/coverage.xml"
    assert seen["sonar.python.xunit.reportPath"] == "testgate-reports/junit.xml"
    assert seen["sonar.projectKey"] == "calc"
    assert "sonar.scm.revision" not in seen  # the copy is no git repository


def test_a_failed_gate_fails_the_verdict_with_its_conditions(
    project: Path, server: Server, engine: Path
) -> None:
    server.gate = {
        "status": "ERROR",
        "conditions": [
            {"status": "ERROR", "metricKey": "new_coverage", "comparator": "LT",
             "errorThreshold": "80", "actualValue": "65.2"},
            {"status": "OK", "metricKey": "new_bugs", "comparator": "GT", "errorThreshold": "0"},
        ],
    }  # fmt: skip
    # On a runner: the step's outputs and the job summary say so, as the run's do (the
    # action's passed output is the sonar step's once it judged).
    output, step_summary = project / "github-output.txt", project / "step-summary.md"
    ran = sonar(
        project, server, engine, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output),
        GITHUB_STEP_SUMMARY=str(step_summary),
    )  # fmt: skip
    assert ran.exit_code == 1
    message = "ERROR: new_coverage LT 80 (actual 65.2)"
    assert ran.gate("sonar-quality-gate")["message"] == message
    assert message in (project / "testgate-reports" / "summary.md").read_text("utf-8")
    assert read_outputs(output) == {"passed": "false"}
    assert message in step_summary.read_text("utf-8")
    assert f"::error title=testgate::SonarQube's quality gate failed: {message}" in ran.output


def test_pull_request_and_branch_properties_come_from_github(
    project: Path, server: Server, engine: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {"pull_request": {"number": 42, "head": {"ref": "feat"}, "base": {"ref": "main"}}}
        ),
        "utf-8",
    )
    ran = sonar(
        project, server, engine, GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(event),
        GITHUB_SHA="abc123", GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(tmp_path / "output.txt"),
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert read_outputs(tmp_path / "output.txt") == {"passed": "true"}
    seen = engine_saw(project)
    assert (seen["sonar.pullrequest.key"], seen["sonar.pullrequest.branch"]) == ("42", "feat")
    assert seen["sonar.pullrequest.base"] == "main"
    assert "::add-mask::" in ran.output  # the token is masked before anything else runs
    server.task_states = ["SUCCESS"]
    pushed = sonar(project, server, engine, GITHUB_EVENT_NAME="push", GITHUB_REF_NAME="main")
    assert pushed.exit_code == 0
    assert engine_saw(project)["sonar.branch.name"] == "main"
    broken = tmp_path / "broken.json"
    broken.write_text("{}", "utf-8")
    bad = sonar(
        project, server, engine, GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(broken)
    )
    assert bad.exit_code == 3
    assert "cannot read the pull request from GITHUB_EVENT_PATH" in bad.output


def test_a_refused_token_is_exit_three_and_the_reports_are_untouched(
    project: Path, server: Server, engine: Path
) -> None:
    server.version_status = 401
    before = (project / "testgate-reports" / "results.json").read_bytes()
    ran = sonar(project, server, engine)
    assert ran.exit_code == 3
    assert "pysonar failed" in ran.output
    assert "a 401 or 403 means a wrong or expired token" in ran.output
    assert TOKEN not in ran.output
    assert (project / "testgate-reports" / "results.json").read_bytes() == before


def test_a_gate_that_never_comes_times_out(project: Path, server: Server, engine: Path) -> None:
    server.task_states = ["IN_PROGRESS"]
    ran = sonar(project, server, engine, "--sonar-timeout", "0.8")
    assert ran.exit_code == 3
    assert "had not finished the analysis after 0.8 s (task T1 still IN_PROGRESS)" in ran.output


def test_without_a_token_the_upload_is_skipped_with_one_notice(project: Path) -> None:
    ran = run_in_process(project, command="sonar", extra_env={"SONAR_TOKEN": ""})
    assert ran.exit_code == 0
    assert "SONAR_TOKEN is not set" in ran.output
    assert "the SonarQube upload is skipped" in ran.output
    quiet = run_in_process(project, "--sonar-wait", "false", command="sonar",
                           extra_env={"GITHUB_ACTIONS": "true", "SONAR_TOKEN": ""})  # fmt: skip
    assert "::notice::SONAR_TOKEN is not set" in quiet.output


def test_pysonars_dry_run_accepts_testgates_reports(project: Path) -> None:
    ran = run_in_process(project, "--dry-run", command="sonar")
    assert ran.exit_code == 0, ran.output
    assert "Coverage report check passed: testgate-reports/coverage.xml" in ran.output
    assert "Configuration validation PASSED" in ran.output


def test_sonar_needs_a_run_first(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    ran = run_in_process(project, command="sonar", extra_env={"SONAR_TOKEN": TOKEN})
    assert ran.exit_code == 2
    assert "no results.json in" in ran.output
    assert "run 'testgate run' first" in ran.output
    # Without a token there is nothing to upload: the notice alone, whatever the run left
    # (the action's upload step runs for a fork's pull request, whose run may have failed).
    skipped = run_in_process(project, command="sonar", extra_env={"SONAR_TOKEN": ""})
    assert skipped.exit_code == 0
    assert "the SonarQube upload is skipped" in skipped.output


def test_the_gate_poll_names_every_way_it_can_fail(server: Server, tmp_path: Path) -> None:
    client = Sonar(host=server.url, token=TOKEN, timeout_s=5)
    task_url = f"{server.url}/api/ce/task?id=T1"
    server.task_states = ["FAILED"]
    with pytest.raises(InfraError, match="the analysis failed on the server"):
        quality_gate(client, {"ceTaskUrl": task_url})
    with pytest.raises(InfraError, match="SonarQube answered HTTP 500"):
        quality_gate(client, {"ceTaskUrl": f"{server.url}/api/unknown"})
    server.http.expect_request("/forbidden").respond_with_data("", status=403)
    with pytest.raises(InfraError, match="refused the token"):
        quality_gate(client, {"ceTaskUrl": f"{server.url}/forbidden"})
    with pytest.raises(InfraError, match="did not answer"):
        quality_gate(client, {"ceTaskUrl": "http://127.0.0.1:9/api/ce/task"})
    with pytest.raises(InfraError, match="wrote no"):
        read_report_task(tmp_path / "none.txt")
    (tmp_path / "task.txt").write_text("serverUrl=x\n", "utf-8")
    with pytest.raises(InfraError, match="names no ceTaskUrl"):
        read_report_task(tmp_path / "task.txt")


def test_properties_follow_what_the_run_recorded(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "junit-sonar.xml").write_text("<testsuites/>", "utf-8")
    settings = load_settings(
        project=project,
        flags={"sonar-organization": "acme", "reports-dir": str(outside)},
        environ={},
    )
    info = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit="c0ffee",
                   python=None, platform=None, variant=None)  # fmt: skip
    found = properties(settings, RunResult(run=info, tests=(), coverage=None, gates=()), {})
    assert found["sonar.organization"] == "acme"
    assert found["sonar.scm.revision"] == "c0ffee"
    assert "sonar.python.version" not in found  # a merge of another tool's JUnit records none
    assert found["sonar.python.xunit.reportPath"] == str(outside / "junit-sonar.xml")
    assert found["sonar.host.url"] == "https://sonarcloud.io"
