"""``testgate sonar``: upload a run's reports to SonarQube with pysonar, then read its gate.

pysonar (the official Python scanner) gets the reports testgate wrote: ``coverage.xml``,
a JUnit file in which each test file appears once, ``sonar.python.version`` from the
Python that ran the tests (pysonar would pass ``requires-python`` through verbatim), the
commit, and on GitHub the pull request or branch. Everything else (sources, tests,
project key) is what pysonar reads from the project's own configuration, which wins.

The token reaches pysonar only through its environment (``SONAR_TOKEN``); pysonar's
output is shown with the token redacted, and pysonar never runs verbose (it would log
its properties, token included). With ``sonar-wait``, testgate polls the compute-engine
task named in the scanner's ``report-task.txt`` and then the quality gate, and records
the verdict as the ``sonar-quality-gate`` gate of ``results.json``.
requests is imported only for that poll, so other commands start faster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from runner import interrupts, owned_dir, render
from runner.child_env import child_environment
from runner.errors import ConfigError, InfraError
from runner.github.commands import on_github
from runner.github.step import report_sonar
from runner.output import emit
from runner.report import shown, write_reports
from runner.results import GateResult, RunResult, read_results
from runner.settings import Settings

TOKEN_ENV = "SONAR_TOKEN"
_PYSONAR = "import sys; from pysonar_scanner.__main__ import main; main()"
_PENDING = ("PENDING", "IN_PROGRESS")


@dataclass(frozen=True)
class Sonar:
    """Where SonarQube is and how to reach it."""

    host: str
    token: str
    timeout_s: float


def properties(settings: Settings, result: RunResult, environ: Mapping[str, str]) -> dict[str, str]:
    """The analysis properties testgate sets; pysonar adds the project's own configuration."""
    reports = settings.reports_dir
    junit = reports / "junit-sonar.xml"
    found: dict[str, str] = {
        "sonar.host.url": settings.sonar_host_url,
        "sonar.python.coverage.reportPaths": _relative(reports / "coverage.xml", settings.project),
        "sonar.python.xunit.reportPath": _relative(
            junit if junit.is_file() else reports / "junit.xml", settings.project
        ),
        "sonar.scanner.metadataFilePath": str(reports / ".sonar" / "report-task.txt"),
    }
    if result.run.python:
        found["sonar.python.version"] = ".".join(result.run.python.split(".")[:2])
    if result.run.commit:
        found["sonar.scm.revision"] = result.run.commit
    if settings.sonar_organization:
        found["sonar.organization"] = settings.sonar_organization
    if settings.sonar_project_key:
        found["sonar.projectKey"] = settings.sonar_project_key
    found.update(_pull_request_or_branch(environ))
    return found


