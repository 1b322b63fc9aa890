"""GitHub's REST API: check runs for every annotation, forks, and flakes seen across attempts.

GitHub lies outside this machine: a local HTTP server (pytest-httpserver) answers the
documented endpoints (POST/PATCH /repos/{repo}/check-runs, GET
/repos/{repo}/actions/runs/{run_id}/artifacts, GET /repos/{repo}/actions/artifacts/{id}/zip,
which redirects to storage as GitHub's does) and records what it received.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import structs
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from runner.coverage_data import infer_sources
from runner.environment import probe
from runner.github.client import connect
from runner.github.step import previous_attempt, report
from runner.results import RunResult, read_results
from runner.settings import load_settings
from tests.conftest import Ran, copy_fixture, environment, run_in_process, shared_environment

REPO = "acme/shop"
TOKEN = "ghs_secret_token_value"


def many_failures(outcomes_run: Ran, count: int) -> RunResult:
    """The outcomes run's result with its first failure repeated ``count`` times."""
    result = read_results(outcomes_run.reports / "results.json")
    failed = next(test for test in result.tests if test.outcome == "failed")
    tests = tuple(structs.replace(failed, id=f"{failed.id}[{n}]") for n in range(count))
    return msgspec.structs.replace(result, tests=tests)


def github_env(httpserver: HTTPServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_SHA": "merge0sha",
        "TESTGATE_GITHUB_TOKEN": TOKEN,
        **extra,
    }


def pull_request_event(tmp_path: Path, *, head_repo: str) -> str:
    path = tmp_path / "event.json"
    event = {
        "pull_request": {
            "head": {"sha": "head1sha", "repo": {"full_name": head_repo}},
            "base": {"repo": {"full_name": REPO}},
        }
    }
    path.write_text(json.dumps(event), "utf-8")
    return str(path)


