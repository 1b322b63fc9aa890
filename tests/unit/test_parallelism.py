"""``workers = auto``'s decision from durations or counted tests, the count itself, and when
failures are not worth rerunning (one cause, or beyond ``max-reruns``): pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.parallelism import Decision, count_tests, cpus, decide, suite_decision
from runner.rerun_budget import stop_reason
from runner.results import Attempt


@pytest.mark.parametrize(
    ("requested", "expected_s", "count", "cores", "workers", "said"),
    [
        ("auto", 1.0, 100, 2, "0", "too little for 2 xdist workers (about 0.70 s to start"),
        ("auto", 2.0, 250, 2, "0", "to save a tenth of it"),  # 1.85 s with 2: within the error
        ("auto", 3.0, 150, 2, "2", "about 2.25 s with 2"),  # measured: 2.84 s, serial 3.47 s
        ("auto", 8.0, 800, 2, "2", "about 5.40 s with 2"),
        ("auto", 30.0, 500, 2, "2", "about 16.10 s with 2"),
        ("auto", 60.0, 3, 8, "3", "3 xdist workers"),
        ("auto", 400.0, 5000, 8, "8", "8 xdist workers"),
        ("logical", 0.1, 10, 8, "8", "8 xdist workers: workers = logical, one per CPU"),
        ("logical", 60.0, 1, 8, "0", "1 test to run"),
        ("auto", 60.0, 100, 1, "0", "one core"),
        ("4", 0.1, 10, 2, "4", "workers = 4, as set"),
        ("4", 60.0, 2, 8, "2", "one per test (workers = 4)"),
        ("4", 60.0, 1, 8, "0", "1 test to run"),
        ("0", 60.0, 100, 8, "0", "workers = 0, as set"),
        ("1", 60.0, 100, 8, "1", "workers = 1, as set"),
    ],
)
def test_workers_are_chosen_by_what_they_save_against_their_start_up(
    *, requested: str, expected_s: float, count: int, cores: int, workers: str, said: str
) -> None:
    found = decide(requested, expected_s=expected_s, count=count, basis="recorded", cores=cores)
    assert found.workers == workers
    assert said in found.reason
    assert found.count == int(workers)


def test_this_machine_has_at_least_one_core() -> None:
    assert cpus() >= 1


def test_recorded_durations_decide_the_suite_before_any_count(tmp_path: Path) -> None:
    (tmp_path / "test_many.py").write_text("def test_a(): pass\n" * 3, "utf-8")
    slow = {f"tests/test_x.py::test_{n}": 0.5 for n in range(100)}  # 50 s in all
    found = suite_decision("auto", durations=slow, project=tmp_path, pytest_args=(), cores=2)
    assert found == Decision(
        "2",
        "2 xdist workers: 100 recorded test durations: about 50.00 s serially, about 25.70 s "
        "with 2 (their start-up included)",
    )
    sharded = suite_decision(
        "auto", durations=slow, project=tmp_path, pytest_args=(), shards=50, cores=2
    )
    assert sharded.workers == "0"
    assert "100 recorded test durations / 50 shards: about 1.00 s" in sharded.reason
    assert suite_decision("3", durations={}, project=tmp_path, pytest_args=()).workers == "3"


def test_the_durations_of_the_tests_named_decide_not_the_whole_suites(tmp_path: Path) -> None:
    """`testgate run -- tests/test_quick.py` on a suite recorded at 50 s: no xdist."""
    write(tmp_path / "tests" / "test_quick.py", "def test_a(): pass\n")
    write(tmp_path / "tests" / "slow" / "test_big.py", "def test_b(): pass\n")
    recorded = {
        "tests/test_quick.py::test_a": 0.01,
        "tests/test_quick.py::TestQ::test_q[a/b]": 0.02,
        "tests/test_quick.py::TestQuick::test_r": 0.04,
        **{f"tests/slow/test_big.py::test_{n}": 0.5 for n in range(100)},
    }

    def decided(*args: str) -> Decision:
        return suite_decision("auto", durations=recorded, project=tmp_path, pytest_args=args,
                              cores=2)  # fmt: skip

    assert decided().workers == "2"  # nothing named: the whole suite, 50 s
    quick = decided("tests/test_quick.py", "-p", "no:randomly")
    assert quick.workers == "0"
    assert "3 recorded test durations of the tests named: about 0.07 s" in quick.reason
    assert "2 recorded test durations of the tests named: about 0.03 s" in (
        decided("tests/test_quick.py::TestQ", "tests/test_quick.py::test_a").reason
    )  # a class's tests and parameters, not TestQuick's
    assert "1 recorded test duration of the tests named" in (
        decided("tests/test_quick.py::TestQuick::test_r").reason
    )
    assert decided("tests/slow", "-k", "test_1").workers == "2"  # -k selects at collection
    assert decided("tests", "tests/nowhere.py").workers == "2"
    everything = decided(".")
    assert "103 recorded test durations: about" in everything.reason  # all of them: not "named"
    new = write(tmp_path / "tests" / "test_new.py", "def test_n(): pass\n")
    assert "1 test counted in the test files, no recorded durations" in (
        decided(str(new.relative_to(tmp_path))).reason
    )  # named tests without a record are counted
    assert decided(str(tmp_path.parent)).workers == "2"  # outside the project: names none


def test_without_durations_the_test_functions_are_counted(tmp_path: Path) -> None:
    found = suite_decision("auto", durations={}, project=tmp_path, pytest_args=(), cores=2)
    assert found.workers == "0"
    assert found.reason.startswith(
        "no xdist: 0 tests counted in the test files, no recorded durations"
    )
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_big.py").write_text("def test_x():\n    pass\n" * 4000, "utf-8")
    (tests / "test_more.py").write_text("def test_x():\n    pass\n" * 4000, "utf-8")
    found = suite_decision("auto", durations={}, project=tmp_path, pytest_args=(), cores=2)
    assert found.workers == "2"
    # the count ends at the first file past the 1,200 tests that make xdist surely worth it
    assert "at least 4000 tests counted in the test files, no recorded durations, 10 ms each" in (
        found.reason
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


PARAMETRIZED = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("m", ("a", "b"))
def test_grid(n, m):
    pass

@pytest.mark.parametrize(argnames="n", argvalues=[1, 2])
async def test_keywords(n):
    pass

@pytest.mark.parametrize("n", range(10))
def test_computed(n):
    pass

@pytest.fixture
def test_looking_fixture():
    pass

class TestGroup:
    @pytest.mark.parametrize("n", [1, 2])
    def test_method(self, n):
        pass

    def test_plain(self):
        pass

class Helper:
    def test_not_collected(self):
        pass

def helper():
    pass
"""


