"""The test history: the store, its bounds, and the rules it judges runs by (pure functions).

The real runs that build a history, the GitHub artifact it lives in and the chart's
parse by Mermaid itself are in tests/integration/test_history_runs.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from runner import flaky as flaky_command
from runner import history_run, trend
from runner.errors import ConfigError
from runner.git import Git
from runner.history import (
    FILE_NAME,
    History,
    Rate,
    bound,
    coverage_flips,
    entries,
    extend,
    failures_on,
    flip_rates,
    label,
    parse_history,
    passes_in_a_row,
    read_history,
    write_history,
)
from runner.history_run import work_tree_status
from runner.output import table_cell
from runner.quarantine import Quarantine, expiry_gate, read_quarantine
from runner.results import Attempt, TestResult
from runner.settings import load_settings

A, B, C = "tests/t.py::test_a", "tests/t.py::test_b", "tests/t.py::test_c[x|y]"
ENV = "e1"  # the environment's fingerprint every run of these histories had


def result(test_id: str, *outcomes: str, outcome: str | None = None) -> TestResult:
    attempts = tuple(
        Attempt(outcome=o, duration_s=0.25, number=n)  # type: ignore[arg-type]
        for n, o in enumerate(outcomes, start=1)
    )
    shown = outcome or ("flaky" if len(set(outcomes)) > 1 else outcomes[-1])
    return TestResult(
        id=test_id,
        file="tests/t.py",
        line=1,
        outcome=shown,  # type: ignore[arg-type]
        attempts=attempts,
    )


def meta(day: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "started": f"2026-11-{day:02d}T10:00:00+00:00",
        "commit": "c1",
        "branch": "main",
        "clean": True,
        "duration_s": 2.0 + day,
        "line_percent": 90.0 + day,
        "branch_percent": 80.0,
        "missing": {},
        "environment": ENV,
        **changes,
    }


def grow(runs: list[tuple[list[TestResult], dict[str, Any]]], **bounds: Any) -> History:
    history = History()
    for tests, run in runs:
        history = extend(
            history,
            tests,
            max_runs=bounds.get("max_runs", 100),
            max_days=bounds.get("max_days", 90),
            **run,
        )
    return history


def test_a_run_is_kept_per_test_with_outcome_attempts_and_duration(tmp_path: Path) -> None:
    history = grow(
        [
            ([result(A, "passed"), result(B, "failed", "passed")], meta(1)),
            ([result(B, "failed", "failed"), result(C, "skipped")], meta(2, commit="c2")),
            ([result(A, "failed", outcome="quarantined")], meta(3, commit=None)),
        ]
    )
    late = Attempt(outcome="passed", duration_s=0.5, teardown_error="RuntimeError: late")
    broken = TestResult(id=C, file="tests/t.py", line=1, outcome="error", attempts=(late,))
    assert extend(History(), [broken], max_runs=1, max_days=1, **meta(4)).runs[0].codes == "e"
    path = tmp_path / FILE_NAME
    write_history(history, path)
    again = read_history(path)
    assert again == history
    shown = [(e.outcome, e.attempts, e.duration_s, e.run.commit) for e in entries(again, A)]
    assert shown == [("passed", 1, 0.25, "c1"), ("failed", 1, 0.25, None)]  # not "quarantined"
    assert [e.outcome for e in entries(again, B)] == ["flaky", "failed"]
    assert [run.flaky for run in again.runs] == [1, 0, 0]
    assert entries(again, "tests/t.py::nothing") == []
    assert read_history(tmp_path / "none.json.gz") == History()


# A history as testgate wrote it before msgspec did (json.dumps, compact separators).
EARLIER = (
    b'{"schema_version":1,"ids":["tests/t.py::test_a","tests/t.py::test_b[\\u00e9]"],"runs":['
    b'{"started":"2026-11-01T10:00:00+00:00","commit":"c1","branch":"main","clean":true,'
    b'"duration_s":2.123,"line_percent":90.5,"branch_percent":80.0,"flaky":1,"codes":"kf",'
    b'"attempts":"21","durations_ms":[251,7],"missing":{"a.py":[1,2,3]}},'
    b'{"started":"2026-11-02T10:00:00+00:00","commit":null,"branch":"main","clean":false,'
    b'"duration_s":3.0,"line_percent":null,"branch_percent":null,"flaky":0,"codes":"-p",'
    b'"attempts":"01","durations_ms":[0,9],"missing":{}}]}'
)


def test_a_history_written_before_reads_and_is_written_again_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(gzip.compress(EARLIER))
    history = read_history(path)
    assert history.ids == (A, "tests/t.py::test_b[é]")
    assert [(e.outcome, e.attempts, e.duration_s) for e in entries(history, A)] == [
        ("flaky", 2, 0.251)
    ]
    assert history.runs[0].missing == {"a.py": (1, 2, 3)}
    write_history(history, path)
    written = gzip.decompress(path.read_bytes())
    # UTF-8, not an escape; an old run has no environment fingerprint, and keeps none
    assert written == EARLIER.replace(b"\\u00e9", "é".encode()).replace(
        b',"codes":', b',"environment":null,"reruns_stopped":false,"codes":'
    )
    assert history.runs[0].environment is None


def test_the_history_keeps_the_last_runs_and_days_and_the_ids_they_use() -> None:
    runs = [([result(A, "passed")], meta(1)), ([result(B, "passed")], meta(2))]
    runs += [([result(C, "failed")], meta(day)) for day in (20, 21)]
    assert grow(runs, max_runs=3).ids == (B, C)
    by_days = grow(runs, max_days=5)
    assert (by_days.ids, len(by_days.runs)) == ((C,), 2)
    assert bound(by_days, max_runs=0, max_days=5) == History()
    assert entries(by_days, C)[0].run.started == "2026-11-20T10:00:00+00:00"


def test_ten_thousand_tests_over_a_hundred_runs_stay_a_small_download(tmp_path: Path) -> None:
    tests = [result(f"tests/test_{n // 50}.py::test_{n}", "passed") for n in range(10_000)]
    history = History()
    run = extend(history, tests, max_runs=100, max_days=90, **meta(1)).runs[0]
    history = History(ids=tuple(t.id for t in tests), runs=(run,) * 100)
    write_history(history, tmp_path / FILE_NAME)
    assert (tmp_path / FILE_NAME).stat().st_size < 2_000_000


RUN = '"duration_s": 1, "attempts": "1", "durations_ms": [1]'
NOW = '"started": "2026-11-01T00:00:00+00:00"'


def stored(ids: str, runs: str) -> bytes:
    return gzip.compress(f'{{"schema_version": 1, "ids": {ids}, "runs": {runs}}}'.encode())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not gzip", "Not a gzipped file"),
        (gzip.compress(b"[1]"), "not a testgate history of schema version 1"),
        (gzip.compress(b'{"schema_version": 2, "runs": 1}'), "not a testgate history of schema"),
        (gzip.compress(b'{"schema_version": 1, "ids": [}'), "JSON is malformed"),
        (stored("{}", "[]"), "Expected `array`, got `object` - at `$.ids`"),
        (stored("[1]", "[]"), "Expected `str`, got `int` - at `$.ids[0]`"),
        (stored("[]", '[{"codes": "p"}]'), "missing required field `started` - at `$.runs[0]`"),
        (stored("[]", f'[{{{NOW}, {RUN}, "codes": "p"}}]'), "bad outcome codes in the run of '20"),
        (stored('["a"]', f'[{{{NOW}, {RUN}, "codes": "z"}}]'), "bad outcome codes"),
        (
            stored('["a"]', f'[{{"started": "soon", {RUN}, "codes": "p"}}]'),
            "Invalid isoformat string: 'soon'",
        ),
        (
            stored('["a"]', f'[{{{NOW}, {RUN}, "codes": "p", "clean": "yes"}}]'),
            "Expected `bool`, got `str` - at `$.runs[0].clean`",
        ),
        (stored('["a"]', "[1]"), "Expected `object`, got `int` - at `$.runs[0]`"),
        (gzip.compress(b"{}" + b" " * 300), "unpacks to more than 200 bytes"),
    ],
    ids=["gzip", "shape", "version", "json", "ids", "id", "field", "codes", "code", "started",
         "type", "run", "size"],
)  # fmt: skip
def test_a_bad_history_file_is_a_clear_error(tmp_path: Path, content: bytes, words: str) -> None:
    """The file may come from an artifact: each field must be of its type, and the error
    says which is not."""
    path = tmp_path / FILE_NAME
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        read_history(path, limit=200)
    assert words in error.value.message
    assert "delete it to start a new history" in error.value.message


def test_parse_keeps_optional_fields_optional() -> None:
    data = {"schema_version": 1, "ids": [A],
            "runs": [{"started": "2026-11-01T00:00:00+00:00", "duration_s": 1, "codes": "k",
                      "attempts": "2", "durations_ms": [5], "line_percent": None}]}  # fmt: skip
    (run,) = parse_history(json.dumps(data).encode()).runs
    assert (run.commit, run.clean, run.flaky, run.line_percent, run.missing) == (
        None, False, 0, None, {}
    )  # fmt: skip
    data["runs"][0]["started"] = "2026-11-01T00:00:00Z"  # type: ignore[index]
    (run,) = parse_history(json.dumps(data).encode()).runs
    assert run.started == "2026-11-01T00:00:00+00:00"  # as testgate writes a time


def base_history() -> History:
    """main: A fails 2 of 5 runs, B fails all 5, C passes all; commit c9 ran clean twice."""
    runs = []
    for day in range(1, 6):
        tests = [
            result(A, "failed" if day in (2, 4) else "passed"),
            result(B, "failed"),
            result(C, "passed"),
        ]
        runs.append((tests, meta(day, commit=f"c{day}")))
    runs.append(([result(A, "passed"), result(C, "failed")], meta(6, commit="c9", branch="x")))
    runs.append(([result(A, "failed")], meta(7, commit="c9", branch="x", clean=False)))
    return grow(runs)


def test_failures_on_the_base_branch_with_their_interval() -> None:
    history = base_history()
    rate = failures_on(history, A, branch="main")
    assert (rate.count, rate.runs) == (2, 5)
    assert str(rate) == "2 of 5 recent runs (95 % interval 12% to 77%)"
    assert failures_on(history, "tests/t.py::new", branch="main") == Rate(0, 0)


@pytest.mark.parametrize(
    ("counts_as", "outcome", "gate_counts"),
    [
        ("flaky", "flaky", "max-flaky"),
        ("failed", "failed", "failed-tests"),
        ("quarantined", "quarantined", "neither"),
    ],
)
def test_a_failure_flaky_on_base_is_labelled_and_counts_as_chosen(
    counts_as: str, outcome: str, gate_counts: str
) -> None:
    history = base_history()
    tests = [
        result(A, "failed", "failed"),
        result(B, "failed"),
        result("tests/t.py::new", "failed"),
    ]
    a, b, new = label(
        tests, history, commit="pr1", clean=True, base="main", counts_as=counts_as, environment=ENV
    )
    assert a.outcome == outcome
    assert a.note == "flaky on main: failed 2 of 5 recent runs (95 % interval 12% to 77%)"
    assert (b.outcome, b.note) == (
        "failed",
        "failing on main too: 5 of 5 recent runs (95 % interval 57% to 100%)",
    )
    assert (new.outcome, new.note) == ("failed", None)  # newly broken: the author's


def test_a_test_that_failed_and_passed_on_the_same_clean_commit_is_flaky() -> None:
    history = base_history()
    tests = [result(A, "failed"), result(C, "passed"), result(B, "skipped")]
    a, c, b = label(
        tests, history, commit="c9", clean=True, base=None, counts_as="flaky", environment=ENV
    )
    assert (a.outcome, a.flaky_kind) == ("flaky", "nondeterministic")
    assert a.note == "passed in an earlier run of the same commit c9"
    assert (c.outcome, c.note) == ("flaky", "failed in an earlier run of the same commit c9")
    assert b.outcome == "skipped"
    dirty = label(
        tests, history, commit="c9", clean=False, base=None, counts_as="flaky", environment=ENV
    )
    assert [t.outcome for t in dirty] == ["failed", "passed", "skipped"]  # a work in progress
    failed = label(
        tests[:1], history, commit="c9", clean=True, base=None, counts_as="failed", environment=ENV
    )
    assert failed[0].outcome == "failed"


def test_only_runs_of_the_same_environment_are_evidence_of_flakiness() -> None:
    """A dependency removed between two runs of one commit: the failures after it are
    broken by the change, not flaky, and say why; a run recorded without a fingerprint
    (an older testgate) is evidence for no run."""
    history = base_history()
    tests = [result(A, "failed"), result(C, "passed"), result(B, "failed")]
    for environment in ("e2", None):
        a, c, b = label(
            tests, history, commit="c9", clean=True, base="main", counts_as="flaky",
            environment=environment,
        )  # fmt: skip
        assert (a.outcome, a.flaky_kind) == ("failed", None)
        assert a.note == (
            "passed in an earlier run of the same commit c9 in another environment (another "
            "interpreter or other installed packages, or not recorded): not counted as flaky"
        )
        assert (c.outcome, c.note) == ("passed", None)  # its failure was elsewhere
        assert (b.outcome, b.note) == ("failed", None)  # main's runs are elsewhere too
    old = grow([([result(A, "passed")], meta(1, commit="c9", environment=None))])
    (a,) = label(tests[:1], old, commit="c9", clean=True, base=None, counts_as="flaky",
                 environment=ENV)  # fmt: skip
    assert a.outcome == "failed"
    assert "in another environment" in (a.note or "")


def test_a_run_whose_reruns_were_stopped_is_evidence_for_no_later_run() -> None:
    """A database down on main made every test fail once: no test is flaky by that run,
    nor flips, and a pass after it on the same commit is a pass."""
    down = [result(A, "failed"), result(B, "failed"), result(C, "failed")]
    history = grow(
        [
            ([result(A, "passed"), result(B, "passed"), result(C, "passed")], meta(1)),
            (down, meta(2, reruns_stopped=True)),
            ([result(A, "passed"), result(B, "passed"), result(C, "passed")], meta(3)),
        ]
    )
    assert history.runs[1].reruns_stopped
    assert flip_rates(history, branch="main") == []
    a, b = label(
        [result(A, "failed"), result(B, "passed")], history, commit="c1", clean=True,
        base="main", counts_as="flaky", environment=ENV,
    )  # fmt: skip
    assert (a.outcome, a.note) == ("flaky", "passed in an earlier run of the same commit c1")
    assert (b.outcome, b.note) == ("passed", None)
    (pr,) = label(
        [result(A, "failed")], history, commit="pr", clean=True, base="main",
        counts_as="flaky", environment=ENV,
    )  # fmt: skip
    assert (pr.outcome, pr.note) == ("failed", None)  # newly broken, not "flaky on main"


def test_a_failure_whose_reruns_were_stopped_stays_failed_whatever_history_shows() -> None:
    history = base_history()
    stopped = "not rerun: all 5 failures share one cause (call: OSError); a broken environment"
    a, pr = label(
        [result(A, "failed"), result(A, "failed")], history, commit="c9", clean=True,
        base="main", counts_as="flaky", environment=ENV, reruns_stopped=stopped,
    )  # fmt: skip
    assert (a.outcome, a.flaky_kind) == ("failed", None)
    assert a.note == (
        "passed in an earlier run of the same commit c9; not counted as flaky: this run "
        "stopped its reruns, its failures look broken"
    )
    (on_base,) = label(
        [result(A, "failed")], history, commit="pr", clean=True, base="main",
        counts_as="quarantined", environment=ENV, reruns_stopped=stopped,
    )  # fmt: skip
    assert on_base.outcome == "failed"
    assert (on_base.note or "").startswith("flaky on main: failed 2 of 5")
    assert pr == a


def test_coverage_that_differs_on_the_same_commit_is_named_line_by_line() -> None:
    history = grow([([result(A, "passed")], meta(1, missing={"lazy.py": [3, 4, 5, 9]}))])
    found = coverage_flips(
        history, commit="c1", missing={"lazy.py": [9], "other.py": [1, 2], "one.py": [7]},
        environment=ENV,
    )  # fmt: skip
    assert found == [
        "flaky coverage on commit c1: lazy.py: lines 3-5 covered now, not in an earlier run",
        "flaky coverage on commit c1: one.py: line 7 not covered now, covered earlier",
        "flaky coverage on commit c1: other.py: lines 1-2 not covered now, covered earlier",
    ]
    assert coverage_flips(history, commit="c1", missing={}, environment="e2") == []
    assert coverage_flips(history, commit="c1", missing={}) == []  # no fingerprint: unknown
    assert coverage_flips(history, commit="c2", missing={}) == []
    assert coverage_flips(history, commit=None, missing={}) == []


def test_flip_rates_and_passes_in_a_row() -> None:
    history = base_history()
    rates = flip_rates(history, branch="main")
    assert [(test_id, str(rate)[:7]) for test_id, rate in rates] == [(A, "4 of 5 ")]
    everywhere = flip_rates(history, branch=None)
    assert [test_id for test_id, _ in everywhere] == [A, C]
    assert passes_in_a_row(history, C, branch="main") == 5
    assert passes_in_a_row(history, C, branch=None) == 0
    assert passes_in_a_row(history, A, branch="main") == 1
    in_run = grow([([result(A, "failed", "passed")], meta(1))])
    assert str(flip_rates(in_run, branch=None)[0][1]).startswith("1 of 1 ")


def test_the_trend_charts_and_flip_table() -> None:
    history = base_history()
    lines = trend.section(history, branch="main")
    text = "\n".join(lines)
    assert "### Trends over the last 5 runs on main" in text
    assert text.count("```mermaid") == 3
    assert '  x-axis ["c1", "c2", "c3", "c4", "c5"]' in lines
    assert "  line [91, 92, 93, 94, 95]" in lines
    assert "| `tests/t.py::test_a` | 4 of 5 | 80% | 38% to 96% |" in lines
    assert trend.charts(history.runs[:1]) == []
    assert trend.section(History(), branch=None) == []
    flips = trend.flip_table([(C, Rate(1, 2))])
    assert flips[-1].startswith("| `tests/t.py::test_c[x\\|y]` |")
    assert table_cell("a`b\r\nc\u2028d") == "a'b\\r\\nc\\u2028d"
    calm = grow([([result(A, "passed")], meta(d)) for d in (1, 2)])
    assert "Highest flip rates:" not in trend.section(calm, branch="main")
    no_coverage = grow([([result(A, "passed")], meta(d, line_percent=None)) for d in (1, 2)])
    assert "  line [0, 0]" in trend.charts(no_coverage.runs)


def test_quarantine_entries_carry_owner_issue_and_expiry(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.txt"
    path.write_text(
        "# old style first\n"
        "tests/t.py::test_a\n"
        "tests/t.py::test_b  # owner: @alice, issue: https://example.org/i/1, expires: 2026-11-30\n"
        "tests/t.py::test_c  # flaky since tuesday, expires: 2027-01-01\n",
        "utf-8",
    )
    quarantine = read_quarantine(path)
    assert quarantine.entries == ("tests/t.py::test_a", "tests/t.py::test_b", "tests/t.py::test_c")
    assert quarantine.details[1].owner == "@alice"
    gate = expiry_gate(quarantine, today=date(2026, 12, 1))
    assert gate is not None
    assert (gate.name, gate.passed, gate.actual) == ("quarantine-expiry", False, 1)
    assert gate.message.startswith(
        "1 quarantine entries expired: tests/t.py::test_b (expired 2026-11-30, owner @alice, "
        "https://example.org/i/1); fix the tests"
    )
    kept = expiry_gate(quarantine, today=date(2026, 11, 30))
    assert kept is not None
    assert (kept.passed, kept.message) == (True, "no quarantine entry has expired")
    assert expiry_gate(Quarantine(("tests/t.py::test_a",)), today=date(2026, 12, 1)) is None
    path.write_text("tests/t.py::test_a  # expires: soon\n", "utf-8")
    with pytest.raises(ConfigError, match="line 1: expires 'soon' is not a date; write it as"):
        read_quarantine(path)


def project(tmp_path: Path, table: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.testgate]\n{table}\n", "utf-8")
    return tmp_path


def test_suggestions_add_flaky_tests_and_remove_entries_now_stable(tmp_path: Path) -> None:
    root = project(tmp_path, 'quarantine = "q.txt"\nmax-fail-rate = 0.5\nconfidence = 0.9')
    (root / "q.txt").write_text(f"{C}  # owner: @bob\n{B}\n", "utf-8")
    settings = load_settings(project=root, flags={}, environ={})
    context = history_run.Context(
        path=root / FILE_NAME, history=base_history(), commit="pr", branch="x", base="main",
        clean=True, extends=False,
    )  # fmt: skip
    text = history_run.markdown(context, settings=settings)
    assert f"- add `{A}`: flipped 4 of 5 recent runs" in text
    assert f"- remove `{C}`: passed 4 runs in a row" in text
    path = history_run.write_suggestions(context, settings=settings)
    assert path is not None
    lines = path.read_text("utf-8").splitlines()
    assert lines[1:3] == [B, f"{A}  # flipped 4 of 5 recent runs (suggested {lines[2][-11:-1]})"]
    labelled = label(
        [result(A, "failed"), result(B, "failed"), result("tests/t.py::new|`", "failed")],
        context.history, commit="pr", clean=True, base="main", counts_as="failed",
        environment=ENV,
    )  # fmt: skip
    explained = history_run.markdown(context, settings=settings, tests=labelled)
    assert "### Failures the history explains" in explained
    assert f"| `{A}` | flaky on main: failed 2 of 5 recent runs (95 % interval 12% to 77%) |" in (
        explained
    )
    assert f"| `{B}` | failing on main too: 5 of 5 recent runs" in explained
    assert "new" not in explained
    quiet = history_run.Context(**{**context.__dict__, "history": History()})
    assert history_run.write_suggestions(quiet, settings=settings) is None
    assert history_run.markdown(quiet, settings=settings) == ""


def test_the_base_branch_is_the_prs_then_diff_base_then_the_repositorys_default(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    settings = load_settings(project=root, flags={}, environ={})
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "trunk"}}), "utf-8")

    def base(**environ: str) -> str | None:
        return history_run.prepare(settings, commit=None, environ=environ).base

    assert base(GITHUB_BASE_REF="dev") == "dev"
    assert base(GITHUB_EVENT_PATH=str(event)) == "trunk"
    assert base(GITHUB_EVENT_PATH=str(tmp_path / "none.json")) is None
    event.write_text("[]", "utf-8")
    assert base(GITHUB_EVENT_PATH=str(event)) is None
    diff = load_settings(project=root, flags={"diff-base": "origin/release"}, environ={})
    assert history_run.prepare(diff, commit=None, environ={}).base == "release"
    assert base() is None  # not a repository, nothing else said
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "master"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    assert base() == "master"
    subprocess.run([*git, "update-ref", "refs/remotes/origin/trunk", "HEAD"], check=True)
    subprocess.run(
        [*git, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk"], check=True
    )
    assert base() == "trunk"
    assert history_run.missing_lines(root) == {}  # no coverage.json: nothing missed


def test_the_history_command_prints_runs_and_one_tests_history(
    tmp_path: Path, run_cli: Any
) -> None:
    root = project(tmp_path)
    empty = run_cli(root, command="history")
    assert (empty.exit_code, "no test history in") == (0, empty.output[:18])
    history = base_history()
    write_history(history, root / "testgate-reports" / FILE_NAME)
    listed = run_cli(root, command="history")
    assert listed.exit_code == 0
    assert "7 runs of 3 tests in" in listed.output
    assert "2026-11-01T10:00:00+00:00  c1            main  3.00 s  line 91.00 %" in listed.output
    assert f"  {A}: flipped 5 of 7 recent runs" in listed.output
    one = run_cli(root, A, command="history")
    assert "2026-11-02T10:00:00+00:00  c2            main  failed  1 attempt  0.250 s" in one.output
    assert "on main: failed 2 of 5 recent runs (95 % interval 12% to 77%)" in one.output
    assert "on x: failed 1 of 2 recent runs" in one.output
    unknown = run_cli(root, "tests/t.py::gone\r::error::x", command="history")
    assert unknown.exit_code == 2
    assert "no test 'tests/t.py::gone\\r::error::x' in the history" in unknown.output
    bare = grow([([result(A, "passed")], meta(1, commit=None, branch=None, line_percent=None))])
    write_history(bare, root / "testgate-reports" / FILE_NAME)
    assert "  -             -  3.00 s  line - " in run_cli(root, command="history").output
    assert history_run._safe("a\rb\u2028c") == "a b c"


def test_history_options_are_checked(tmp_path: Path) -> None:
    root = project(tmp_path)
    for flags, words in [
        ({"history-flaky": "ignore"}, "must be flaky, failed or quarantined"),
        ({"history-days": "0"}, "must be a number of days above 0"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_settings(project=root, flags=flags, environ={})
    settings = load_settings(
        project=root,
        flags={"history": "h/x.json.gz", "history-flaky": "Failed", "history-days": "30"},
        environ={},
    )
    assert (settings.history_flaky, settings.history_days) == ("failed", 30.0)
    assert history_run.prepare(settings, commit=None, environ={}).path == root / "h" / "x.json.gz"


def test_only_clean_runs_of_the_same_project_tree_count_for_the_flaky_job(tmp_path: Path) -> None:
    root = project(tmp_path, 'history = "h.json.gz"')
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "pyproject.toml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    commit = head.stdout.strip()
    history = grow(
        [
            ([result(A, "failed", "passed"), result(B, "passed")], meta(1, commit=commit)),
            ([result(A, "failed"), result(B, "failed")], meta(2, commit=commit, clean=False)),
            ([result(B, "failed")], meta(3, commit="0" * 40)),
            ([result(B, "failed"), result(C, "skipped")], meta(4, commit=None)),
            ([result(B, "passed")], meta(5, commit=commit)),
            (
                [result(A, "failed"), result(B, "failed")],
                meta(6, commit=commit, reruns_stopped=True),
            ),
        ]
    )
    write_history(history, root / "h.json.gz")
    settings = load_settings(project=root, flags={}, environ={})
    found = history_run.unchanged_outcomes(settings, environ={}, environment=ENV)
    assert found == {A: ["failed", "passed"], B: ["passed", "passed"]}
    assert history_run.unchanged_outcomes(settings, environ={}, environment="e2") == {}
    assert history_run.unchanged_outcomes(settings, environ={}, environment=None) == {}
    (root / "pyproject.toml").write_text('[tool.testgate]\nhistory = "h.json.gz"\n#\n', "utf-8")
    found = history_run.unchanged_outcomes(settings, environ={}, environment=ENV)
    assert found == {}  # a change in progress


def test_the_historys_runs_count_up_to_one_short_of_a_verdict() -> None:
    stable = flaky_command._from_history({A: ["passed"] * 9}, A, 4)
    assert (stable.runs, stable.failures, stable.verdict) == (3, 0, None)
    failing = flaky_command._from_history({A: ["failed"] * 9}, A, 4)
    assert (failing.runs, failing.failures, failing.verdict) == (3, 3, None)
    flaky = flaky_command._from_history({A: ["passed", "failed", "passed"]}, A, 4)
    assert (flaky.runs, flaky.failures, flaky.verdict) == (2, 1, "flaky")
    assert flaky_command._from_history({}, A, 4).runs == 0


def test_a_work_tree_with_an_untracked_python_file_is_not_clean(tmp_path: Path) -> None:
    """A conftest.py not yet added changes the tests as an edit does: the run is no clean
    run of its commit, so it is no evidence for or against another run of that commit.
    Reports, caches and bytecode left beside the code keep the tree clean."""
    project = tmp_path / "repo" / "proj"
    (project / "testgate-reports").mkdir(parents=True)
    (project / "a.py").write_text("x = 1\n", "utf-8")
    git = ["git", "-C", str(project.parent), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (project / "testgate-reports" / "results.json").write_text("{}", "utf-8")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")
    repository = Git(project, dict(os.environ))
    assert work_tree_status(repository) == ""
    (project / "conftest.py").write_text("x = 2\n", "utf-8")
    assert work_tree_status(repository) == "conftest.py"
    (project / "a.py").write_text("x = 3\n", "utf-8")
    assert work_tree_status(repository) == "M proj/a.py\nconftest.py"
    assert work_tree_status(Git(tmp_path, dict(os.environ))) is None
