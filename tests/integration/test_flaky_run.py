"""Reruns in every ``testgate run``: flaky told from broken, the kind named on evidence.

The fixture project (tests/fixtures/flaky) behaves the same way every time: one test
fails only on its first run ever, one fails only after its neighbour polluted shared
state, two fail only under the seeds attempt 1 runs with (PYTHONHASHSEED=0 and a pinned
pytest-randomly seed), and one is broken.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from junitparser import JUnitXml, xunit2

from tests.conftest import (
    SCHEMA,
    Ran,
    copy_fixture,
    flaky_run,
    marker_line,
    run_in_process,
)

FIRST = "tests/test_flaky.py::test_fails_first_time"
ORDER = "tests/test_order.py::test_b_needs_clean_state"
HASH = "tests/test_seed.py::test_hash_seed_changes"
SEED = "tests/test_seed.py::test_randomly_seed_changes"
BROKEN = "tests/test_broken.py::test_always"
POLLUTER = "tests/test_order.py::test_a_pollutes"


@pytest.fixture
def ran(flaky_fixture_run: Ran) -> Ran:
    return flaky_fixture_run


def attempts(ran: Ran, test_id: str) -> list[tuple[int, str, str]]:
    return [(a["number"], a["kind"], a["outcome"]) for a in ran.test(test_id)["attempts"]]


def test_each_test_gets_the_verdict_its_behaviour_earns(ran: Ran) -> None:
    verdicts = {t["id"]: (t["outcome"], t["flaky_kind"]) for t in ran.results()["tests"]}
    assert verdicts == {
        BROKEN: ("failed", None),
        FIRST: ("flaky", "nondeterministic"),
        POLLUTER: ("passed", None),
        ORDER: ("flaky", "order-dependent"),
        HASH: ("flaky", "nondeterministic"),
        SEED: ("flaky", "nondeterministic"),
    }
    assert ran.exit_code == 1


def test_every_attempt_is_kept_and_only_failures_are_rerun(ran: Ran) -> None:
    assert attempts(ran, BROKEN) == [
        (1, "run", "failed"),
        (2, "rerun", "failed"),
        (3, "rerun", "failed"),
    ]
    assert attempts(ran, FIRST) == [
        (1, "run", "failed"),
        (2, "rerun", "passed"),
        (4, "order-check", "passed"),
        (4, "order-check", "passed"),
    ]
    assert attempts(ran, ORDER) == [
        (1, "run", "failed"),
        (2, "rerun", "passed"),
        (4, "order-check", "failed"),
        (4, "order-check", "failed"),
    ]
    assert attempts(ran, POLLUTER) == [(1, "run", "passed")]
    assert ran.results()["run"]["rerun_duration_s"] > 0


def test_the_notes_say_how_often_and_what_the_evidence_was(ran: Ran) -> None:
    assert ran.test(BROKEN)["note"] == "failed 3 of 3 attempts"
    assert ran.test(ORDER)["note"] == (
        "failed 1 of 2 attempts; passed in isolation; "
        "failed 2 of 2 replays after the tests that ran before it on its worker"
    )
    assert ran.test(FIRST)["note"] == (
        "failed 1 of 2 attempts; passed in isolation; "
        "failed 0 of 2 replays after the tests that ran before it on its worker"
    )
    assert ran.test(ORDER)["line"] == marker_line(ran.project / "tests/test_order.py", "order")
    assert "FLAKY (order-dependent) tests/test_order.py:9" in ran.output


def test_totals_count_each_test_once_and_gates_judge_flakes(ran: Ran) -> None:
    totals = ran.results()["totals"]
    assert (totals["tests"], totals["passed"], totals["failed"], totals["flaky"]) == (6, 1, 1, 4)
    gate = ran.gate("max-flaky")
    assert (gate["threshold"], gate["actual"], gate["passed"]) == (0, 4, False)
    assert gate["message"].startswith(f"4 flaky: {FIRST} (nondeterministic: failed 1 of 2")
    assert ran.gate("failed-tests")["message"] == f"1 failed: {BROKEN}"
    jsonschema.validate(ran.results(), json.loads(SCHEMA.read_text("utf-8")))


def test_junit_carries_reruns_the_way_surefire_does(ran: Ran) -> None:
    (suite,) = list(xunit2.JUnitXml.fromfile(str(ran.reports / "junit.xml")))
    cases: dict[str, xunit2.TestCase] = {
        f"{case._elem.get('file')}::{case.name}": xunit2.TestCase.fromelem(case._elem)  # type: ignore[no-untyped-call]
        for case in suite
    }
    assert len(cases) == 6 == suite.tests  # one <testcase> per test, never a duplicate
    broken = cases[BROKEN]
    assert [type(r).__name__ for r in broken.result] == ["Failure"]
    assert len(broken.rerun_failures()) == 2
    assert "assert 1 == 2" in (broken.rerun_failures()[0].stack_trace or "")
    order = cases["tests/test_order.py::test_b_needs_clean_state"]
    assert order.result == []
    assert order.is_flaky
    assert not order.is_rerun
    assert [f.message for f in order.flaky_failures()] == ["AssertionError: assert not True"]
    assert (suite.failures, suite.errors, suite.skipped) == (1, 0, 0)


def test_quarantine_reports_failures_without_failing_the_gate(tmp_path: Path) -> None:
    entries = (
        "# known problems\n"
        f"{BROKEN}  # tracked elsewhere\n"
        "tests/test_order.py\n"
        "\n"
        "tests/test_gone.py::test_removed\n"
    )
    ran = flaky_run(tmp_path, "--max-flaky", "3", quarantine=entries)
    assert ran.exit_code == 0, ran.output
    assert ran.test(BROKEN)["outcome"] == "quarantined"
    assert ran.test(BROKEN)["note"] == "quarantined (failed: failed 3 of 3 attempts)"
    assert ran.test(ORDER)["outcome"] == "quarantined"
    assert ran.test(ORDER)["flaky_kind"] == "order-dependent"
    assert ran.test(POLLUTER)["outcome"] == "passed"  # quarantine changes only bad verdicts
    assert ran.results()["run"]["warnings"] == [
        "quarantine entry 'tests/test_gone.py::test_removed' matches no test of this run"
    ]
    assert "warning: quarantine entry 'tests/test_gone.py::test_removed'" in ran.output
    assert ran.results()["totals"]["quarantined"] == 2
    assert ran.gate("failed-tests")["passed"] is True
    assert ran.gate("max-flaky")["actual"] == 3
    (suite,) = list(JUnitXml.fromfile(str(ran.reports / "junit.xml")))
    assert suite.skipped == 2
    summary = (ran.reports / "summary.md").read_text("utf-8")
    assert (
        "| `tests/test_broken.py::test_always` | `tests/test_broken.py:2` | quarantined |"
        in summary
    )


def test_without_reruns_a_flake_looks_like_a_failure(tmp_path: Path) -> None:
    ran = flaky_run(tmp_path, "--reruns", "0")
    outcomes = sorted(test["outcome"] for test in ran.results()["tests"])
    assert outcomes == ["failed"] * 5 + ["passed"]
    assert ran.results()["run"]["rerun_duration_s"] == 0


def test_a_missing_quarantine_file_is_a_config_error(tmp_path: Path) -> None:
    project = copy_fixture("flaky", tmp_path)
    ran = run_in_process(project, "--quarantine", "nowhere.txt")
    assert ran.exit_code == 2
    assert "cannot read the quarantine file" in ran.output


def test_a_rerun_runs_exactly_the_failed_tests_not_those_named_below_them(
    hangs_run: Ran,
) -> None:
    """A rerun of the failed ``module.py::ruff`` does not run ``module.py::ruff::format``,
    whose id merely starts with it, nor gives its pass to the failed test. The scenario
    (``NESTED_CONFTEST`` in tests/conftest.py) shares the session's run of the hangs
    fixture (one rerun), beside that project's own tests."""
    ran = hangs_run
    lint, formatted = "module.py::ruff", "module.py::ruff::format"
    assert (ran.project / "runs.txt").read_text("utf-8").split() == [
        "ruff", "ruff::format", "ruff",
    ]  # fmt: skip
    assert attempts(ran, lint) == [(1, "run", "failed"), (2, "rerun", "failed")]
    assert attempts(ran, formatted) == [(1, "run", "passed")]
    assert ran.test(lint)["outcome"] == "failed"
    assert f": {lint}, " in ran.gate("failed-tests")["message"]  # a failure the gate names
    assert ran.exit_code == 1
