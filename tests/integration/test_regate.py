"""``testgate gate`` judges a run again as the run judged it, with the thresholds set now.

Each project is run once; every test judges a copy of its reports (``judged``), so the
run's own reports stay as they were.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import msgspec
import pytest

from runner.results import GateResult, encode, read_results
from tests.conftest import Ran, once_per_session, run_in_process

PYPROJECT = """\
[project]
name = "regated"
version = "0"
requires-python = ">=3.11"
dependencies = []

[dependency-groups]
dev = ["pytest", "pytest-cov"]

[tool.uv]
package = false

[tool.pytest.ini_options]
pythonpath = ["."]

[tool.coverage.run]
source = {source}
branch = true

[tool.coverage.report]
fail_under = {fail_under}

[tool.testgate]
workers = 0
"""
FILES = {
    "lib/__init__.py": """\
        def sign(x):
            if x > 0:
                return 1
            return -1


        def one():
            return 1
        """,
    "tests/test_lib.py": """\
        from lib import one, sign


        def test_sign():
            assert sign(2) == 1


        def test_one():
            assert one() == 1
        """,
}
ZERO = ("--fail-under-line", "0", "--fail-under-branch", "0")  # no coverage threshold


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def project(root: Path, *, source: str, fail_under: int) -> Path:
    """A git repository on main: 2 tests, coverage.py's total 75 % (a branch not taken)."""
    repo = root / "regated"
    for name, text in {
        "pyproject.toml": PYPROJECT.format(source=source, fail_under=fail_under),
        ".gitignore": ".venv/\ntestgate-reports/\nuv.lock\n",
        **FILES,
    }.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(textwrap.dedent(text), "utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    return repo


@pytest.fixture(scope="module")
def stated(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A run at the project's own threshold (coverage.py's fail_under = 70): it passes."""
    return once_per_session(
        tmp_path_factory,
        "regate-stated",
        lambda root: run_in_process(project(root, source='["lib"]', fail_under=70)),
    )


@pytest.fixture(scope="module")
def unmeasured(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A run without coverage thresholds whose coverage source names a package that is not
    there: a warning then (with a threshold, the run's coverage is not judged, exit 2)."""
    return once_per_session(
        tmp_path_factory,
        "regate-unmeasured",
        lambda root: run_in_process(
            project(root, source='["lib", "nothere"]', fail_under=0),
            "--fail-under-line",
            "0",
            "--fail-under-branch",
            "0",
        ),
    )


def copied(ran: Ran, tmp_path: Path) -> Path:
    """The run's project (a git repository) in this test's own directory, where the command's
    output is logged (run_in_process) apart from other tests'."""
    copy = tmp_path / "project" / ran.project.name
    if not copy.exists():
        ignored = shutil.ignore_patterns(".venv", "testgate-reports")
        shutil.copytree(ran.project, copy, ignore=ignored)
    return copy


def judged(ran: Ran, tmp_path: Path, *args: str) -> Ran:
    """``testgate gate`` on a copy of the run's reports, in a copy of its project."""
    copy = tmp_path / "reports"
    if not copy.exists():
        shutil.copytree(ran.reports, copy)
    return run_in_process(copied(ran, tmp_path), *args, command="gate", reports=str(copy))


def test_gate_judges_at_the_projects_own_threshold_as_the_run_did(
    stated: Ran, tmp_path: Path
) -> None:
    assert stated.exit_code == 0, stated.output
    again = judged(stated, tmp_path)
    assert again.exit_code == 0, again.output
    assert again.results()["gates"] == stated.results()["gates"]
    assert again.gate("line-coverage")["threshold"] == 70
    assert "coverage threshold 70 % from fail_under" in again.output


def test_gate_keeps_the_sonarqube_verdict(stated: Ran, tmp_path: Path) -> None:
    """No threshold decides SonarQube's quality gate: judging again keeps it as it was."""
    copy = tmp_path / "reports"
    shutil.copytree(stated.reports, copy)
    result = read_results(copy / "results.json")
    sonar = GateResult.judged(
        name="sonar-quality-gate", threshold=None, actual=None, passed=False,
        message="SonarQube quality gate ERROR",
    )  # fmt: skip
    (copy / "results.json").write_bytes(
        b"".join(encode(msgspec.structs.replace(result, gates=(*result.gates, sonar))))
    )
    again = judged(stated, tmp_path, *ZERO)
    assert again.exit_code == 1, again.output
    assert again.gate("sonar-quality-gate")["verdict"] == "fail"


def test_gate_refuses_to_measure_the_change_of_another_commit(stated: Ran, tmp_path: Path) -> None:
    """Untested code committed after the run is in no line of its coverage data: measured
    on it, the change would read as covered. The reports stay as they were."""
    repo = copied(stated, tmp_path)
    ran = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "lib/later.py").write_text("def later(x):\n    return x\n", "utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "untested")
    now = git(repo, "rev-parse", "HEAD")
    before = (stated.reports / "results.json").read_bytes()
    again = judged(stated, tmp_path, "--diff-base", "main", *ZERO)
    assert again.exit_code == 2, again.output
    assert f"holds the run of commit {ran}, but the commit under test here is {now}" in (
        again.output
    )
    assert (tmp_path / "reports" / "results.json").read_bytes() == before


def test_gate_judges_an_unmeasured_coverage_source_as_the_run_would(
    unmeasured: Ran, tmp_path: Path
) -> None:
    assert unmeasured.exit_code == 0, unmeasured.output
    (warning,) = [w for w in unmeasured.results()["run"]["warnings"] if "nothere" in w]
    stricter = judged(unmeasured, tmp_path, "--fail-under-line", "50", "--fail-under-branch", "0")
    assert stricter.exit_code == 2, stricter.output  # as `testgate run --fail-under-line 50`
    assert stricter.results()["run"]["coverage_misconfigured"] == warning
    assert stricter.gate("line-coverage")["verdict"] == "not judged"
    assert warning not in stricter.results()["run"]["warnings"]
    again = judged(unmeasured, tmp_path, *ZERO)
    assert again.exit_code == 0, again.output
    assert again.results()["run"] == {
        **unmeasured.results()["run"],
        "phases": again.results()["run"]["phases"],
    }


def test_a_merge_judges_at_the_projects_own_threshold_and_gate_again_alike(
    stated: Ran, tmp_path: Path
) -> None:
    here = copied(stated, tmp_path)
    merged = run_in_process(
        here, str(stated.reports), command="merge", reports=str(tmp_path / "merged")
    )
    assert merged.exit_code == 0, merged.output
    assert merged.results()["gates"] == stated.results()["gates"]
    again = run_in_process(here, command="gate", reports=str(merged.reports))
    assert again.exit_code == 0, again.output
    assert again.results()["gates"] == merged.results()["gates"]


def test_gate_reads_no_results_json_through_a_link(stated: Ran, tmp_path: Path) -> None:
    """A results.json that is a symbolic link (committed by a pull request, say) is not
    read: its target's text would be judged, and shown in the errors. Refused, exit 3, and
    the link and its target stay as they were."""
    copy = tmp_path / "reports"
    shutil.copytree(stated.reports, copy)
    secret = tmp_path / "secret.json"
    secret.write_text('{"schema_version": "TOPSECRET-abc123"}', "utf-8")
    (copy / "results.json").unlink()
    (copy / "results.json").symlink_to(secret)
    again = judged(stated, tmp_path)
    assert again.exit_code == 3
    assert "results.json is not a readable testgate results.json (a symbolic link" in again.output
    assert "TOPSECRET" not in again.output
    assert (copy / "results.json").is_symlink()
    assert secret.read_text("utf-8") == '{"schema_version": "TOPSECRET-abc123"}'
