"""The history proven for real: built by running testgate on a sequence of commits.

A fixture repository (tests/fixtures/history) runs twice on commit 1 of ``main`` (its
flaky test fails, then passes; a lazily covered line is covered in one run only), then
once on a pull-request branch whose commit 2 breaks one test and fixes another, with a
quarantine entry that has expired. One module-scoped fixture makes the three runs. The
summary's charts are parsed by Mermaid itself (npm, tests/npm). The GitHub side, the
``testgate-history`` artifact of the base branch, is read from a local HTTP server that
answers GitHub's documented endpoints.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from runner import history_run
from runner.errors import ConfigError
from runner.history import FILE_NAME, History, entries, read_history
from runner.results import read_results
from runner.settings import load_settings
from tests.conftest import Ran, copy_fixture, run_in_process

REPO = "acme/shop"
FLAKY = "tests/test_h.py::test_flaky"
BROKEN = "tests/test_h.py::test_broken_later"
FIXED = "tests/test_h.py::test_fixed_later"
STABLE = "tests/test_h.py::test_stable"


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=project, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    project = copy_fixture("history", tmp_path_factory.mktemp("history"))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "app.py", "pyproject.toml", "tests")
    git(project, "commit", "-q", "-m", "one")
    shared = ("--history", "history.json.gz")
    done = {name: run_in_process(project, *shared, reports=name) for name in ("first", "second")}
    git(project, "checkout", "-q", "-b", "feature")
    app = project / "app.py"
    app.write_text(
        app.read_text("utf-8").replace("VALUE = 1", "VALUE = 2").replace("= False", "= True"),
        "utf-8",
    )
    (project / "quarantine.txt").write_text(
        f"{STABLE}  # owner: @ops, issue: https://example.org/issues/7, expires: 2020-01-31\n",
        "utf-8",
    )
    git(project, "add", "app.py", "quarantine.txt")
    git(project, "commit", "-q", "-m", "two")
    done["pull"] = run_in_process(
        project, *shared, "--quarantine", "quarantine.txt", reports="pull"
    )
    return done


def test_the_history_holds_every_run(runs: dict[str, Ran]) -> None:
    history = read_history(runs["pull"].project / "history.json.gz")
    assert [run.branch for run in history.runs] == ["main", "main", "feature"]
    assert all(run.clean for run in history.runs)
    assert len({run.commit for run in history.runs}) == 2
    assert [e.outcome for e in entries(history, FLAKY)] == ["failed", "passed", "failed"]
    assert [e.outcome for e in entries(history, BROKEN)] == ["passed", "passed", "failed"]
    assert [e.outcome for e in entries(history, FIXED)] == ["failed", "failed", "passed"]


def test_a_pass_after_a_failure_on_the_same_commit_is_flaky(runs: dict[str, Ran]) -> None:
    second = runs["second"]
    test = second.test(FLAKY)
    assert test["outcome"] == "flaky"
    assert test["note"].startswith("failed in an earlier run of the same commit ")
    assert second.gate("max-flaky")["passed"] is False
    warnings = second.results()["run"]["warnings"]
    assert any(
        "flaky coverage on commit" in w and "app.py: line 10 not covered now" in w for w in warnings
    ), warnings


def test_a_pull_request_labels_a_known_flaky_failure_and_a_newly_broken_test(
    runs: dict[str, Ran],
) -> None:
    pull = runs["pull"]
    flaky = pull.test(FLAKY)
    assert flaky["outcome"] == "flaky"
    assert flaky["note"] == ("flaky on main: failed 1 of 2 recent runs (95 % interval 9% to 91%)")
    broken = pull.test(BROKEN)
    assert (broken["outcome"], broken.get("note")) == ("failed", None)
    assert pull.test(FIXED)["outcome"] == "passed"
    summary = (pull.reports / "summary.md").read_text("utf-8")
    assert "flaky on main: failed 1 of 2 recent runs" in summary
    assert "### Trends over the last 2 runs on main" in summary
    assert f"- add `{FLAKY}`: flipped 1 of 2 recent runs" in summary
    suggested = (pull.reports / history_run.SUGGESTED).read_text("utf-8")
    assert f"{STABLE}  # owner: @ops" in suggested
    assert f"{FLAKY}  # flipped 1 of 2 recent runs" in suggested


def test_an_expired_quarantine_entry_fails_the_gate(runs: dict[str, Ran]) -> None:
    pull = runs["pull"]
    gate = pull.gate("quarantine-expiry")
    assert (gate["passed"], gate["actual"]) == (False, 1)
    assert (
        f"{STABLE} (expired 2020-01-31, owner @ops, https://example.org/issues/7)"
        in (gate["message"])
    )
    assert pull.exit_code == 1


def test_the_summary_charts_parse_with_mermaid(runs: dict[str, Ran], npm_tools: Path) -> None:
    summary = (runs["pull"].reports / "summary.md").read_text("utf-8")
    blocks = re.findall(r"```mermaid\n(.*?)```", summary, flags=re.S)
    assert len(blocks) == 3
    checked = subprocess.run(
        ["node", str(npm_tools / "mermaid_parse.mjs")],
        input=json.dumps([*blocks, "xychart-beta\n  x-axis [a, b\n  line [1]\n"]),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    verdicts = json.loads(checked.stdout)
    assert verdicts[:3] == ["xychart"] * 3, verdicts
    assert verdicts[3].startswith("error: Parse error on line 2")  # the parser does reject


def history_zip(history: dict[str, Any], name: str = FILE_NAME) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr(name, gzip.compress(json.dumps(history).encode()))
    return data.getvalue()


def artifacts(*items: tuple[int, str, bool]) -> dict[str, Any]:
    listed = [
        {"id": number, "name": "testgate-history", "expired": expired,
         "created_at": f"2026-11-0{number}T00:00:00Z",
         "workflow_run": {"head_branch": branch, "head_sha": f"s{number}"}}
        for number, branch, expired in items
    ]  # fmt: skip
    return {"total_count": len(listed), "artifacts": listed}


def on_github(httpserver: HTTPServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    same = {"repo": {"full_name": REPO}}
    event.write_text(json.dumps({"pull_request": {"head": same, "base": same}}), "utf-8")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_BASE_REF": "main",
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_EVENT_PATH": str(event),
        "TESTGATE_GITHUB_TOKEN": "ghs_token",
        **extra,
    }


def test_a_pull_request_reads_the_newest_history_artifact_of_its_base(
    httpserver: HTTPServer, tmp_path: Path, runs: dict[str, Ran]
) -> None:
    """GET /repos/{repo}/actions/artifacts?name=…, then …/artifacts/{id}/zip (a redirect)."""
    data = json.loads(gzip.decompress((runs["pull"].project / "history.json.gz").read_bytes()))
    query = {"name": "testgate-history", "per_page": "30"}
    listing = artifacts((1, "main", False), (3, "main", True), (2, "main", False),
                        (4, "feature", False))  # fmt: skip
    httpserver.expect_request(
        f"/repos/{REPO}/actions/artifacts", query_string=query
    ).respond_with_json(listing)
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/2/zip").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/blob/2.zip")}
    )
    httpserver.expect_request("/blob/2.zip").respond_with_data(history_zip(data))
    (tmp_path / "pyproject.toml").write_text("", "utf-8")
    settings = load_settings(project=tmp_path, flags={}, environ={})
    context = history_run.prepare(settings, commit="pr", environ=on_github(httpserver, tmp_path))
    assert (context.base, context.branch, context.extends, context.notices) == (
        "main", "feature", False, ()
    )  # fmt: skip
    assert len(context.history.runs) == 3
    result = read_results(runs["pull"].reports / "results.json")
    assert history_run.record(context, result=result, settings=settings) is context
    assert not (tmp_path / "testgate-reports" / FILE_NAME).exists()  # a PR run reads only


@pytest.mark.parametrize(
    ("listing", "archive", "notice"),
    [
        (artifacts((1, "feature", False)), b"", "no testgate-history artifact from main yet"),
        (artifacts((1, "main", False)), b"not a zip", "could not read the testgate-history"),
        (artifacts((1, "main", False)), history_zip({}, "other"), "could not read the"),
        (artifacts((1, "main", False)), history_zip({"a": "b" * 300}), "unpacks to more than"),
        (artifacts((1, "main", False)), history_zip({"a": list(range(200))}), "bytes, over 200"),
    ],
    ids=["none", "zip", "member", "size", "member size"],
)
def test_a_missing_or_bad_artifact_is_a_notice_and_an_empty_history(
    httpserver: HTTPServer,
    tmp_path: Path,
    listing: dict[str, Any],
    archive: bytes,
    notice: str,
) -> None:
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts").respond_with_json(listing)
    httpserver.expect_request(f"/repos/{REPO}/actions/artifacts/1/zip").respond_with_data(archive)
    (tmp_path / "pyproject.toml").write_text("", "utf-8")
    settings = load_settings(project=tmp_path, flags={}, environ={})
    environ = on_github(httpserver, tmp_path)
    context = history_run.prepare(settings, commit=None, environ=environ, limit=200)
    assert context.history == History()
    assert notice in context.notices[0], context.notices
    no_token = on_github(httpserver, tmp_path, TESTGATE_GITHUB_TOKEN="")
    quiet = history_run.prepare(settings, commit=None, environ=no_token)
    (told,) = quiet.notices
    assert told.startswith("no token: the testgate-history artifact was not read (base ")


def test_a_history_that_cannot_be_written_is_a_clear_error(
    runs: dict[str, Ran], tmp_path: Path
) -> None:
    settings = load_settings(project=runs["pull"].project, flags={}, environ={})
    result = read_results(runs["pull"].reports / "results.json")
    context = history_run.Context(
        path=tmp_path, history=History(), commit=None, branch=None, base=None, clean=False,
        extends=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="cannot write the test history"):
        history_run.record(context, result=result, settings=settings)


def test_the_flaky_job_counts_the_historys_runs_of_unchanged_code(runs: dict[str, Ran]) -> None:
    """HEAD (commit two) ran once, and passed both: 2 runs needed, so 1 more in this job."""
    ran = run_in_process(
        runs["pull"].project, "--history", "history.json.gz", "--max-fail-rate", "0.7",
        "--confidence", "0.9", "--only", STABLE, FIXED, command="flaky", reports="detect",
    )  # fmt: skip
    data = json.loads((ran.reports / "flaky.json").read_text("utf-8"))
    assert ran.exit_code == 0, ran.output
    assert data["runs_needed"] == 2
    assert data["rounds"] == 1
    assert [(t["id"], t["verdict"], t["runs"], t["from_history"]) for t in data["tests"]] == [
        (FIXED, "stable", 2, 1), (STABLE, "stable", 2, 1)
    ]  # fmt: skip
    assert data["tests"][0]["statement"].endswith("(1 of the runs recorded in the test history)")


ENV_TESTS = """
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_stable():
    pass


