"""The injected plugin, run inside a real pytest session (pytester, in this process)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import xdist.workermanage

from runner.execute import (
    PLUGIN_DIR,
    PLUGIN_NAME,
    RECORD_ENV,
    SCHEDULE_ENV,
    SELECT_ENV,
    TIMEOUTS_ENV,
    WORKERS_ENV,
)
from tests.conftest import fresh_plugin

SUITE = """
import os
import pytest

def helper():
    raise ValueError("deep")

def test_ok():
    print("quiet")

def test_assert():
    print("shown on failure")
    assert 1 == 2

def test_helper():
    helper()

def test_surrogate():
    assert "\\udc80" == "x"

@pytest.mark.skip(reason="later")
def test_skip():
    pass

@pytest.fixture
def breaks_late():
    yield
    raise RuntimeError("late")

def test_teardown(breaks_late):
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0
"""


def records(pytester: pytest.Pytester, *args: str, env: bool = True) -> list[dict[str, Any]]:
    path = pytester.path / "record.jsonl"
    path.unlink(missing_ok=True)
    pytester.syspathinsert(PLUGIN_DIR)
    with pytest.MonkeyPatch.context() as patch:
        # xdist gives popen workers the controller's sys.path as it was when xdist was
        # imported; in a real run PYTHONPATH put the plugin there at interpreter start.
        patch.setattr(xdist.workermanage, "_sys_path", [str(PLUGIN_DIR), *sys.path])
        if env:
            patch.setenv(RECORD_ENV, str(path))
        # A KeyboardInterrupt a test raises ends that session, not this one.
        pytester.runpytest_inprocess(
            "-p", PLUGIN_NAME, "-p", "no:cacheprovider", *args, no_reraise_ctrlc=True
        )
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def calls(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        item["id"].split("::")[-1]: item
        for item in found
        if (
            item["kind"] == "report"
            and item["when"] in ("call", "setup")
            and item["outcome"] != "passed"
        )
        or (item["kind"] == "report" and item["when"] == "call")
    }


def test_records_lines_messages_and_output_of_failures(pytester: pytest.Pytester) -> None:
    source = pytester.makepyfile(test_suite=SUITE)
    found = records(pytester)
    lines = source.read_text("utf-8").splitlines()
    by_name = calls(found)
    assert by_name["test_assert"]["line"] == lines.index("    assert 1 == 2") + 1
    assert by_name["test_assert"]["message"] == "AssertionError: assert 1 == 2"
    assert by_name["test_assert"]["stdout"] == "shown on failure\n"
    assert by_name["test_helper"]["line"] == lines.index('    raise ValueError("deep")') + 1
    assert by_name["test_skip"]["message"] == "later"
    assert (by_name["test_xfail"]["outcome"], by_name["test_xfail"]["wasxfail"]) == (
        "skipped",
        "known bug",
    )
    assert "\\udc80" in by_name["test_surrogate"]["message"]
    assert "stdout" not in by_name["test_ok"]
    teardown = [
        r
        for r in found
        if r["kind"] == "report" and r["when"] == "teardown" and r["outcome"] == "failed"
    ]
    assert [r["message"] for r in teardown] == ["RuntimeError: late"]
    kinds = [item["kind"] for item in found]
    assert kinds[0] == "start"
    assert kinds[-1] == "finish"
    collected = {k: v for k, v in found[1].items() if k != "seq"}
    assert collected == {"kind": "collected", "count": 7, "ids": collected["ids"]}
    assert collected["ids"][:2] == ["test_suite.py::test_ok", "test_suite.py::test_assert"]
    assert [item["seq"] for item in found] == list(range(1, len(found) + 1))


DOCTESTS = '''
def add(a, b):
    """Add.

    >>> add(1, 1)
    2
    >>> add(2, 2)
    5
    """
    return a + b


def boom():
    """
    >>> boom()
    """
    raise ValueError("nope")
'''


@pytest.mark.parametrize("continued", [False, True], ids=["first failure", "continue-on-failure"])
def test_a_failed_doctest_points_at_its_example_and_says_what_it_got(
    pytester: pytest.Pytester, continued: bool
) -> None:
    """Where pytest's own report points (``mod.py:6: DocTestFailure``), not the docstring's
    first line, and the example's verdict, not ``DocTestFailure: <DocTest mod.add …>``."""
    source = pytester.makepyfile(mod=DOCTESTS)
    lines = source.read_text("utf-8").splitlines()
    more = ["--doctest-continue-on-failure"] if continued else []
    by_name = calls(records(pytester, "--doctest-modules", *more))
    assert (by_name["mod.add"]["line"], by_name["mod.add"]["message"]) == (
        lines.index("    >>> add(2, 2)") + 1, "add(2, 2): expected 5, got 4",
    )  # fmt: skip
    assert (by_name["mod.boom"]["line"], by_name["mod.boom"]["message"]) == (
        lines.index("    >>> boom()") + 1, "boom(): ValueError: nope",
    )  # fmt: skip
    assert "Expected:\n    5\nGot:\n    4" in by_name["mod.add"]["text"]  # pytest's own text