def test_counting_follows_parametrize_classes_and_files_pytest_collects(tmp_path: Path) -> None:
    write(tmp_path / "tests" / "test_grid.py", PARAMETRIZED)
    write(tmp_path / "tests" / "sub" / "logic_test.py", "def test_a():\n    pass\n")
    write(tmp_path / "tests" / "helpers.py", "def test_not_a_test_file():\n    pass\n")
    write(tmp_path / ".venv" / "test_theirs.py", "def test_a():\n    pass\n")
    write(tmp_path / "node_modules" / "test_js.py", "def test_a():\n    pass\n")
    write(tmp_path / "tests" / "test_broken.py", "@pytest.mark.parametrize(\ndef test_a(:\n")
    (tmp_path / "tests" / "test_dangling.py").symlink_to(tmp_path / "nowhere.py")
    # test_grid: 6 + 2 + 2 (a range is not read) + 1 (the fixture, by its name) + 2 + 1;
    # then the broken file's one def (by the text alone) and logic_test's.
    assert count_tests(tmp_path, ()) == 14 + 1 + 1
    assert count_tests(tmp_path, ("tests/sub", "-k", "x")) == 1
    assert count_tests(tmp_path, ("tests/sub/logic_test.py::test_a",)) == 1
    assert count_tests(tmp_path, (), enough=3) == 15  # test_grid, the second file, reached it


def test_counting_starts_at_the_configured_testpaths(tmp_path: Path) -> None:
    write(tmp_path / "tests" / "test_a.py", "def test_a():\n    pass\n")
    write(tmp_path / "other" / "test_b.py", "def test_b():\n    pass\n" * 2)
    write(tmp_path / "more" / "test_c.py", "def test_c():\n    pass\n" * 4)
    write(tmp_path / "pyproject.toml", '[tool.pytest.ini_options]\ntestpaths = ["other"]\n')
    assert count_tests(tmp_path, ()) == 2
    write(tmp_path / "pyproject.toml", '[tool.pytest]\ntestpaths = "other more"\n')
    assert count_tests(tmp_path, ()) == 6
    write(tmp_path / "pyproject.toml", "[tool.pytest]\ntestpaths = 3\n")
    assert count_tests(tmp_path, ()) == 7
    write(tmp_path / "pyproject.toml", "[tool]\npytest = 3\n")
    assert count_tests(tmp_path, ()) == 7
    write(tmp_path / "pyproject.toml", "not toml [")
    write(tmp_path / "pytest.ini", "[pytest]\naddopts = -q\ntestpaths = tests\n    more\nx = 1\n")
    assert count_tests(tmp_path, ()) == 5
    write(tmp_path / "pytest.ini", "[pytest]\naddopts = -q\n")
    assert count_tests(tmp_path, ()) == 7


def failure(message: str | None, *, phase: str = "setup") -> Attempt:
    return Attempt(outcome="error", duration_s=2.4, message=message, phase=phase)  # type: ignore[arg-type]


def test_failures_of_one_cause_or_beyond_the_budget_are_not_rerun() -> None:
    missing = [failure('database "app" does not exist\nmore') for _ in range(5)]
    said = stop_reason(missing, suite=60, limit=None)
    assert said == (
        'not rerun: all 5 failures share one cause (setup: database "app" does not exist); '
        "a broken environment, which reruns would only repeat"
    )
    assert stop_reason(missing[:4], suite=60, limit=None) is None  # may be flaky alone
    mixed = [*missing[:4], failure('database "app" does not exist', phase="call")]
    assert stop_reason(mixed, suite=60, limit=None) is None
    assert stop_reason([failure(None)] * 5, suite=5, limit=None) == (
        "not rerun: all 5 failures share one cause (setup: (no message)); "
        "a broken environment, which reruns would only repeat"
    )
    long = stop_reason([failure("x" * 500)] * 5, suite=5, limit=None)
    assert long is not None
    assert "x" * 192 + "…)" in long
    various = [failure(f"assert {n} == 0") for n in range(3)]
    assert stop_reason(various, suite=10, limit="2") == (
        "not rerun: 3 tests failed, more than max-reruns allows (at most 2); "
        "the run looks broken as a whole, not flaky"
    )
    assert stop_reason(various, suite=10, limit="25.0%") == (
        "not rerun: 3 tests failed, more than max-reruns allows (at most 25 % of 10 tests); "
        "the run looks broken as a whole, not flaky"
    )
    assert stop_reason(various, suite=10, limit="30.0%") is None
    assert stop_reason(various, suite=10, limit="3") is None
