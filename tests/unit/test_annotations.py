"""GitHub annotations and the job summary as text: escaping, limits, sizes (pure functions).

What a real run writes on a runner is in tests/integration/test_github.py.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from runner.github.commands import (
    PER_STEP,
    SUMMARY_LIMIT,
    Annotation,
    escape_data,
    escape_property,
    shown_and_left,
    summary,
    workspace_path,
)


def test_escaping_is_that_of_actions_core() -> None:
    hostile = "50% done\r\nfile: a, b\n::error::injected"
    assert escape_data(hostile) == "50%25 done%0D%0Afile: a, b%0A::error::injected"
    assert escape_property(hostile) == "50%25 done%0D%0Afile%3A a%2C b%0A%3A%3Aerror%3A%3Ainjected"


def test_uncovered_changed_lines_are_warnings_on_their_range() -> None:
    annotation = Annotation("warning", "lib/x.py", 3, "changed lines not covered", "m", 5)
    assert annotation.command() == (
        "::warning title=changed lines not covered,file=lib/x.py,line=3,endLine=5::m"
    )


def make(level: str, n: int) -> Annotation:
    return Annotation(level, f"t{n}.py", n, f"{level} {n}", "message")


def test_githubs_limits_keep_the_most_important_and_list_the_rest() -> None:
    found = [make("error", n) for n in range(12)] + [make("warning", n) for n in range(12)]
    shown, left = shown_and_left(found)
    assert [a.level for a in shown] == ["error"] * 10 + ["warning"] * 10
    assert [a.title for a in left] == ["error 10", "error 11", "warning 10", "warning 11"]
    many = [make(level, n) for n in range(30) for level in ("error", "warning", "notice")]
    assert len(shown_and_left(many)[0]) <= PER_STEP
    text = summary("## testgate\n", left)
    assert "### Not shown as annotations (GitHub's limit)" in text
    assert "- error `t10.py:10` error 10" in text


def test_the_summary_never_passes_githubs_1_mib() -> None:
    huge = "x" * (SUMMARY_LIMIT + 100)
    text = summary(huge, [])
    assert len(text.encode("utf-8")) <= SUMMARY_LIMIT
    assert text.endswith("results.json has everything)_\n")
    assert summary("small", []) == "small"


@pytest.mark.parametrize("level", ["error", "warning"])
def test_an_annotation_without_a_line_names_only_the_file(level: str) -> None:
    assert Annotation(level, "t.py", None, "x", "m").command() == f"::{level} title=x,file=t.py::m"


def test_an_annotation_without_properties_is_a_bare_command() -> None:
    assert Annotation("error", "", None, "", "50%").command() == "::error::50%25"


def test_each_job_and_matrix_entry_gets_a_check_run_of_its_own() -> None:
    # GitHub shows, and required checks match, check runs by name: a matrix whose jobs all
    # named theirs "testgate" showed whichever finished last (a green py3.12 over a red 3.11).
    from runner.github.client import check_name  # noqa: PLC0415 (the client's one pure part)
    from runner.results import RunInfo  # noqa: PLC0415

    run = RunInfo(started="t", duration_s=1, suite_duration_s=1, variant="py3.12-linux")
    assert check_name(run, {"GITHUB_JOB": "test"}) == "testgate / test (py3.12-linux)"
    shard = msgspec.structs.replace(run, shard="1/2")
    assert check_name(shard, {"GITHUB_JOB": "test"}) == "testgate / test (py3.12-linux, shard 1/2)"
    merged = msgspec.structs.replace(run, variant="py3.11-linux, py3.12-linux", merged=("a", "b"))
    assert check_name(merged, {"GITHUB_JOB": "merge"}) == "testgate / merge"
    assert check_name(msgspec.structs.replace(run, variant=None), {}) == "testgate"


def test_a_path_for_a_later_step_is_the_workspaces_when_it_lies_inside(tmp_path: Path) -> None:
    inside = str(tmp_path / "svc" / "api" / "testgate-reports")
    assert workspace_path(inside, {"GITHUB_WORKSPACE": str(tmp_path)}) == "svc/api/testgate-reports"
    outside = str(tmp_path.parent / "elsewhere")
    assert workspace_path(outside, {"GITHUB_WORKSPACE": str(tmp_path)}) == outside
    assert workspace_path("r", {}) == "r"