def test_without_the_variable_nothing_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite="def test_ok():\n    pass\n")
    assert records(pytester, env=False) == []


RAISES_AT_FINISH = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    raise AttributeError("'Config' object has no attribute 'cache'")
"""


def test_an_exception_that_escapes_pytest_is_recorded_with_where_it_was_raised(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest prints no INTERNALERROR for an exception a plugin's sessionfinish raises: the
    process ends through sys.excepthook, which the plugin leaves in place until the session
    has finished, and which records the exception before Python prints it."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after this test
    before = sys.excepthook
    pytester.makeconftest(RAISES_AT_FINISH)
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    path = pytester.path / "record.jsonl"
    pytester.syspathinsert(PLUGIN_DIR)
    monkeypatch.setenv(RECORD_ENV, str(path))
    with pytest.raises(AttributeError) as raised:
        pytester.inline_run("-p", PLUGIN_NAME, "-p", "no:cacheprovider")
    assert sys.excepthook is not before  # Python calls it as the exception ends the process
    sys.excepthook(raised.type, raised.value, raised.tb)
    with pytest.raises(pytest.fail.Exception) as failed:  # raised in site-packages
        pytest.fail("from pytest itself")
    sys.excepthook(failed.type, failed.value, failed.tb)
    found = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert all(item["kind"] != "finish" for item in found)
    first, second = [item for item in found if item["kind"] == "uncaught"]
    assert first["message"] == "AttributeError: 'Config' object has no attribute 'cache'"
    assert first["where"] == "conftest.py:5 in pytest_sessionfinish"
    assert "Traceback (most recent call last)" in first["text"]
    assert second["where"].startswith("_pytest/outcomes.py:")


RAISES_AFTER_FINISH = """
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish():
    yield  # the recorder's (trylast) has run: the session is recorded as finished
    raise OSError(9, "Bad file descriptor")
"""


def test_an_exception_raised_after_the_recorded_finish_is_recorded_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sessionfinish that raises after the recorder's (the terminal's, writing to an
    output a test closed) ends pytest as well: the plugin put Python's hook back at
    unconfigure, as the session had finished, and the exception went unrecorded."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after this test
    pytester.makeconftest(RAISES_AFTER_FINISH)
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    path = pytester.path / "record.jsonl"
    pytester.syspathinsert(PLUGIN_DIR)
    monkeypatch.setenv(RECORD_ENV, str(path))
    with pytest.raises(OSError, match="Bad file descriptor") as raised:
        pytester.inline_run("-p", PLUGIN_NAME, "-p", "no:cacheprovider")
    sys.excepthook(raised.type, raised.value, raised.tb)
    found = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [item["kind"] for item in found][-2:] == ["finish", "uncaught"]
    assert found[-1]["message"] == "OSError: [Errno 9] Bad file descriptor"


CRASH_HANDLER_SUITE = """
import sys

def test_crash_handler_prints(capsys):
    try:
        raise RuntimeError("reported by the crash handler")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert "RuntimeError: reported by the crash handler" in capsys.readouterr().err

def test_after():
    pass
