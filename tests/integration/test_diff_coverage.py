"""The fail-under-diff gate on real throwaway git repositories.

The fixture project is committed on ``main``; a ``feature`` branch then adds a file,
modifies one (a new function with a partly covered branch, comments, a docstring, a
``# pragma: no cover`` line, a deleted function), renames one with a one-line change,
and edits a file the coverage configuration omits. Every line that must count carries a
``# diff: covered`` or ``# diff: missing`` marker; nothing else may count.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.diff_coverage import ranges
from runner.errors import InfraError
from runner.git import Git, default_base, diff, merge_base
from runner.github.commands import annotations_of
from runner.results import read_results
from tests.conftest import Ran, environment, once_per_session, run_in_process

PYPROJECT = """\
[project]
name = "diffy"
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
source = ["lib"]
omit = ["lib/generated.py"]

[tool.testgate]
workers = 0
fail-under-line = 0
fail-under-branch = 0
"""

MAIN = {
    "pyproject.toml": PYPROJECT,
    "lib/__init__.py": "",
    "lib/calc.py": """\
        def add(a, b):
            return a + b


        def sub(a, b):
            return a - b
        """,
    "lib/old_name.py": """\
        def greet(name):
            greeting = "hello"
            return f"{greeting} {name}"


        def shout(name):
            return greet(name).upper()
        """,
    "lib/generated.py": "VALUE = 1\n",
    "tests/test_lib.py": """\
        from lib.calc import add


        def test_add():
            assert add(1, 2) == 3
        """,
}

FEATURE = {
    "lib/calc.py": '''\
        def add(a, b):
            return a + b


        def clamp(value):  # diff: covered
            """Keep a value at most 10.

            The docstring and the comment below never count.
            """
            # a comment
            if value > 10:  # diff: covered
                return 10  # diff: missing

            return value  # diff: covered


        def debug_only():  # diff: covered
            print("never run")  # pragma: no cover
        ''',
    "lib/fresh.py": """\
        def used():  # diff: covered
            return 1  # diff: covered


        def unused():  # diff: covered
            return 2  # diff: missing
        """,
    "lib/generated.py": "VALUE = 2\nOTHER = 3\n",
    "lib/__init__.py": "# a comment: a changed file with no changed statement\n",
    "tests/test_lib.py": """\
        from lib.calc import add, clamp
        from lib.fresh import used
        from lib.new_name import greet


        def test_add():
            assert add(1, 2) == 3


        def test_clamp_small():
            assert clamp(3) == 3


        def test_fresh():
            assert used() == 1


        def test_greet():
            assert greet("ann") == "hi ann"
        """,
}
RENAMED_LINE = '    greeting = "hi"  # diff: covered\n'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), "utf-8")


def make_repo(root: Path) -> Path:
    """The fixture repository: main, then a feature branch with the change checked out."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    (repo / ".gitignore").write_text(".venv/\ntestgate-reports/\nuv.lock\n", "utf-8")
    write(repo, MAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "mv", "lib/old_name.py", "lib/new_name.py")
    write(repo, FEATURE)
    renamed = repo / "lib/new_name.py"
    lines = renamed.read_text("utf-8").splitlines(keepends=True)
    renamed.write_text("".join([lines[0], RENAMED_LINE, *lines[2:]]), "utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    return repo


def marked(repo: Path) -> dict[str, dict[str, set[int]]]:
    """The lines each file marks as counting, by expected state."""
    found: dict[str, dict[str, set[int]]] = {}
    for path in sorted((repo / "lib").glob("*.py")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            for state in ("covered", "missing"):
                if f"# diff: {state}" in line:
                    name = path.relative_to(repo).as_posix()
                    found.setdefault(name, {}).setdefault(state, set()).add(number)
    return found


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    return once_per_session(
        tmp_path_factory,
        "diff",
        lambda root: run_in_process(
            make_repo(root), "--diff-base", "main", "--fail-under-diff", "80"
        ),
    )


@pytest.fixture(scope="module")
def repo(ran: Ran) -> Path:
    return ran.project


def files_of(ran: Ran) -> dict[str, dict[str, Any]]:
    diff = ran.results()["diff_coverage"]
    return {file["path"]: file for file in diff["files"]}


def test_exactly_the_marked_lines_count(repo: Path, ran: Ran) -> None:
    expected = marked(repo)
    files = files_of(ran)
    assert sorted(files) == sorted(expected)  # generated.py is omitted; tests are not measured
    for path, states in expected.items():
        counted = states.get("covered", set()) | states.get("missing", set())
        assert files[path]["statements"] == len(counted), path
        assert files[path]["covered_statements"] == len(states.get("covered", set())), path
        assert files[path]["missing_ranges"] == ranges(states.get("missing", set())), path


def test_branches_that_start_on_changed_lines_count(repo: Path, ran: Ran) -> None:
    calc = files_of(ran)["lib/calc.py"]
    branch_line = marked(repo)["lib/calc.py"]["covered"]
    start = min(line for line in branch_line if line > min(branch_line))  # the if line
    assert (calc["branches"], calc["covered_branches"]) == (2, 1)
    assert calc["missing_branches"] == [[start, start + 1]]


def test_the_percentage_combines_statements_and_branches(ran: Ran) -> None:
    diff = ran.results()["diff_coverage"]
    statements, branches = diff["statements"], diff["branches"]
    assert (statements, branches) == (10, 2)
    assert diff["percent"] == pytest.approx(100 * (8 + 1) / 12)
    assert diff["line_percent"] == pytest.approx(100 * 8 / 10)
    assert ran.results()["coverage"]["diff_percent"] == diff["percent"]
    gate = ran.gate("diff-coverage")
    assert (gate["threshold"], gate["passed"]) == (80, False)
    assert gate["message"] == (
        "75.00 % of 10 changed statements and 2 branches since main covered; minimum 80 %; "
        "missing lib/calc.py: 12; lib/fresh.py: 6"
    )
    assert "diff coverage: 75.00 % of 10 changed statements and 2 branches since main" in ran.output
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert "| `lib/fresh.py` | 4 | 3 | 0 | 0 | 6 |" in summary
    assert ran.results()["diff_coverage"]["merge_base"] == git(ran.project, "rev-parse", "main")
    assert ran.results()["run"]["commit"] == git(ran.project, "rev-parse", "HEAD")  # from git


def test_gate_measures_the_change_again_against_the_base_it_is_given(
    repo: Path, ran: Ran, tmp_path: Path
) -> None:
    """``testgate gate --fail-under-diff 70`` on the run's reports: the same change measured
    again (75 %, the run's), judged at the new threshold; against HEAD itself there is no
    change left to measure, so the gate has nothing to judge."""
    copy = tmp_path / "reports"
    shutil.copytree(ran.reports, copy)  # the shared run's own reports stay as they are
    again = run_in_process(repo, "--diff-base", "main", "--fail-under-diff", "70",
                           command="gate", reports=str(copy))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert again.results()["diff_coverage"] == ran.results()["diff_coverage"]
    assert (again.gate("diff-coverage")["threshold"], again.gate("diff-coverage")["passed"]) == (
        70, True,
    )  # fmt: skip
    head = run_in_process(repo, "--diff-base", "HEAD", command="gate", reports=str(copy))
    diff = head.results()["diff_coverage"]
    assert (diff["statements"], diff["branches"], diff["percent"]) == (0, 0, None)
    assert head.results()["coverage"]["diff_percent"] is None


def test_the_diff_is_measured_once_on_merged_shards(repo: Path, ran: Ran, tmp_path: Path) -> None:
    copy = clone(repo, tmp_path / "sharded", "--branch", "feature")
    git(copy, "branch", "-q", "main", "origin/main")
    for index in (1, 2):
        shard = run_in_process(copy, "--shard", f"{index}/2", reports=f"shard-{index}")
        assert shard.results()["diff_coverage"] is None  # deferred to the merge
    merged = run_in_process(
        copy, "--diff-base", "main", "shard-1", "shard-2", command="merge", reports="merged"
    )
    expected = ran.results()["diff_coverage"]
    assert merged.results()["diff_coverage"]["percent"] == expected["percent"]
    assert merged.results()["diff_coverage"]["files"] == expected["files"]


def test_line_percentage_equals_diff_covers(repo: Path, ran: Ran, tmp_path: Path) -> None:
    report = tmp_path / "diff-cover.json"
    subprocess.run(
        [str(Path(sys.executable).parent / "diff-cover"), str(ran.reports / "coverage.xml"),
         "--compare-branch=main", "--ignore-staged", "--ignore-unstaged",
         "--total-percent-float", "--format", f"json:{report}"],
        cwd=repo,
        check=True,
        capture_output=True,
    )  # fmt: skip
    theirs = json.loads(report.read_text("utf-8"))
    assert theirs["total_percent_covered"] == pytest.approx(
        ran.results()["diff_coverage"]["line_percent"]
    )
    for path, file in files_of(ran).items():
        stats = theirs["src_stats"][path]
        assert len(stats["covered_lines"]) == file["covered_statements"], path
        assert ranges(stats["violation_lines"]) == file["missing_ranges"], path


def shallow_clone(repo: Path, root: Path) -> Path:
    """The feature branch alone, one commit deep, from a bare 'origin' of the repository."""
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(repo), str(origin))
    clone = root / "clone"
    git(root, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{origin}", str(clone))
    return clone


def test_a_shallow_clone_fetches_what_the_merge_base_needs(
    repo: Path, ran: Ran, tmp_path: Path
) -> None:
    clone = shallow_clone(repo, tmp_path)
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    shallow = run_in_process(clone, "--diff-base", "origin/main", "--fail-under-diff", "70")
    assert shallow.exit_code == 0, shallow.output
    assert (
        shallow.results()["diff_coverage"]["percent"] == ran.results()["diff_coverage"]["percent"]
    )
    assert (
        shallow.results()["diff_coverage"]["merge_base"]
        == ran.results()["diff_coverage"]["merge_base"]
    )


def test_a_shallow_clone_of_unrelated_history_stops_after_bounded_fetches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "--orphan", "island")
    git(repo, "commit", "-q", "-m", "unrelated")
    git(repo, "checkout", "-q", "feature")
    clone = shallow_clone(repo, tmp_path)
    # The merge base alone decides it, no whole run needed: that a run whose diff base
    # fails is exit 3 with the advice printed, test_a_base_that_cannot_be_found_* shows.
    with pytest.raises(InfraError) as raised:
        merge_base(Git(clone, environment()), "origin/island")
    assert raised.value.exit_code == 3
    assert "HEAD and diff-base 'origin/island' share no commit" in raised.value.message
    assert "'fetch-depth: 0' on actions/checkout" in raised.value.message


def test_a_diff_git_refuses_is_an_infrastructure_error(repo: Path) -> None:
    with pytest.raises(InfraError, match="git diff no-such-commit HEAD failed"):
        diff(Git(repo, environment()), "no-such-commit")


def clone(repo: Path, destination: Path, *args: str) -> Path:
    """A private clone, so that runs never touch the shared repository's reports."""
    git(destination.parent, "clone", "-q", *args, str(repo), str(destination))
    return destination


def test_a_base_that_cannot_be_found_is_exit_three_with_advice(repo: Path, tmp_path: Path) -> None:
    ran = run_in_process(clone(repo, tmp_path / "c"), "--diff-base", "origin/no-such-branch")
    assert ran.exit_code == 3
    assert "diff-base 'origin/no-such-branch' is not a commit" in ran.output
    assert "'fetch-depth: 0' on actions/checkout" in ran.output


def test_unrelated_history_is_exit_three_with_advice(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "--orphan", "island")
    git(repo, "commit", "-q", "-m", "unrelated")
    git(repo, "checkout", "-q", "feature")
    with pytest.raises(InfraError) as raised:  # a run's exit 3: test_a_base_that_cannot_be_found_*
        merge_base(Git(repo, environment()), "island")
    assert raised.value.exit_code == 3
    assert "HEAD and diff-base 'island' share no commit" in raised.value.message


def test_the_base_defaults_to_the_pr_base_then_main(repo: Path, tmp_path: Path) -> None:
    ran = run_in_process(clone(repo, tmp_path / "on-main", "--branch", "main"))
    gate = ran.gate("diff-coverage")
    assert (gate["passed"], gate["message"]) == (True, "no changed Python lines since origin/HEAD")
    on_feature = Git(
        clone(repo, tmp_path / "on-feature", "--branch", "feature"),
        environment(GITHUB_BASE_REF="no-such-base"),
    )
    assert default_base(on_feature) == "origin/no-such-base"  # the PR's base beats origin/HEAD
    with pytest.raises(InfraError) as raised:  # a run's exit 3: test_a_base_that_cannot_be_found_*
        merge_base(on_feature, "origin/no-such-base")
    assert raised.value.exit_code == 3
    assert "diff-base 'origin/no-such-base' is not a commit" in raised.value.message


def test_without_a_base_branch_the_gate_is_skipped_and_says_why(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "branch", "-q", "-m", "main", "trunk")
    ran = run_in_process(repo)
    assert ran.gate("diff-coverage")["message"] == (
        "skipped: no diff base: none of origin/HEAD, main or master exists; set diff-base"
    )
    assert ran.results()["diff_coverage"] is None


def test_uncovered_changed_lines_become_warnings_on_github(ran: Ran) -> None:
    result = read_results(ran.reports / "results.json")
    warnings = [a.command() for a in annotations_of(result) if a.level == "warning"]
    assert warnings == [
        "::warning title=changed lines not covered,file=lib/calc.py,line=12,endLine=12::"
        "line 12 changed since main is not covered",
        "::warning title=changed lines not covered,file=lib/fresh.py,line=6,endLine=6::"
        "line 6 changed since main is not covered",
    ]