class Recorder:
    """Records each request's method, path, headers and JSON body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def answer(self, status: int, body: dict[str, Any]) -> Any:
        def handler(request: Request) -> Response:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "auth": request.headers.get("Authorization"),
                    "json": request.get_json(silent=True),
                }
            )
            return Response(json.dumps(body), status=status, content_type="application/json")

        return handler


def test_every_annotation_goes_to_one_check_run_in_batches_of_50(
    httpserver: HTTPServer, tmp_path: Path, outcomes_run: Ran
) -> None:
    recorder = Recorder()
    httpserver.expect_request(f"/repos/{REPO}/check-runs", method="POST").respond_with_handler(
        recorder.answer(201, {"id": 77})
    )
    httpserver.expect_request(f"/repos/{REPO}/check-runs/77", method="PATCH").respond_with_handler(
        recorder.answer(200, {"id": 77})
    )
    environ = github_env(
        httpserver, tmp_path, GITHUB_EVENT_PATH=pull_request_event(tmp_path, head_repo=REPO),
        GITHUB_JOB="test",
    )  # fmt: skip
    failures = many_failures(outcomes_run, 120)
    printed = report(
        failures, markdown="# summary", reports_dir="r", environ=environ, api=connect(environ),
    )  # fmt: skip
    assert printed == ""  # nothing left for workflow commands: all 120 are in the check run
    assert [(r["method"], len(r["json"]["output"]["annotations"])) for r in recorder.requests] == [
        ("POST", 50), ("PATCH", 50), ("PATCH", 20),
    ]  # fmt: skip
    first = recorder.requests[0]
    assert first["auth"] == f"Bearer {TOKEN}"
    assert (first["json"]["head_sha"], first["json"]["conclusion"]) == ("head1sha", "failure")
    # one check run per job and matrix entry: the job and the variant name it
    assert first["json"]["name"] == f"testgate / test ({failures.run.variant})"
    annotation = first["json"]["output"]["annotations"][0]
    assert annotation["annotation_level"] == "failure"
    assert annotation["path"].startswith("tests/")
    assert annotation["start_line"] == annotation["end_line"] > 0


@pytest.mark.parametrize("status", [201, 403])
def test_a_run_with_nothing_to_annotate_still_reports_its_check_run(
    httpserver: HTTPServer, tmp_path: Path, outcomes_run: Ran, status: int
) -> None:
    # A re-run attempt that passes (attempt 1 failed while a database was down) left attempt
    # 1's failed check run the newest of its name: the pull request showed a failure.
    recorder = Recorder()
    httpserver.expect_request(f"/repos/{REPO}/check-runs", method="POST").respond_with_handler(
        recorder.answer(status, {"id": 78})
    )
    environ = github_env(httpserver, tmp_path, GITHUB_JOB="test", GITHUB_RUN_ATTEMPT="2")
    result = read_results(outcomes_run.reports / "results.json")
    passing = msgspec.structs.replace(
        result, tests=tuple(test for test in result.tests if test.outcome == "passed"),
        gates=tuple(gate for gate in result.gates if gate.passed),
    )  # fmt: skip
    assert passing.passed
    printed = report(passing, markdown="", reports_dir="r", environ=environ, api=connect(environ))
    ((request,),) = [recorder.requests]
    assert (request["json"]["conclusion"], request["json"]["output"]["annotations"]) == (
        "success", [],
    )  # fmt: skip
    assert printed == ""  # nothing was to be annotated: no warning, even without the right
    quiet = report(passing, markdown="", reports_dir="r", environ=environ, api=connect(environ),
                   annotations=False)  # fmt: skip
    assert (quiet, len(recorder.requests)) == ("", 1)  # annotations: false: no check run


def test_a_token_that_may_not_write_checks_falls_back_to_workflow_commands(
    httpserver: HTTPServer, tmp_path: Path, outcomes_run: Ran
) -> None:
    recorder = Recorder()
    httpserver.expect_request(f"/repos/{REPO}/check-runs", method="POST").respond_with_handler(
        recorder.answer(403, {"message": "Resource not accessible by integration"})
    )
    environ = github_env(httpserver, tmp_path)
    printed = report(
        many_failures(outcomes_run, 12), markdown="", reports_dir="r", environ=environ,
        api=connect(environ),
    )  # fmt: skip
    lines = printed.splitlines()
    assert lines[0].startswith("::warning title=testgate::could not create a check run (HTTP 403)")
    assert "permissions: checks: write" in lines[0]
    assert sum(line.startswith("::error ") for line in lines) == 10  # GitHub's limit per type
    assert TOKEN not in printed


def test_a_fork_pull_request_skips_token_features_with_one_notice(
    httpserver: HTTPServer, tmp_path: Path, outcomes_run: Ran
) -> None:
    environ = github_env(
        httpserver, tmp_path,
        GITHUB_EVENT_PATH=pull_request_event(tmp_path, head_repo="someone/shop"),
    )  # fmt: skip
    printed = report(
        many_failures(outcomes_run, 3),
        markdown="",
        reports_dir="r",
        environ=environ,
        api=connect(environ),
    )
    lines = printed.splitlines()
    assert lines[0].startswith("::notice title=testgate::a pull request from a fork gets no token")
    assert "the gates still run" in lines[0]
    assert sum(line.startswith("::error ") for line in lines) == 3
    assert httpserver.log == []  # not one request
    second = {**environ, "GITHUB_RUN_ATTEMPT": "2", "TESTGATE_ARTIFACT": "a"}
    assert previous_attempt(second, api=connect(second)) == (
        None,
        ["no token to read the previous attempt's results; re-run flakes unchecked"],
    )


def results_zip(
    tests: list[dict[str, Any]],
    commit: str,
    padding: int = 0,
    environment: str | None = None,
    reruns_stopped: str | None = None,
) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        run = {"commit": commit, "environment": environment, "reruns_stopped": reruns_stopped}
        document = json.dumps({"run": run, "tests": tests}) + " " * padding
        archive.writestr("results.json", document)
    return data.getvalue()


def serve_artifact(httpserver: HTTPServer, name: str, archive: bytes) -> None:
    httpserver.expect_request(
        f"/repos/{REPO}/actions/runs/555/artifacts", query_string={"name": name}
    ).respond_with_json({"total_count": 1, "artifacts": [{"id": 9, "name": name}]})
    storage = httpserver.url_for("/storage/blob.zip")
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/9/zip").respond_with_response(
        Response(status=302, headers={"Location": storage})
    )
    httpserver.expect_request("/storage/blob.zip").respond_with_data(
        archive, content_type="application/zip"
    )


def test_a_test_that_failed_in_the_previous_attempt_and_passes_now_is_flaky(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The whole path: a re-run attempt of the job, through the CLI, on a real project."""
    earlier = [{"id": "tests/test_calc.py::test_add", "outcome": "failed"},
               {"id": "tests/test_calc.py::test_sign_negative", "outcome": "passed"}]  # fmt: skip
    project = copy_fixture("passing", tmp_path)
    # attempt 1 ran in this environment (its fingerprint): its failure is evidence. The
    # fingerprint is the one a run records: its environment synced and probed as testgate
    # run does it, without running the tests (the run below checks that the two agree).
    settings = load_settings(project=project, flags={"workers": "0"}, environ={})
    with shared_environment(project, (), environment()) as added:
        sources = infer_sources(project)
        fingerprint = probe(settings, environment(**added), sources=sources).fingerprint
    archive = results_zip(earlier, "c0ffee", environment=fingerprint)
    serve_artifact(httpserver, "testgate-results-test-0-attempt-1", archive)
    ran = run_in_process(
        project, "--workers", "0",
        extra_env={**github_env(httpserver, tmp_path), "GITHUB_SHA": "c0ffee",
                   "GITHUB_RUN_ID": "555", "GITHUB_RUN_ATTEMPT": "2",
                   "TESTGATE_ARTIFACT": "testgate-results-test-0",
                   "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")},
    )  # fmt: skip
    assert ran.exit_code == 1
    test = ran.test("tests/test_calc.py::test_add")
    assert (test["outcome"], test["flaky_kind"]) == ("flaky", "nondeterministic")
    assert test["note"] == (
        "failed in attempt 1 of this workflow run, passed in attempt 2 on the same commit"
    )
    assert ran.test("tests/test_calc.py::test_sign_negative")["outcome"] == "passed"
    assert ran.gate("max-flaky")["passed"] is False
    assert ran.results()["totals"]["flaky"] == 1