"""


def test_a_test_that_calls_sys_excepthook_itself_is_only_a_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash handler's test calls ``sys.excepthook``: inside the session that is never
    an exception escaping pytest. Before, the plugin recorded it as one and closed its
    record, so every later write was an INTERNALERROR (a serial run of such a suite
    ended exit 3 with its other tests never run)."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after this test
    pytester.makepyfile(test_hook=CRASH_HANDLER_SUITE)
    found = records(pytester)
    assert [item["kind"] for item in found if item["kind"] in ("uncaught", "finish")] == ["finish"]
    assert {name: item["outcome"] for name, item in calls(found).items()} == {
        "test_crash_handler_prints": "passed", "test_after": "passed",
    }  # fmt: skip


def test_collection_and_internal_errors_are_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken="import missing_module_xyz\n")
    found = records(pytester)
    (error,) = [item for item in found if item["kind"] == "collect-error"]
    assert error["id"] == "test_broken.py"
    # pytest's "E   " marker is layout: the message starts with the exception
    assert error["message"].startswith("ModuleNotFoundError: No module named")
    pytester.makeconftest(
        "def pytest_collection_modifyitems(items):\n    raise RuntimeError('plugin bug')\n"
    )
    found = records(pytester, "--continue-on-collection-errors")
    (internal,) = [item for item in found if item["kind"] == "internal-error"]
    assert "RuntimeError: plugin bug" in internal["text"]
    assert found[-1]["exitstatus"] == 3


def test_long_text_is_cut_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_long="def test_long():\n    assert 'x' * 100000 == ''\n")
    (call,) = [item for item in records(pytester, "-vv") if item.get("when") == "call"]
    assert len(call["text"]) < 70 * 1024
    assert call["text"].endswith("characters cut by testgate]")


def test_under_xdist_the_controller_records_every_worker(pytester: pytest.Pytester) -> None:
    """The project's own ``-n 2`` (in addopts) spreads the tests over two workers, whose
    records the controller writes; test_the_workers_testgate_decided_* turns it off."""
    pytester.makeini("[pytest]\naddopts = -n 2 --deselect test_many.py::test_n[5]\n")
    pytester.makepyfile(
        test_many="import pytest\n@pytest.mark.parametrize('n', range(6))\n"
        "def test_n(n):\n    assert n != 3\n",
        test_unwanted="def test_never():\n    pass\n",
    )
    # The workers get the selection from the controller, not from the environment.
    selection = pytester.path / "select.json"
    wanted = {"ids": ["test_many.py"], "ordered": False, "prefixes": True}
    selection.write_text(json.dumps(wanted), "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SELECT_ENV, str(selection))
        found = records(pytester)
    collected = [item for item in found if item["kind"] == "collected"]
    assert sorted(item["worker"] for item in collected) == ["gw0", "gw1"]
    assert all(item["count"] == 5 for item in collected)
    # each worker names the one test the project deselected; testgate's selection, which
    # set test_unwanted.py aside, is not the project's
    assert [item["count"] for item in found if item["kind"] == "deselected"] == [1, 1]
    (failed,) = [item for item in found if item.get("outcome") == "failed"]
    assert (failed["id"], failed["line"]) == ("test_many.py::test_n[3]", 4)
    workers = {item["worker"] for item in found if item["kind"] == "report"}
    assert workers == {"gw0", "gw1"}


def test_the_workers_testgate_decided_win_over_an_n_in_addopts(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -n 2\n")
    pytester.makepyfile(test_w="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    # that the project's own -n spreads them over workers without the variable:
    # test_under_xdist_the_controller_records_every_worker (the same addopts)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WORKERS_ENV, "0")
        found = records(pytester)
        assert WORKERS_ENV not in os.environ  # taken: no pytest a test starts sees it
    assert {item.get("worker") for item in found if item["kind"] == "report"} == {None}


def imports_of(name: str) -> set[str]:
    source = (Path(PLUGIN_DIR) / f"{name}.py").read_text("utf-8")
    return {
        line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))
    }


def test_the_plugin_needs_only_the_standard_library_and_pytest() -> None:
    assert imports_of(PLUGIN_NAME) == {
        "__future__", "json", "os", "sys", "traceback", "collections.abc", "pathlib", "typing",
        "pytest", "_testgate_schedule", "_testgate_wire", "_testgate_timeouts",
    }  # fmt: skip
    for sibling in ("_testgate_schedule", "_testgate_wire"):
        assert imports_of(sibling) <= set(sys.stdlib_module_names) | {
            "__future__",
            "collections.abc",
        }
    assert imports_of("_testgate_timeouts") <= set(sys.stdlib_module_names) | {
        "__future__",
        "collections.abc",
        "pytest",
    }


def test_the_wire_protocol_is_written_down_once_for_both_sides() -> None:
    """The plugin and the runner name the variables and record kinds from one module."""
    from runner import child_env, record  # noqa: PLC0415
    from runner.plugin import _testgate_wire as wire  # noqa: PLC0415

    plugin = (Path(PLUGIN_DIR) / f"{PLUGIN_NAME}.py").read_text("utf-8")
    code = [line for line in plugin.splitlines() if '"""' not in line and "``" not in line]
    assert not [line for line in code if '"TESTGATE_' in line or '"kind": "' in line]
    assert 'kind == "' not in Path(record.__file__).read_text("utf-8")
    variables = {value for name, value in vars(wire).items() if name.endswith("_ENV")}
    elsewhere = [
        (path.name, value)
        for path in Path(child_env.__file__).parent.rglob("*.py")
        if path.name != "_testgate_wire.py"
        for value in variables
        if f'"{value}"' in path.read_text("utf-8")
    ]
    assert elsewhere == []
    written = {name.split('"kind": ')[1].split(",")[0].rstrip("}) ") for name in code
               if '"kind": ' in name}  # fmt: skip
    assert {getattr(wire, name) for name in written} == set(wire.FIELDS)
    assert set(wire.ATTEMPT_VARIABLES) <= child_env.LEAKY_NAMES


