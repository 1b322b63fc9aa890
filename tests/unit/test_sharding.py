"""Planning matrix shards from recorded durations, and naming variants (pure functions).

The real shard runs and ``testgate merge`` are in tests/integration/test_shards_merge.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import InfraError
from runner.merge import Part, check_variants, merged_environment
from runner.plugin._testgate_schedule import into_queues, queue_sizes
from runner.report import write_durations
from runner.results import ENCODE_BATCH, Attempt, RunInfo, RunResult, TestResult, variant_name
from runner.sharding import partition, read_durations, weights


def test_longest_processing_time_first_balances_and_is_deterministic() -> None:
    durations = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 2.0, "g": 1.0}
    parts = partition(list(durations), durations, 2)
    assert parts == [["a", "d", "f"], ["b", "c", "e", "g"]]
    assert [sum(durations[t] for t in part) for part in parts] == [10.0, 10.0]
    assert partition(list(reversed(durations)), durations, 2) == parts  # input order is irrelevant
    assert sorted(t for part in partition(list(durations), durations, 3) for t in part) == sorted(
        durations
    )


def test_tests_without_a_record_count_as_the_median() -> None:
    parts = partition(["new", "a", "b", "c"], {"a": 1.0, "b": 2.0, "c": 9.0}, 2)
    assert parts == [["c"], ["b", "new", "a"]]  # 'new' weighs 2.0, the median
    even = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 9.0}
    assert weights(["new", *even], even)["new"] == 3.0  # an even record: between 2 and 4
    assert partition(["x", "y", "z"], {}, 2) == [["x", "z"], ["y"]]  # no record: by count
    weighted = {"x": 9.0, "y": 1.0, "z": 1.0, "w": 1.0}
    assert partition(["x", "y", "z", "w"], weighted, 2) == [["x"], ["w", "y", "z"]]
    assert partition(["x", "y", "z", "w"], weighted, 2, capacity=2) == [["x", "z"], ["w", "y"]]


def test_worksteals_first_queues_are_as_long_as_xdist_cuts_them() -> None:
    assert queue_sizes(120, 2) == [60, 60]
    assert queue_sizes(7, 3) == [2, 2, 3]  # each remaining // workers left, as xdist's


def test_skewed_suite_gives_each_first_queue_half_the_work_longest_first() -> None:
    # P2's skewed suite: 100 tests of 0.06 s, then 20 of 0.01-2.49 s (18 s), collected
    # last and ascending. Each worker's chunk must hold 60 tests and about 12 s, so no
    # worker starts on short work while the other holds all the long.
    long = [0.01 + 2.48 * ((n + 1) / 20) ** 1.77 for n in range(20)]
    seconds = {f"m{n // 20}::t{n % 20:02d}": 0.06 for n in range(100)}
    seconds |= {f"m5::t{n:02d}": value for n, value in enumerate(long)}
    queues = into_queues({key: (1, value) for key, value in seconds.items()}, 2)
    assert [len(queue) for queue in queues] == [60, 60]
    loads = [sum(seconds[key] for key in queue) for queue in queues]
    assert abs(loads[0] - loads[1]) < 0.1
    assert {queue[0] for queue in queues} == {"m5::t19", "m5::t18"}
    for queue in queues:  # longest first: what a steal takes from the tail is short
        assert [seconds[key] for key in queue] == sorted((seconds[k] for k in queue), reverse=True)


def test_fixture_groups_go_whole_into_the_queue_with_room_for_them() -> None:
    # Four modules of six tests sharing a module fixture: two whole modules a queue.
    units = {f"m{n}": (6, 1.9 + n / 100) for n in range(4)}
    assert into_queues(units, 2) == [["m3", "m0"], ["m2", "m1"]]


def test_a_durations_record_that_cannot_be_used_is_ignored_with_a_warning(tmp_path: Path) -> None:
    assert read_durations(tmp_path / "absent.json") == ({}, None)
    broken = tmp_path / "durations.json"
    broken.write_text("[1, 2]", "utf-8")
    assert read_durations(broken) == (
        {},
        f"ignored {broken}: not an object of test ids and seconds; "
        "tests are planned without durations",
    )


def test_durations_json_holds_each_test_once_at_its_longest(tmp_path: Path) -> None:
    def test(test_id: str, seconds: float, *, variant: str | None = None) -> TestResult:
        attempt = Attempt(outcome="passed", duration_s=seconds)
        return TestResult(id=test_id, file="t.py", line=1, outcome="passed", attempts=(attempt,),
                          variant=variant)  # fmt: skip

    path = tmp_path / "durations.json"
    write_durations((test("t.py::é", 0.25), test("t.py::b", 5e-05)), path)
    assert path.read_text("utf-8") == '{\n "t.py::é": 0.25,\n "t.py::b": 5e-05\n}\n'
    # merged variants: a test's longest time; a time below 0 (a clock that stepped back) is 0
    merged = (test("t.py::a", 1.5, variant="x"), test("t.py::a", 2.0, variant="y"))
    write_durations((*merged, test("t.py::late", -0.5)), path)
    assert read_durations(path) == ({"t.py::a": 2.0, "t.py::late": 0.0}, None)
    write_durations((test("t.py::late", -0.5),), path)
    assert read_durations(path) == ({"t.py::late": 0.0}, None)
    write_durations((), path)
    assert path.read_text("utf-8") == "{}\n"


def test_durations_json_writes_each_time_as_python_does(tmp_path: Path) -> None:
    def test(test_id: str, seconds: float) -> TestResult:
        attempt = Attempt(outcome="passed", duration_s=seconds)
        return TestResult(id=test_id, file="t.py", line=1, outcome="passed", attempts=(attempt,))

    path = tmp_path / "durations.json"
    times = (0.0001, 1.5e-05, 1234567.25, 1e16, 0.0, 2.0000004)
    write_durations(tuple(test(f't.py::t[{n}"\n]', s) for n, s in enumerate(times)), path)
    assert path.read_text("utf-8") == (
        '{\n "t.py::t[0\\"\\n]": 0.0001,\n "t.py::t[1\\"\\n]": 1.5e-05,\n'
        ' "t.py::t[2\\"\\n]": 1234567.25,\n "t.py::t[3\\"\\n]": 1e+16,\n'
        ' "t.py::t[4\\"\\n]": 0.0,\n "t.py::t[5\\"\\n]": 2.0\n}\n'
    )
    assert read_durations(path)[0]['t.py::t[1"\n]'] == 1.5e-05
    # as json.dumps writes it, a run of any size (written a few thousand tests at a time)
    many = {
        f"t.py::t[{n}-é]": round(n / 7 if n % 3 else n * 1e-06, 6)
        for n in range(ENCODE_BATCH * 2 + 1)
    }
    write_durations(tuple(test(test_id, s) for test_id, s in many.items()), path)
    assert path.read_text("utf-8") == json.dumps(many, indent=1, ensure_ascii=False) + "\n"
    # a time that is no JSON number is written as it always was
    write_durations((test("t.py::a", 1.0), test("t.py::b", float("inf"))), path)
    assert path.read_text("utf-8") == '{\n "t.py::a": 1.0,\n "t.py::b": inf\n}\n'


def test_more_variants_than_expected_are_refused(tmp_path: Path) -> None:
    def part(variant: str) -> Part:
        info = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit=None,
                       python=None, platform=None, variant=variant)  # fmt: skip
        return Part(tmp_path / variant, RunResult(run=info, tests=(), coverage=None, gates=()))

    with pytest.raises(InfraError, match=r"expected 1 variants, got 2 \(a, b\): more than"):
        check_variants([part("a"), part("b")], expect=1)


def test_a_variant_is_python_major_minor_and_the_os() -> None:
    assert variant_name(python="3.11.7", platform="linux") == "py3.11-linux"
    assert variant_name(python="3.13.0rc1", platform="darwin") == "py3.13-macos"
    assert variant_name(python="3.12.1", platform="win32") == "py3.12-windows"
    assert variant_name(python="3.12.1", platform="freebsd14") == "py3.12-freebsd14"


def test_a_merged_run_has_one_fingerprint_of_its_parts_environments() -> None:
    """The history compares merged runs by it: the same parts' environments give the same
    one, in any order and shard count; a part without one (older, junit.xml) gives none."""

    def run(environment: str | None) -> RunInfo:
        return RunInfo(started="", duration_s=0, suite_duration_s=0, environment=environment)

    both = merged_environment([run("a"), run("b")])
    assert both is not None
    assert merged_environment([run("b"), run("a"), run("b")]) == both
    assert merged_environment([run("a"), run("c")]) != both
    assert merged_environment([run("a"), run(None)]) is None