@pytest.mark.parametrize(
    ("artifact", "archive", "notice"),
    [
        ("other", b"", "no artifact a-attempt-2: attempt 2 left no results to compare"),
        ("a-attempt-2", results_zip([], "another"), "attempt 2 ran another commit"),
        (
            "a-attempt-2",
            results_zip([{"id": "t.py::t", "outcome": "failed"}], "merge0sha", environment="e2"),
            "attempt 2 ran in another environment (another interpreter or other installed "
            "packages, or not recorded): its failures are not counted as evidence that a "
            "test passing now is flaky",
        ),
        ("a-attempt-2", results_zip([], "merge0sha"), "attempt 2 ran in another environment"),
        (
            "a-attempt-2",
            results_zip(
                [{"id": "t.py::t", "outcome": "failed"}],
                "merge0sha",
                environment="e1",
                reruns_stopped="not rerun: all 5 failures share one cause (call: db down)",
            ),
            "attempt 2 stopped its reruns (not rerun: all 5 failures share one cause (call: "
            "db down)): its failures looked broken, not flaky, and are not counted as evidence "
            "that a test passing now is flaky",
        ),
        ("a-attempt-2", b"not a zip", "could not read artifact a-attempt-2 of attempt 2"),
    ],
)
def test_what_cannot_be_compared_is_said_and_changes_nothing(
    httpserver: HTTPServer, tmp_path: Path, artifact: str, archive: bytes, notice: str
) -> None:
    if artifact == "other":
        httpserver.expect_request(f"/repos/{REPO}/actions/runs/555/artifacts").respond_with_json(
            {"total_count": 0, "artifacts": []}
        )
    else:
        serve_artifact(httpserver, artifact, archive)
    environ = {**github_env(httpserver, tmp_path), "GITHUB_RUN_ID": "555",
               "GITHUB_RUN_ATTEMPT": "3", "TESTGATE_ARTIFACT": "a"}  # fmt: skip
    previous, notices = previous_attempt(environ, api=connect(environ), environment="e1")
    assert previous is None
    assert len(notices) == 1
    assert notices[0].startswith(notice)


def test_an_artifact_that_unpacks_too_large_is_not_read(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_artifact(httpserver, "a-attempt-1", results_zip([], "c0ffee", padding=100_000))
    environ = {**github_env(httpserver, tmp_path), "GITHUB_RUN_ID": "555",
               "GITHUB_RUN_ATTEMPT": "2", "TESTGATE_ARTIFACT": "a",
               "GITHUB_EVENT_PATH": str(tmp_path / "missing.json")}  # fmt: skip
    _, notices = previous_attempt(environ, api=connect(environ), limit=1000)
    assert notices[0].startswith("could not read artifact a-attempt-1 of attempt 1:")
    assert "results.json unpacks to" in notices[0]
    assert "bytes, over 1000" in notices[0]


def test_a_first_attempt_reads_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    environ = {**github_env(httpserver, tmp_path), "GITHUB_RUN_ATTEMPT": "1",
               "TESTGATE_ARTIFACT": "a"}  # fmt: skip
    assert previous_attempt(environ, api=connect(environ)) == (None, [])
    assert httpserver.log == []