def test_a_test_imported_from_another_module_gets_no_foreign_def_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        helpers="\n\n\ndef test_shared():\n    assert False\n",
        test_uses="from helpers import test_shared\n\n\ndef test_own():\n    pass\n",
    )
    found = records(pytester, "test_uses.py")
    lines = {item["id"]: item["def_line"] for item in found if item.get("when") == "call"}
    assert lines == {"test_uses.py::test_shared": None, "test_uses.py::test_own": 4}
    (failure,) = [item for item in found if item.get("outcome") == "failed"]
    assert failure["line"] is None  # the failing frame is in helpers.py, not the test file


def select(
    pytester: pytest.Pytester, ids: list[str], *, ordered: bool, prefixes: bool = False
) -> list[str]:
    """Run with a selection file; return the ids of the tests that ran, in order."""
    selection = pytester.path / "select.json"
    wanted = {"ids": ids, "ordered": ordered, "prefixes": prefixes}
    selection.write_text(json.dumps(wanted), "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SELECT_ENV, str(selection))
        found = records(pytester)
    return [item["id"] for item in found if item.get("when") == "call"]


def test_a_selection_runs_only_its_tests_in_the_order_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="def test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n",
        test_broken="this is not python\n",
    )
    wanted = ["test_one.py::test_c", "test_one.py::test_a"]
    assert select(pytester, wanted, ordered=True) == wanted  # test_broken.py is never imported
    assert select(pytester, wanted, ordered=False) == ["test_one.py::test_a", "test_one.py::test_c"]
    everything = ["test_one.py::test_a", "test_one.py::test_b", "test_one.py::test_c"]
    assert select(pytester, everything, ordered=False) == everything


def test_tests_the_project_deselects_are_counted_and_testgates_own_are_not(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        "def pytest_collection_modifyitems(config, items):\n"
        "    dropped = [item for item in items if item.name == 'test_dropped']\n"
        "    items[:] = [item for item in items if item not in dropped]\n"
        "    config.hook.pytest_deselected(items=dropped)\n"
    )
    pytester.makepyfile(
        test_d="import pytest\n\ndef test_kept():\n    pass\n\ndef test_dropped():\n    pass\n"
        "\n@pytest.mark.slow\ndef test_slow():\n    pass\n\ndef test_not_chosen():\n    pass\n"
    )
    pytester.makeini("[pytest]\nmarkers = slow\naddopts = -m 'not slow'\n")
    assert select(pytester, ["test_d.py::test_kept"], ordered=False) == ["test_d.py::test_kept"]
    found = [json.loads(line) for line in (pytester.path / "record.jsonl").read_text().splitlines()]
    assert [item["count"] for item in found if item["kind"] == "deselected"] == [2]


def test_a_selection_entry_may_name_a_directory_module_or_class(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        **{
            "sub/test_deep": "def test_x():\n    pass\n",
            "test_top": "class TestK:\n    def test_y(self):\n        pass\n\n"
            "def test_z():\n    pass\n",
        }
    )
    entries = ["test_top.py::TestK", "sub"]
    ran = select(pytester, entries, ordered=True, prefixes=True)
    assert ran == ["test_top.py::TestK::test_y", "sub/test_deep.py::test_x"]
    assert select(pytester, entries, ordered=True) == []  # without prefixes: exact ids only