@pytest.mark.parametrize("n", range(2))
def test_needs_randomly(n):
    import pytest_randomly  # noqa: F401 (removed from the environment between runs)


@pytest.mark.parametrize("n", range(5))
def test_needs_the_service(n):
    assert (ROOT / "service.txt").read_text() == "up"
"""


def test_failures_after_the_environment_changed_are_not_flaky(tmp_path: Path) -> None:
    """One commit run four times: green; with a service down (five failures of one
    cause, in the same environment: reruns stopped); then with the service up and a
    dependency uninstalled (two failures, in another environment); then with it back.
    No failure is counted as flaky, each says why, and no pass is called flaky by the
    failures of another environment or of a run that stopped its reruns."""
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_env.py").write_text(ENV_TESTS, "utf-8")
    (project / "pyproject.toml").write_text('[project]\nname = "envs"\nversion = "1"\n', "utf-8")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "one")
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
    install = ["uv", "pip", "install", "-q", "--offline", "--python", python]
    subprocess.run([*install, "pytest", "pytest-cov", "pytest-randomly"], check=True)
    service = project / "service.txt"
    service.write_text("up", "utf-8")  # not in git: the work tree stays clean
    args = ("--python", python, "--history", "history.json.gz", "--max-flaky", "100",
            "--fail-under-line", "0", "--fail-under-branch", "0", "--workers", "0",
            "--reruns", "1")  # fmt: skip
    green = run_in_process(project, *args, reports="green")
    assert green.exit_code == 0, green.output
    service.unlink()
    down = run_in_process(project, *args, reports="down")
    assert "all 5 failures share one cause" in down.results()["run"]["reruns_stopped"]
    assert down.results()["run"]["environment"] == green.results()["run"]["environment"]
    stuck = down.test("tests/test_env.py::test_needs_the_service[3]")
    assert (stuck["outcome"], stuck["note"]) == (
        "failed",
        f"passed in an earlier run of the same commit {git(project, 'rev-parse', 'HEAD')[:12]}; "
        "not counted as flaky: this run stopped its reruns, its failures look broken",
    )
    assert (down.exit_code, down.gate("failed-tests")["actual"]) == (1, 5)
    assert down.results()["totals"]["flaky"] == 0
    service.write_text("up", "utf-8")
    subprocess.run(["uv", "pip", "uninstall", "-q", "--python", python, "pytest-randomly"],
                   check=True)  # fmt: skip
    changed = run_in_process(project, *args, reports="changed")
    assert changed.results()["run"]["environment"] != green.results()["run"]["environment"]
    broken = changed.test("tests/test_env.py::test_needs_randomly[0]")
    assert broken["outcome"] == "failed"
    assert broken["note"].endswith(
        "in another environment (another interpreter or other installed packages, or not "
        "recorded): not counted as flaky"
    )
    assert changed.test("tests/test_env.py::test_needs_the_service[3]")["outcome"] == "passed"
    assert changed.results()["totals"] == {**changed.results()["totals"], "failed": 2, "flaky": 0}
    assert (changed.exit_code, changed.gate("failed-tests")["passed"]) == (1, False)
    summary = (changed.reports / "summary.md").read_text("utf-8")
    assert "### Failures the history explains" in summary
    assert "in another environment" in summary
    subprocess.run([*install, "pytest-randomly"], check=True)
    again = run_in_process(project, *args, reports="again")  # as green: every test passes
    assert again.results()["run"]["environment"] == green.results()["run"]["environment"]
    assert again.results()["totals"]["flaky"] == 0  # the stopped run is evidence for none
    assert again.exit_code == 0
    history = read_history(project / "history.json.gz")
    fingerprints = [run.environment for run in history.runs]
    assert fingerprints[0] == fingerprints[1] == fingerprints[3] != fingerprints[2]
    assert [run.reruns_stopped for run in history.runs] == [False, True, False, False]