def _relative(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


def _pull_request_or_branch(environ: Mapping[str, str]) -> dict[str, str]:
    """PR decoration on pull_request events (from the event file), else the branch."""
    event = environ.get("GITHUB_EVENT_NAME", "")
    if event.startswith("pull_request") and environ.get("GITHUB_EVENT_PATH"):
        try:
            pull = json.loads(Path(environ["GITHUB_EVENT_PATH"]).read_text("utf-8"))["pull_request"]
            return {
                "sonar.pullrequest.key": str(pull["number"]),
                "sonar.pullrequest.branch": str(pull["head"]["ref"]),
                "sonar.pullrequest.base": str(pull["base"]["ref"]),
            }
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InfraError(
                f"cannot read the pull request from GITHUB_EVENT_PATH ({error})."
            ) from None
    if environ.get("GITHUB_REF_NAME"):
        return {"sonar.branch.name": environ["GITHUB_REF_NAME"]}
    return {}


def sonar(settings: Settings, *, environ: Mapping[str, str], dry_run: bool) -> int:
    """Upload the reports dir's run to SonarQube; with sonar-wait, gate on its verdict."""
    token = environ.get(TOKEN_ENV, "")
    if not token and not dry_run:  # before the results: a run that wrote none said so
        _notice(
            environ,
            "SONAR_TOKEN is not set (a pull request from a fork gets no secrets, or this is a "
            "local run): the SonarQube upload is skipped; the gates stand as they are.",
        )
        return 0
    path = settings.reports_dir / "results.json"
    if not path.is_file():
        raise ConfigError(f"no results.json in {settings.reports_dir}: run 'testgate run' first.")
    result = read_results(path)
    if token and environ.get("GITHUB_ACTIONS") == "true":
        emit(f"::add-mask::{token}\n", commands=True)
    owned_dir.claim(settings.reports_dir)
    owned_dir.without_link(settings.reports_dir / ".sonar")  # the scanner writes in there
    args = [f"-D{key}={value}" for key, value in properties(settings, result, environ).items()]
    code = run_pysonar([*args, *(["--dry-run"] if dry_run else [])], settings, environ, token)
    if code != 0:
        raise InfraError(
            f"pysonar failed (exit {code}); its log is above. Check SONAR_TOKEN (a 401 or 403 "
            "means a wrong or expired token), sonar-host-url, sonar-organization and "
            "sonar-project-key. The reports are untouched."
        )
    if dry_run or not settings.sonar_wait:
        return 0
    client = Sonar(host=settings.sonar_host_url, token=token, timeout_s=settings.sonar_timeout)
    task = read_report_task(settings.reports_dir / ".sonar" / "report-task.txt")
    gate = quality_gate(client, task)
    judged = msgspec.structs.replace(result, gates=(*result.gates, gate))
    interrupts.hold()  # the reports are rewritten whole; a signal meanwhile makes it exit 3
    write_reports(judged, settings.reports_dir, markdown=render.markdown(judged))
    emit(render.terminal(judged, reports_dir=shown(settings.reports_dir)))
    if on_github(environ):
        emit(report_sonar(gate, passed=judged.passed, environ=environ), commands=True)
    return 0 if judged.passed else 1


def run_pysonar(args: list[str], settings: Settings, environ: Mapping[str, str], token: str) -> int:
    """Run pysonar from testgate's own environment; show its output with the token redacted."""
    env = scanner_environment(environ, token=token)
    completed = subprocess.run(
        # -I: the project directory (the cwd) never shadows pysonar or its imports.
        [sys.executable, "-I", "-c", _PYSONAR, *args],
        cwd=settings.project,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    for stream, text in ((sys.stdout, completed.stdout), (sys.stderr, completed.stderr)):
        emit(text.replace(token, "***") if token else text, stream=stream)
    return completed.returncode


def scanner_environment(environ: Mapping[str, str], *, token: str) -> dict[str, str]:
    """pysonar's environment: the project's processes' one, with ``SONAR_TOKEN`` alone added.

    The scanner runs a JRE and an engine it downloads, at a path the project's own sonar
    configuration may name (``sonar.scanner.javaExePath``): like the tests, it gets no
    other secret and none of the runner's file commands.
    """
    inputs = {name: value for name, value in environ.items() if not name.startswith("INPUT_")}
    return child_environment(inputs, **({TOKEN_ENV: token} if token else {}))


def read_report_task(path: Path) -> dict[str, str]:
    """The scanner's report-task.txt: ``key=value`` lines, among them ``ceTaskUrl``."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as error:
        raise InfraError(
            f"the scanner wrote no {path} ({error}), so the quality gate cannot be read."
        ) from None
    task = dict(line.split("=", 1) for line in lines if "=" in line)
    if "ceTaskUrl" not in task:
        raise InfraError(f"{path} names no ceTaskUrl, so the quality gate cannot be read.")
    return task


def _get(client: Sonar, url: str, **params: str) -> dict[str, Any]:
    import requests  # noqa: PLC0415 (lazy, see top)

    try:
        response = requests.get(
            url, params=params, headers={"Authorization": f"Bearer {client.token}"}, timeout=30
        )
    except requests.RequestException as error:
        raise InfraError(f"SonarQube did not answer at {url}: {error}") from None
    if response.status_code in (401, 403):
        raise InfraError(
            f"SonarQube refused the token (HTTP {response.status_code}) at {url}: check "
            "SONAR_TOKEN and that it may read the project."
        )
    if response.status_code != 200:
        raise InfraError(f"SonarQube answered HTTP {response.status_code} at {url}.")
    data: dict[str, Any] = response.json()
    return data


def quality_gate(client: Sonar, task: Mapping[str, str]) -> GateResult:
    """Poll the compute-engine task until it ends, then read the project's quality gate."""
    deadline = time.monotonic() + client.timeout_s
    delay = 0.5
    while True:
        status = _get(client, task["ceTaskUrl"])["task"]
        if status["status"] not in _PENDING:
            break
        if time.monotonic() + delay > deadline:
            raise InfraError(
                f"SonarQube had not finished the analysis after {client.timeout_s:g} s "
                f"(task {status.get('id', '?')} still {status['status']}): raise sonar-timeout, "
                "or look at the task in SonarQube."
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    if status["status"] != "SUCCESS":
        where = task.get("dashboardUrl", "SonarQube")
        raise InfraError(
            f"the analysis failed on the server (task {status['status']}: "
            f"{status.get('errorMessage', 'no message')}); see {where}."
        )
    server = task.get("serverUrl", client.host).rstrip("/")
    project = _get(
        client, f"{server}/api/qualitygates/project_status", analysisId=status["analysisId"]
    )["projectStatus"]
    failed = [
        f"{c['metricKey']} {c.get('comparator', '')} {c.get('errorThreshold', '?')} "
        f"(actual {c.get('actualValue', '?')})"
        for c in project.get("conditions", [])
        if c.get("status") == "ERROR"
    ]
    passed = project["status"] == "OK"
    message = "OK" if passed else f"{project['status']}: " + ("; ".join(failed) or "see SonarQube")
    return GateResult.judged(
        name="sonar-quality-gate", threshold=None, actual=None, passed=passed, message=message
    )


def _notice(environ: Mapping[str, str], message: str) -> None:
    prefix = "::notice::" if environ.get("GITHUB_ACTIONS") == "true" else "testgate: "
    emit(prefix + message + "\n", commands=prefix.startswith("::"))