def test_rounds_repeat_each_test_in_each_rounds_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_r="import pytest\n\ndef test_a():\n    pass\n\n"
        "@pytest.mark.parametrize('n', [1])\ndef test_b(n):\n    pass\n"
    )
    selection = pytester.path / "select.json"
    order = ["test_r.py::test_a", "test_r.py::test_b[1]"]
    wanted = {"ids": order, "ordered": True, "rounds": [order, order[::-1]]}
    selection.write_text(json.dumps(wanted), "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SELECT_ENV, str(selection))
        found = records(pytester)
    calls = [
        (item["id"], item["test"], item["round"]) for item in found if item.get("when") == "call"
    ]
    assert calls == [
        ("test_r.py::test_a[testgate-round-0]", "test_r.py::test_a", 0),
        ("test_r.py::test_b[1-testgate-round-0]", "test_r.py::test_b[1]", 0),
        ("test_r.py::test_b[1-testgate-round-1]", "test_r.py::test_b[1]", 1),
        ("test_r.py::test_a[testgate-round-1]", "test_r.py::test_a", 1),
    ]


def test_a_schedule_puts_the_longest_work_first_keeping_fixture_groups(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_free="def test_short():\n    pass\n\ndef test_long():\n    pass\n",
        test_grouped="import pytest\n\n@pytest.fixture(scope='module')\ndef shared():\n"
        "    return 1\n\ndef test_g1(shared):\n    pass\n\ndef test_g2(shared):\n    pass\n",
        test_klass="import pytest\n\nclass TestK:\n    @pytest.fixture(scope='class')\n"
        "    def state(self):\n        return 1\n\n    def test_k1(self, state):\n        pass\n\n"
        "    def test_k2(self, state):\n        pass\n",
    )
    durations = {
        "test_free.py::test_short": 0.1,
        "test_free.py::test_long": 5.0,
        "test_grouped.py::test_g1": 2.0,
        "test_grouped.py::test_g2": 2.0,
        "test_klass.py::TestK::test_k1": 0.5,
        "test_klass.py::TestK::test_k2": 3.0,
    }
    ran = scheduled(pytester, {"durations": durations, "order": True})
    assert ran == [
        "test_free.py::test_long",  # 5.0
        "test_grouped.py::test_g1",  # the module's group: 4.0 together
        "test_grouped.py::test_g2",
        "test_klass.py::TestK::test_k1",  # the class's group: 3.5, in pytest's own order
        "test_klass.py::TestK::test_k2",
        "test_free.py::test_short",
    ]
    # Without grouping (what the benchmark compares against): strictly by duration.
    assert scheduled(pytester, {"durations": durations, "order": True, "group": False}) == [
        "test_free.py::test_long",
        "test_klass.py::TestK::test_k2",
        "test_grouped.py::test_g1",
        "test_grouped.py::test_g2",
        "test_klass.py::TestK::test_k1",
        "test_free.py::test_short",
    ]


def test_worksteal_first_queues_each_start_on_long_work(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(PLUGIN_DIR)
    plugin = importlib.import_module(PLUGIN_NAME)
    seconds = {"a": 8.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0, "f": 1.0}
    items = pytester.getitems("".join(f"def test_{name}():\n    pass\n" for name in seconds))
    durations = {item.nodeid: seconds[item.name.removeprefix("test_")] for item in items}
    ordered = [item.name for item in plugin.longest_first(items, durations, queues=2)]
    # worksteal hands worker 1 the first three tests and worker 2 the last three: each
    # chunk starts with its longest test and holds about half the work (12 s and 10 s),
    # where plain longest-first would have given one worker 17 s and the other 5 s.
    assert ordered == ["test_a", "test_d", "test_f", "test_b", "test_c", "test_e"]
    assert plugin.longest_first(items, durations, queues=1)[0].name == "test_a"


def test_under_worksteal_each_worker_starts_on_its_own_long_work(
    pytester: pytest.Pytester,
) -> None:
    # xdist sets a worker's dist option to "no" before it collects, so only the
    # controller knows worksteal will cut the collection into one chunk per worker.
    seconds = {"a": 8.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0, "f": 1.0}
    pytester.makepyfile(test_w="".join(f"def test_{name}():\n    pass\n" for name in seconds))
    durations = {f"test_w.py::test_{name}": value for name, value in seconds.items()}
    path = pytester.path / "schedule.json"
    path.write_text(json.dumps({"durations": durations, "order": True}), "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SCHEDULE_ENV, str(path))
        found = records(pytester, "-n", "2", "--dist", "worksteal")
    first: dict[str, str] = {}
    for item in found:
        if item["kind"] == "report" and item["when"] == "call":
            first.setdefault(item["worker"], item["id"])
    # A worker runs its chunk from the head (a steal takes only the tail): the two
    # longest tests start at once, where one longest-first order for both chunks would
    # have started the 8 s test beside the 3 s one.
    assert sorted(first.values()) == ["test_w.py::test_a", "test_w.py::test_b"]


def test_only_worksteal_cuts_first_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = fresh_plugin(monkeypatch, "_testgate_plugin_queues")
    assert plugin.first_queues(dist="worksteal", workers=3) == 3
    assert plugin.first_queues(dist="load", workers=3) == 1  # hands tests out in rounds


def scheduled(pytester: pytest.Pytester, schedule: dict[str, Any]) -> list[str]:
    """Run with a schedule file; return the ids of the tests that ran, in order."""
    path = pytester.path / "schedule.json"
    path.write_text(json.dumps(schedule), "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SCHEDULE_ENV, str(path))
        found = records(pytester)
    return [item["id"] for item in found if item.get("when") == "call"]


def test_a_schedule_keeps_only_its_shard(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_s="def test_a():\n    pass\n\ndef test_b():\n    pass\n\n"
                        "def test_c():\n    pass\n")  # fmt: skip
    durations = {"test_s.py::test_a": 3.0, "test_s.py::test_b": 2.0, "test_s.py::test_c": 2.0}
    first = scheduled(pytester, {"durations": durations, "shard": [1, 2]})
    second = scheduled(pytester, {"durations": durations, "shard": [2, 2]})
    assert (first, second) == (["test_s.py::test_a"], ["test_s.py::test_b", "test_s.py::test_c"])


def test_failure_texts_drop_xdists_worker_line_and_messages_the_error_marker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = fresh_plugin(monkeypatch, "_testgate_plugin_texts")
    text = "[gw0] linux -- Python 3.12.1 /tmp/.tmpAbc/bin/python\n\n    def test_a():\n>  x\n"
    assert plugin.report_text(text) == "    def test_a():\n>  x\n"
    assert plugin.report_text("[gw0] only one line") == "[gw0] only one line"
    assert plugin.report_text("[gw1] not xdist's\nline") == "[gw1] not xdist's\nline"
    assert plugin._last_line("x\nE   ImportError: nope\n") == "ImportError: nope"
    assert plugin._last_line("E is a letter") == "E is a letter"
    assert plugin._last_line("E   ") == "E   "
    assert plugin._last_line("") == ""


def test_pytest_warnings_and_module_skips_are_recorded(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nmarkers =\n    known: a mark\n")
    pytester.makepyfile(
        test_marks=(
            "import warnings\n\nimport pytest\n\n\n"
            "@pytest.mark.unheard_of\ndef test_a():\n"
            "    warnings.warn(UserWarning('not pytest\\'s own'))\n"
            "    warnings.warn(pytest.PytestDeprecationWarning('a deprecation'))\n\n\n"
            "@pytest.mark.unheard_of\ndef test_b():\n    pass\n"
        ),
        test_skipped="import pytest\n\npytest.importorskip('missing_module_xyz')\n",
        test_chosen="import pytest\n\npytest.skip('not here', allow_module_level=True)\n",
    )
    found = records(pytester)
    warned = [item["text"] for item in found if item["kind"] == "warning"]
    assert warned == [
        "PytestConfigWarning: Unknown config option: asyncio_mode",
        "PytestUnknownMarkWarning: Unknown pytest.mark.unheard_of - is this a typo?  You can "
        "register custom marks to avoid this warning - for details, see "
        "https://docs.pytest.org/en/stable/how-to/mark.html",
    ]  # once each, and neither the user's own warnings nor deprecations
    skips = {item["id"]: item["message"] for item in found if item["kind"] == "collect-skip"}
    assert skips["test_chosen.py"] == "not here"
    assert skips["test_skipped.py"].startswith("could not import 'missing_module_xyz'")


HANGS = """
import time
import pytest

@pytest.mark.unit
@pytest.mark.integration
def test_strictest():
    time.sleep(30)

@pytest.mark.timeout(timeout=0.2)
def test_own():
    time.sleep(30)

@pytest.mark.timeout(0)
def test_own_off():
    pass

def test_default():
    time.sleep(30)

def test_quick():
    pass
"""


def test_each_test_gets_its_strictest_limit_and_a_timeout_is_an_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_hangs=HANGS)
    plan = {"default": 0.3, "markers": {"unit": 0.2, "integration": 0.4}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TIMEOUTS_ENV, json.dumps(plan))
        found = records(pytester)
    by_name = calls(found)
    assert by_name["test_strictest"]["message"] == "timed out after 0.2 s (marker unit)"
    assert by_name["test_strictest"]["timed_out"] is True
    assert by_name["test_own"]["message"] == "timed out after 0.2 s (its own timeout marker)"
    assert by_name["test_default"]["message"] == "timed out after 0.3 s (the timeout option)"
    assert "Failed: timed out after 0.3 s (the timeout option)" in by_name["test_default"]["text"]
    assert by_name["test_quick"]["outcome"] == by_name["test_own_off"]["outcome"] == "passed"


def test_a_limit_pytest_timeout_set_by_itself_is_named_as_its_own(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_slow="import time\n\ndef test_slow():\n    time.sleep(30)\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TIMEOUTS_ENV, json.dumps({"default": 0, "markers": {}}))
        # pytest-timeout's timer starts before setup. At 0.2 s on a loaded machine its signal
        # once landed before the call, in a weakref callback, which ignores the exception it
        # raised (an "unraisable"): the test then slept its 30 s and passed. A limit well above
        # setup's time makes the signal land in the call.
        found = records(pytester, "--timeout", "1.5")
    assert calls(found)["test_slow"]["message"] == "timed out (pytest-timeout)"


def test_a_dead_worker_is_recorded_with_its_exit_code(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dies="import os\n\ndef test_before():\n    pass\n\ndef test_dies():\n    os._exit(7)\n"
    )
    found = records(pytester, "-n", "1", "-p", "no:randomly")
    (down,) = [item for item in found if item["kind"] == "worker-down"]
    assert (down["worker"], down["exit"]) == ("gw0", 7)
    (crash,) = [item for item in found if item.get("when") == "???"]
    assert (crash["id"], crash["worker"]) == ("test_dies.py::test_dies", "gw0")


def test_a_keyboard_interrupt_is_recorded_with_the_line_of_the_test_it_came_through(
    pytester: pytest.Pytester,
) -> None:
    """Raised in a test, the line of its file it came through; during collection (no test
    running) and in xdist's controller (its own ``Interrupted``), none. An xdist worker it
    ended is down on a KeyboardInterrupt, with no exit code waited for."""
    pytester.makepyfile(
        test_stops="def test_stops():\n    raise KeyboardInterrupt('mine')\n",
    )
    found = records(pytester, "-p", "no:randomly")
    (interrupt,) = [item for item in found if item["kind"] == "keyboard-interrupt"]
    assert (interrupt["message"], interrupt["line"]) == ("KeyboardInterrupt: mine", 2)
    found = records(pytester, "-n", "1", "-p", "no:randomly")
    (down,) = [item for item in found if item["kind"] == "worker-down"]
    assert down == {"kind": "worker-down", "worker": "gw0", "interrupted": True, "seq": down["seq"]}
    (interrupt,) = [item for item in found if item["kind"] == "keyboard-interrupt"]
    assert interrupt["line"] is None
    pytester.makepyfile(test_stops="raise KeyboardInterrupt('collecting')\n")
    (interrupt,) = [item for item in records(pytester) if item["kind"] == "keyboard-interrupt"]
    assert (interrupt["message"], interrupt["line"]) == ("KeyboardInterrupt: collecting", None)
    pytester.makepyfile(test_stops="import pytest\n\ndef test_exits():\n    pytest.exit('done')\n")
    assert [item for item in records(pytester) if item["kind"] == "keyboard-interrupt"] == []


UNSENDABLE = r"""
import pathlib
import warnings

import pytest

class Unprintable:
    def __str__(self):
        raise RuntimeError("no text")

def test_properties(record_property):
    record_property("path", pathlib.Path("data") / "in.csv")
    record_property("nested", {"a": [1, (2.5, b"x", None, True)], "b": {frozenset({1})}})
    record_property("odd \udcff", ["odd \udcff"])
    record_property("unprintable", Unprintable())

def test_skips():
    pytest.skip("odd \udcff")

@pytest.mark.xfail(reason="odd \udcff")
def test_xfail_marked():
    assert False

def test_xfail_called():
    pytest.xfail("odd \udcff")

def test_warns():
    warnings.warn("odd \udcff")
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_every_report_is_sent_whatever_its_text_or_properties(
    pytester: pytest.Pytester, workers: str
) -> None:
    """xdist's worker sends each report (and each warning) to the controller through
    execnet, as UTF-8 and with only execnet's own types: a ``record_property`` value such
    as a ``Path``, or a lone surrogate in a skip's or an xfail's reason or in a warning,
    failed that send: an INTERNALERROR, the rest of the tests' results lost, pytest's
    exit 0 or 3. A property is sent as the text JUnit XML writes of it, in either case."""
    pytester.makepyfile(test_unsendable=UNSENDABLE)
    junit = pytester.path / "junit.xml"
    found = records(pytester, "-n", workers, "-p", "no:randomly", f"--junitxml={junit}")
    assert [item for item in found if item["kind"] == "internal-error"] == []
    outcomes = {name: item["outcome"] for name, item in calls(found).items()}
    assert outcomes == {
        "test_properties": "passed",
        "test_skips": "skipped",
        "test_xfail_marked": "skipped",
        "test_xfail_called": "skipped",
        "test_warns": "passed",
    }
    assert calls(found)["test_skips"]["message"] == "odd \\udcff"
    assert [item["wasxfail"] for item in found if "wasxfail" in item] == ["odd \\udcff"] * 2
    xml = junit.read_text("utf-8")
    assert f'name="path" value="{Path("data") / "in.csv"}"' in xml
    assert '<property name="unprintable" value="&lt;test_unsendable.Unprintable object' in xml
    assert "odd \\udcff" in xml


def test_a_forked_process_records_only_that_it_was_forked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The recorder of a process a test forked (its pid another) writes one record that
    names the test, and nothing else: its reports would be taken for the session's own.
    (A real fork: test_a_forked_child_that_returns_into_pytest_is_a_problem_not_counted.)"""
    plugin = fresh_plugin(monkeypatch, "_testgate_plugin_forked")
    path, early = tmp_path / "record.jsonl", tmp_path / "early.jsonl"
    with path.open("a", encoding="utf-8") as stream, early.open("a", encoding="utf-8") as first:
        recorder = plugin.Recorder(stream, root=tmp_path)
        before_any_test = plugin.Recorder(first, root=tmp_path)
        recorder.pytest_runtest_logstart("t.py::test_forks", ("t.py", 1, "test_forks"))
        monkeypatch.setattr(os, "getpid", lambda: 1)  # as the forked child sees it
        recorder.write({"kind": "report", "id": "t.py::test_forks"})
        recorder.write({"kind": "finish", "exitstatus": 1})
        before_any_test.write({"kind": "collected", "count": 1})
    found = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [item["kind"] for item in found] == ["logstart", "forked"]
    assert (found[1]["pid"], found[1]["test"]) == (1, "t.py::test_forks")
    assert json.loads(early.read_text("utf-8")) == {"kind": "forked", "pid": 1, "seq": 1}


def test_a_worker_whose_process_cannot_be_asked_has_no_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = fresh_plugin(monkeypatch, "_testgate_plugin_exit")
    assert plugin._exit_code(SimpleNamespace(gateway=SimpleNamespace(id="gw0"))) is None


def test_subtests_are_recorded_as_such_and_a_conftest_that_fails_to_import(
    pytester: pytest.Pytester,
) -> None:
    """pytest's subtest reports say which subtest they are of; a conftest pytest cannot
    import is recorded, though pytest stops before it configures (exit 4)."""
    pytester.makepyfile(
        test_sub=(
            "def test_each(subtests):\n"
            "    for i in range(2):\n"
            "        with subtests.test(msg='m', i=i):\n"
            "            assert i == 0\n"
        )
    )
    found = records(pytester)
    subtests = [(r["subtest"], r["outcome"]) for r in found if "subtest" in r]
    assert subtests == [("[m] (i=0)", "passed"), ("[m] (i=1)", "failed")]
    (own,) = [
        r for r in found if r["kind"] == "report" and r["when"] == "call" and "subtest" not in r
    ]
    assert own["outcome"] == "failed"
    pytester.makeconftest("import missing_helper_xyz\n")
    assert records(pytester, env=False) == []
    assert records(pytester) == [
        {
            "kind": "conftest-error",
            "path": "conftest.py",
            "message": "ModuleNotFoundError: No module named 'missing_helper_xyz'",
        }
    ]
