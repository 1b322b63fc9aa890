"""The statistics and the pure classification behind the flaky verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.quarantine import Quarantine, read_quarantine
from runner.results import Attempt
from runner.stability import runs_needed, wilson_interval
from runner.verdicts import verdict


@pytest.mark.parametrize(
    ("rate", "runs"), [(0.5, 5), (0.2, 14), (0.1, 29), (0.05, 59), (0.02, 149), (0.01, 299)]
)
def test_runs_needed_at_95_percent_match_the_published_table(rate: float, runs: int) -> None:
    assert runs_needed(confidence=0.95, max_fail_rate=rate) == runs


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0


def attempt(outcome: str, kind: str = "run", **extra: str) -> Attempt:
    return Attempt(outcome=outcome, duration_s=0.1, kind=kind, **extra)  # type: ignore[arg-type]


def test_verdicts_from_attempts() -> None:
    assert verdict([attempt("passed")]).outcome == "passed"
    assert verdict([attempt("skipped")]).outcome == "skipped"
    errors = verdict([attempt("error"), attempt("error", "rerun")])
    assert (errors.outcome, errors.note) == ("error", "failed 2 of 2 attempts")
    teardown = verdict([attempt("passed", teardown_error="late"), attempt("passed", "rerun")])
    assert (teardown.outcome, teardown.flaky_kind) == ("flaky", "nondeterministic")
    assert teardown.note == "failed 1 of 2 attempts; passed in isolation"
    retried = verdict([attempt("failed"), attempt("passed")])  # pytest-rerunfailures' tries
    assert (retried.outcome, retried.note) == (
        "flaky",
        "failed 1 of 2 attempts; passed when pytest-rerunfailures ran it again",
    )
    one_of_two = verdict(
        [
            attempt("failed"),
            attempt("passed", "rerun"),
            attempt("failed", "order-check"),
            attempt("passed", "order-check"),
        ]
    )
    assert (one_of_two.outcome, one_of_two.flaky_kind) == ("flaky", "nondeterministic")
    assert one_of_two.note == (
        "failed 1 of 2 attempts; passed in isolation; "
        "failed 1 of 2 replays after the tests that ran before it on its worker"
    )


def test_quarantine_entries_match_tests_parameters_and_classes(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("# header\nt.py::test_a\nt.py::TestK  # whole class\n\n  \n", "utf-8")
    quarantine = read_quarantine(path)
    assert quarantine.entries == ("t.py::test_a", "t.py::TestK")
    assert quarantine.matches("t.py::test_a")
    assert quarantine.matches("t.py::test_a[1-2]")
    assert quarantine.matches("t.py::TestK::test_x")
    assert not quarantine.matches("t.py::test_ab")
    assert quarantine.unmatched(["t.py::test_a[1]"]) == ("t.py::TestK",)
    assert read_quarantine(None) == Quarantine()


def test_an_oversized_or_undecodable_quarantine_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigError, match="cannot read the quarantine file"):
        read_quarantine(path)
    monkeypatch.setattr("runner.quarantine.LIMIT_BYTES", 2)
    with pytest.raises(ConfigError, match="is over 2 bytes"):
        read_quarantine(path)
