"""The pytest plugin testgate injects into the project's own pytest run.

It runs inside the project's environment, so it uses only the standard library and
pytest. It does two things pytest's own reports cannot:

* in the process that runs a test, it finds the 1-based line of the failing frame
  *inside the test file* (the assertion or the raising call), whatever ``--tb`` style
  the user chose, and attaches it to the report, which xdist carries to the controller;
* in the controller (or the only process, without xdist), it appends one JSON line per
  phase report (a subtest's says which subtest), collection error and session event to
  the file named by ``TESTGATE_RECORD``, the most complete record of a run pytest can
  give, and a conftest that failed to import before pytest configured;
* when ``TESTGATE_SELECT`` names a JSON file (``{"ids": [...], "ordered": bool}``), it
  runs only those tests, whatever paths and options the user's own arguments give, and
  imports only their files; an id names one test, exactly (a rerun of ``t.py::x`` never
  runs ``t.py::x::format``), unless ``"prefixes": true`` lets an entry name every test
  below it (flaky detection of quarantine entries); ``ordered`` runs them in the order
  listed (a replay); with
  ``"rounds": [[ids in order], ...]`` it runs each test once per round, round after round
  in each round's order, as ``ID[testgate-round-N]`` (flaky detection, many rounds in
  one process);
* when ``TESTGATE_SCHEDULE`` names a JSON file (``{"durations": {...}, "shard": [I, N],
  "order": bool}``), it keeps only shard I of N of a duration-balanced partition, and
  with ``order`` puts the longest work first for xdist's worksteal, keeping together the
  tests that share a module- or class-scoped fixture (see ``_testgate_schedule``).

* when ``TESTGATE_WORKER_ENV`` holds ``{"DATABASE_URL": "postgresql://…/test_{worker}"}``,
  it sets each variable for the xdist worker it runs in (``gw0`` without xdist;
  ``{index}`` is the worker's number; a list holds one value per worker), as soon as
  pytest loads it, before any conftest,
  so parallel workers never share a database.

* when ``TESTGATE_DJANGO_SUFFIX`` is set (pytest-django creates the workers' databases),
  a run without xdist names its test database as the first xdist worker's.
* when ``TESTGATE_TIMEOUTS`` holds ``{"default": 900, "markers": {"unit": 1}}``, it gives
  every test a time limit: the strictest of its markers' limits, else the default (0:
  none); a test's own ``@pytest.mark.timeout`` wins over both (see ``_testgate_timeouts``).
  A test that times out is reported as an error, "timed out after N s (marker unit)",
  with the traceback of where it hung.

Without those variables in the environment the plugin does nothing.

PYTEST_DONT_REWRITE: pytest rewrites the assertions of a module loaded with ``-p`` (on every
run where bytecode is not written); this one has none, and is loaded faster without.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, TextIO

import pytest
from _testgate_schedule import into_queues, partition, weights
from _testgate_timeouts import Timeouts, timed_out
from _testgate_wire import (
    COLLECT_ERROR,
    COLLECT_SKIP,
    COLLECTED,
    CONFTEST_ERROR,
    DESELECTED,
    DESELECTED_OUTPUT,
    DJANGO_ENV,
    FINISH,
    FORKED,
    INTERNAL_ERROR,
    KEYBOARD_INTERRUPT,
    LOGSTART,
    NO_DYNAMIC_CONTEXT_ENV,
    RECORD_ENV,
    REPORT,
    SCHEDULE_ENV,
    SELECT_ENV,
    START,
    TIMEOUTS_ENV,
    UNCAUGHT,
    WARNING,
    WORKER_DOWN,
    WORKER_ENV,
    WORKERS_ENV,
)

ROUND_ID = "testgate-round-"
ROUND_ARG = "_testgate_round"
QUEUES_KEY = "testgate_queues"  # worksteal's first queues, handed to each worker
TEXT_LIMIT = 64 * 1024
MESSAGE_LIMIT = 4 * 1024
_STREAM_KEY = pytest.StashKey["TextIO"]()
_SELECT_KEY = pytest.StashKey["Selection"]()
_SCHEDULE_KEY = pytest.StashKey[dict[str, Any]]()
_EXCEPTHOOK_KEY = pytest.StashKey[Any]()
_FINISHED_KEY = pytest.StashKey[bool]()
_IN_SESSION_KEY = pytest.StashKey[bool]()
_DESELECTED_KEY = pytest.StashKey[int]()  # by the project's options or plugins
_SETTING_ASIDE_KEY = pytest.StashKey[bool]()  # while testgate deselects tests itself


def worker_environment(environ: dict[str, str] | os._Environ[str]) -> None:
    """Point each per-worker variable at this worker's own database."""
    templates = json.loads(environ.get(WORKER_ENV) or "{}")
    worker = environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = worker.removeprefix("gw") if worker.removeprefix("gw").isdigit() else "0"
    for name, template in templates.items():
        if isinstance(template, list):  # one value per worker, in worker order
            environ[name] = template[int(index) % len(template)]
        else:
            environ[name] = template.replace("{worker}", worker).replace("{index}", index)


worker_environment(os.environ)


def worker_coverage_file(environ: dict[str, str] | os._Environ[str]) -> None:
    """Give each xdist worker a data file name of its own: ``COVERAGE_FILE.gw1``.

    pytest-cov, in every worker it starts, erases the parallel data files of the run's
    data file (``.coverage.*``): a worker that replaces a crashed one (``replacing
    crashed worker``) erased the data a worker that had already finished saved, and the
    tests that ran there lost their coverage. Under a name of its own each worker erases
    only its own; ``.coverage.gw1.*`` is still one of the controller's ``.coverage.*``,
    combined as before. Before pytest-cov starts: this module is imported with ``-p``.
    """
    worker = environ.get("PYTEST_XDIST_WORKER")
    data_file = environ.get("COVERAGE_FILE")
    if worker and data_file and not data_file.endswith(f".{worker}"):
        environ["COVERAGE_FILE"] = f"{data_file}.{worker}"


worker_coverage_file(os.environ)


def django_suffix(config: pytest.Config, environ: dict[str, str] | os._Environ[str]) -> None:
    """Without xdist, let pytest-django name its database as xdist's first worker's.

    Under xdist pytest-django names each worker's database ``test_<name>_gw0``, ``…_gw1``;
    a rerun without xdist would make a third, ``test_<name>``. pytest-django also appends
    ``TOX_PARALLEL_ENV``: set to ``gw0`` (unless the user set it) in a run without xdist,
    the rerun uses ``test_<name>_gw0``, the name its first attempt used.
    """
    if environ.get(DJANGO_ENV) and not getattr(config.option, "numprocesses", None):
        environ.setdefault("TOX_PARALLEL_ENV", environ[DJANGO_ENV])


def without_dynamic_context(environ: dict[str, str] | os._Environ[str]) -> None:
    """Switch off ``[run] dynamic_context`` when testgate asks (it makes pytest-cov refuse
    xdist; ``--cov-context=test`` records the same per-test contexts). Before pytest-cov
    starts coverage: this module is loaded with ``-p``, ahead of the plugins."""
    if environ.get(NO_DYNAMIC_CONTEXT_ENV):
        import coverage.control  # noqa: PLC0415 (only when asked)

        read = coverage.control.read_coverage_config  # type: ignore[attr-defined]

        def read_without(*args: Any, **kwargs: Any) -> Any:
            config = read(*args, **kwargs)
            config.dynamic_context = None
            return config

        coverage.control.read_coverage_config = read_without  # type: ignore[attr-defined]


without_dynamic_context(os.environ)


class Selection:
    """The tests a rerun or replay asked for, and the paths they live in.

    An entry is a node id. With ``prefixes`` it may also be a prefix of node ids (a
    module, a class, a directory, or a parametrized test without its parameters), as
    quarantine files may hold; without, it names that one test: a rerun of the failed
    ``t.py::x`` must not run (nor count) ``t.py::x::format``, an item a plugin named
    below it.
    """

    def __init__(
        self,
        root: Path,
        ids: list[str],
        *,
        ordered: bool,
        rounds: list[list[str]],
        prefixes: bool = False,
    ) -> None:
        self.ids = ids
        self.prefixes = prefixes
        self.index = {entry: index for index, entry in reversed(list(enumerate(ids)))}
        self.paths = [root / entry.split("::", 1)[0] for entry in ids]
        self.ordered = ordered
        self.ranks = [{entry: rank for rank, entry in enumerate(order)} for order in rounds]

    def sort_key(self, nodeid: str, position: int) -> tuple[int, int]:
        """Round first, then the place in that round's order (or in the list)."""
        _, round_number = split_round(nodeid)
        if round_number is None or round_number >= len(self.ranks):
            return (0, position)
        return (round_number, self.ranks[round_number].get(self.ids[position], position))

    def position(self, nodeid: str) -> int | None:
        """The index of the entry naming this node (itself, or with ``prefixes`` its
        nearest prefix)."""
        if nodeid in self.index or not self.prefixes:
            return self.index.get(nodeid)
        parts = nodeid.split("[", 1)[0].split("::")
        candidates = ["::".join(parts[:end]) for end in range(len(parts), 0, -1)]
        path = parts[0]
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            candidates.append(path)
        return next((self.index[c] for c in candidates if c in self.index), None)

    def wants_file(self, path: Path) -> bool:
        return any(path == wanted or wanted in path.parents for wanted in self.paths)


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip test files that hold none of the selected tests (only when selecting)."""
    selection = config.stash.get(_SELECT_KEY, None)
    if selection is None or collection_path.name in ("__init__.py", "conftest.py"):
        return None
    if collection_path.is_dir() or selection.wants_file(collection_path):
        return None
    return True


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test one parametrized copy per round when rounds were asked for.

    trylast, so that the round comes after the test's own parameters in its id.
    """
    selection = metafunc.config.stash.get(_SELECT_KEY, None)
    if selection is None or len(selection.ranks) < 2:
        return
    count = len(selection.ranks)
    metafunc.fixturenames.append(ROUND_ARG)
    metafunc.parametrize(ROUND_ARG, range(count), ids=[f"{ROUND_ID}{n}" for n in range(count)])


def split_round(nodeid: str) -> tuple[str, int | None]:
    """``t.py::f[1-testgate-round-3]`` is round 3 of ``t.py::f[1]``; others have no round."""
    marker = nodeid.rfind(ROUND_ID)
    number = nodeid[marker + len(ROUND_ID) : -1]
    if marker < 1 or not nodeid.endswith("]") or not number.isdigit():
        return nodeid, None
    joined = nodeid[marker - 1] == "-"
    return nodeid[: marker - 1] + ("]" if joined else ""), int(number)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the selected tests; in a replay, in the order they were listed."""
    selection = config.stash.get(_SELECT_KEY, None)
    if selection is None:
        return
    positions = {item.nodeid: selection.position(split_round(item.nodeid)[0]) for item in items}
    kept = [item for item in items if positions[item.nodeid] is not None]
    dropped = [item for item in items if positions[item.nodeid] is None]
    if selection.ordered:
        kept.sort(key=lambda item: selection.sort_key(item.nodeid, positions[item.nodeid] or 0))
    items[:] = kept
    if dropped:
        _set_aside(config, dropped)


def _set_aside(config: pytest.Config, dropped: list[pytest.Item]) -> None:
    """Deselect tests for testgate's own reasons (a rerun's passing tests, a shard's
    others): pytest and other plugins hear of it, the project's count does not."""
    config.stash[_SETTING_ASIDE_KEY] = True
    try:
        config.hook.pytest_deselected(items=dropped)
    finally:
        config.stash[_SETTING_ASIDE_KEY] = False


def pytest_deselected(items: Sequence[pytest.Item]) -> None:
    """Count the tests the project deselects: ``-k``, ``-m``, ``--deselect``, ``--lf`` in
    its options or addopts, or a plugin or conftest that calls this hook. pytest names the
    count in its own summary, but not under xdist; the record gets it from each worker."""
    if not items or items[0].config.stash.get(_SETTING_ASIDE_KEY, False):
        return
    config = items[0].config
    count = config.stash[_DESELECTED_KEY] = config.stash.get(_DESELECTED_KEY, 0) + len(items)
    output = getattr(config, "workeroutput", None)
    if output is not None:  # pragma: no cover - in xdist's workers, which coverage cannot
        # follow; test_deselected_tests_are_counted_serially_and_under_xdist shows it
        output[DESELECTED_OUTPUT] = count


class Scheduler:
    """Shard selection and duration ordering, registered only when a schedule is given."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Keep this shard's tests; order the longest work first."""
        _schedule(config, items)


def _schedule(config: pytest.Config, items: list[pytest.Item]) -> None:
    schedule = config.stash[_SCHEDULE_KEY]
    durations = {str(k): float(v) for k, v in schedule.get("durations", {}).items()}
    if schedule.get("shard"):
        index, count = schedule["shard"]
        ids = [item.nodeid for item in items]
        mine = set(partition(ids, durations, count)[index - 1])
        dropped = [item for item in items if item.nodeid not in mine]
        items[:] = [item for item in items if item.nodeid in mine]
        _set_aside(config, dropped)
    if schedule.get("order"):
        group = schedule.get("group", True)
        items[:] = longest_first(items, durations, group=group, queues=_queues(config))


def _queues(config: pytest.Config) -> int:
    """The workers whose first queues worksteal cuts from the collection; 1 otherwise.

    A worker cannot tell for itself: xdist sets its ``dist`` option to ``no`` before it
    collects. The controller hands the count over (``Handoff``).
    """
    worker = getattr(config, "workerinput", {})
    return int(worker.get(QUEUES_KEY, 1))


def first_queues(*, dist: str, workers: int) -> int:
    """How many first queues xdist cuts the collection into: one per worker under
    ``worksteal`` (each worker's chunk is run first to last, only its tail stolen); the
    others hand out batches as workers finish, so one longest-first order suits them."""
    return workers if dist == "worksteal" else 1


def longest_first(
    items: list[pytest.Item], durations: dict[str, float], *, group: bool = True, queues: int = 1
) -> list[pytest.Item]:
    """Units of work, longest first; a unit is one test, or (with ``group``) the tests of a
    module or class that share a fixture of that scope, in pytest's own order.

    With several ``queues`` (worksteal's workers), the units are balanced across the
    chunks worksteal first hands out, each chunk longest first.
    """
    weight = weights([item.nodeid for item in items], durations)
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(_unit(item) if group else item.nodeid, []).append(item)
    total = {key: sum(weight[item.nodeid] for item in members) for key, members in units.items()}
    ordered = sorted(units, key=lambda key: (-total[key], key))
    if queues > 1:
        sized = {key: (len(units[key]), total[key]) for key in units}
        ordered = [key for part in into_queues(sized, queues) for key in part]
    return [item for key in ordered for item in units[key]]


def _unit(item: pytest.Item) -> str:
    """The node whose tests must stay together for this item's widest-scoped fixture."""
    info = getattr(item, "_fixtureinfo", None)
    scopes = {
        definitions[-1].scope
        for definitions in (info.name2fixturedefs.values() if info is not None else ())
        if definitions
    }
    parts = item.nodeid.split("::")
    if scopes & {"module", "package"}:
        return parts[0]
    if "class" in scopes and len(parts) > 2:
        return "::".join(parts[:-1])
    return item.nodeid


def _clean(text: str, limit: int) -> str:
    """Return text safe to write as UTF-8 (lone surrogates escaped), cut to limit."""
    safe = _utf8(text)
    if len(safe) > limit:
        return safe[:limit] + f"\n[... {len(safe) - limit} characters cut by testgate]"
    return safe


def _failing_line(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> int | None:
    """The 1-based line of the innermost traceback frame that lies in the test's file."""
    for entry in reversed(excinfo.traceback):
        if str(entry.path) == str(item.path):
            return entry.lineno + 1
    return None


def _doctest_failure(excinfo: pytest.ExceptionInfo[BaseException]) -> tuple[int | None, str] | None:
    """A failed doctest example's 1-based line and message: the line as pytest's own report
    locates it (``test.lineno + example.lineno + 1``, both 0-based), the message the
    example and what went wrong (``add(2, 2): expected 5, got 4``, or the exception it
    raised). The first failure of ``--doctest-continue-on-failure``'s several; None for
    any other exception."""
    doctest = sys.modules.get("doctest")  # a doctest failure has loaded it
    failure: Any = excinfo.value
    if type(failure).__name__ == "MultipleDoctestFailures":  # never without one
        failure = failure.failures[0]
    if doctest is None or not isinstance(
        failure, (doctest.DocTestFailure, doctest.UnexpectedException)
    ):
        return None
    if isinstance(failure, doctest.DocTestFailure):
        said = f"expected {_brief(failure.example.want)}, got {_brief(failure.got)}"
    else:
        said = "".join(traceback.format_exception_only(*failure.exc_info[:2])).strip()
    test, example = failure.test, failure.example
    line = None if test.lineno is None else test.lineno + example.lineno + 1
    return line, _clean(f"{_brief(example.source)}: {said}", MESSAGE_LIMIT)


def _brief(text: str) -> str:
    """A doctest's source or output on one line."""
    return " ".join(text.split()) or "nothing"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the failing line and a short message to the report of a failed phase."""
    report = yield
    _make_serializable(report)
    if call.excinfo is not None and report.outcome != "passed":
        report.testgate_line = _failing_line(item, call.excinfo)  # type: ignore[attr-defined]
        timed_out_message = timed_out(item, call.excinfo)
        doctest_failure = _doctest_failure(call.excinfo)
        if doctest_failure is not None:
            report.testgate_line, report.testgate_message = doctest_failure  # type: ignore[attr-defined]
        elif timed_out_message is not None:
            report.testgate_message = timed_out_message  # type: ignore[attr-defined]
            report.testgate_timed_out = True  # type: ignore[attr-defined]
        elif not call.excinfo.errisinstance(pytest.skip.Exception):
            report.testgate_message = _clean(  # type: ignore[attr-defined]
                call.excinfo.exconly(), MESSAGE_LIMIT
            )
    return report


def _make_serializable(report: pytest.TestReport) -> None:
    """Make every part of a report that xdist sends to the controller sendable.

    execnet sends text as UTF-8 and only values of its own types (exactly: ``str``,
    ``int``, ``list``..., no subclass, no ``Path``). A lone surrogate in a failure's text,
    a skip's or an xfail's reason, or a ``record_property`` value execnet cannot serialize
    made the worker's report fail to send: an INTERNALERROR, the test's result lost. Text
    is escaped; a property is sent as the text pytest's JUnit XML writes of it
    (``str(value)``), so that the XML is the same with xdist and without.
    """
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        path, line, reason = report.longrepr
        report.longrepr = (path, line, _utf8(str(reason)))
    try:
        if report.longrepr is not None:  # a passed phase's has none: no text to render
            report.longreprtext.encode("utf-8")
        for _, content in report.sections:
            content.encode("utf-8")
    except UnicodeEncodeError:  # a failure's, or an xfail's (pytest.xfail() in the test)
        report.longrepr = _clean(report.longreprtext, 10 * TEXT_LIMIT)
        report.sections = [(key, _clean(content, TEXT_LIMIT)) for key, content in report.sections]
    if hasattr(report, "wasxfail"):
        report.wasxfail = _utf8(str(report.wasxfail))
    report.user_properties = [
        (str(_sendable(name)), _sendable(value)) for name, value in report.user_properties
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_warning_recorded(warning_message: Any) -> None:
    """A warning's text, lone surrogates escaped, before an xdist worker sends it to the
    controller as UTF-8 (that send failed as a report's did: see ``_make_serializable``)."""
    message = warning_message.message  # a Warning: warnings.warn makes one of a text
    text = str(message)
    safe = _utf8(text)
    if safe != text:
        message.args = (safe,)


_SENT_AS_IS = frozenset({type(None), bool, int, float, complex, bytes})
_SENT_ITEMS = frozenset({list, tuple, set, frozenset})


def _sends(value: object) -> bool:
    """Whether execnet serializes the value as it is."""
    kind = type(value)
    if kind is str:
        return _utf8(value) == value  # type: ignore[arg-type]
    if kind is dict:
        return all(_sends(key) and _sends(item) for key, item in value.items())  # type: ignore[attr-defined]
    if kind in _SENT_ITEMS:
        return all(_sends(item) for item in value)  # type: ignore[attr-defined]
    return kind in _SENT_AS_IS


def _sendable(value: object) -> object:
    """A user property's name or value as xdist can send it: as it is, or its text."""
    if _sends(value):
        return value
    try:
        text = str(value)
    except Exception:  # a __str__ that raises: pytest's JUnit XML would fail on it too
        text = object.__repr__(value)
    return _clean(text, MESSAGE_LIMIT)


def _utf8(text: str) -> str:
    """The text with lone surrogates escaped (``\\udcff``), which UTF-8 cannot carry."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Recorder:
    """Appends JSON lines to the record file; lives only in the controller process."""

    def __init__(self, stream: TextIO, *, root: Path) -> None:
        self._stream = stream
        self._root = root
        self._running_file: str | None = None  # the file of the test that started last
        self._running: str | None = None  # and its id
        self._pid = os.getpid()
        self._forked = False
        self._seq = 0
        self._warned: set[str] = set()
        self._ids_written = False

    def write(self, record: dict[str, Any]) -> None:
        """One record; in a process a test forked that went on with pytest's session (its
        child returned, or exited through SystemExit, which pytest catches), only one that
        says so: its reports would be taken for the session's own."""
        if os.getpid() != self._pid:
            if self._forked:
                return
            self._forked = True
            record = {"kind": FORKED, "pid": os.getpid()}
            if self._running is not None:
                record["test"] = self._running
        self._seq += 1
        record["seq"] = self._seq
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()

    def _collected(self, ids: list[str], **fields: Any) -> None:
        """The count, and once (every xdist worker collects the same) the ids: the tests
        that never ran, if the run is cut short, are those recorded here and nowhere else."""
        record = {"kind": COLLECTED, "count": len(ids), **fields}
        if ids and not self._ids_written:
            record["ids"] = [split_round(nodeid)[0] for nodeid in ids]
            self._ids_written = True
        self.write(record)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._collected([item.nodeid for item in session.items])
        self._deselected(session.config.stash.get(_DESELECTED_KEY, 0))

    def _deselected(self, count: int | None) -> None:
        if count:
            self.write({"kind": DESELECTED, "count": count})

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._collected(ids, worker=node.gateway.id)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """A worker that died: its exit code (negative: the signal) when execnet has it. One
        that ended its session on a KeyboardInterrupt (xdist's ``keyboard-interrupt``) did
        not crash: it is on its way out, with no exit code worth waiting for. One that
        finished hands over the tests it deselected."""
        self._deselected(getattr(node, "workeroutput", {}).get(DESELECTED_OUTPUT))
        if error == "keyboard-interrupt":
            self.write({"kind": WORKER_DOWN, "worker": node.gateway.id, "interrupted": True})
        elif error is not None:
            self.write({"kind": WORKER_DOWN, "worker": node.gateway.id, "exit": _exit_code(node)})

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self._running_file, self._running = location[0], nodeid
        self.write({"kind": LOGSTART, "id": nodeid, "def_line": _def_line(nodeid, location)})

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """The KeyboardInterrupt that stopped the session, and the innermost line of the
        running test's file it came through (None: it came through none, as xdist's own
        ``Interrupted`` in the controller does). A test that raised it, or signalled its own
        process, ran and is an error; testgate tells that from its own interrupt. pytest
        calls this hook for ``pytest.exit()`` too, which is no interrupt."""
        if not isinstance(excinfo.value, KeyboardInterrupt):
            return
        file = None if self._running_file is None else self._root / self._running_file
        line = next(
            (entry.lineno + 1 for entry in reversed(excinfo.traceback) if entry.path == file),
            None,
        )
        message = _clean(excinfo.exconly(), MESSAGE_LIMIT)
        self.write({"kind": KEYBOARD_INTERRUPT, "message": message, "line": line})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.write(
                {
                    "kind": COLLECT_ERROR,
                    "id": report.nodeid,
                    "message": _clean(_last_line(report.longreprtext), MESSAGE_LIMIT),
                    "text": _clean(report_text(report.longreprtext), TEXT_LIMIT),
                }
            )
        elif report.skipped and isinstance(report.longrepr, tuple):  # a module skipped itself
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
            self.write(
                {
                    "kind": COLLECT_SKIP,
                    "id": report.nodeid,
                    "message": _clean(message, MESSAGE_LIMIT),
                }
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        base, round_number = split_round(report.nodeid)
        record: dict[str, Any] = {
            "kind": REPORT,
            "id": report.nodeid,
            "test": base,
            "round": round_number,
            "when": report.when,
            "outcome": report.outcome,
            "duration": report.duration,
            "def_line": _def_line(report.nodeid, report.location),
            "worker": getattr(report, "worker_id", None) or _crashed_worker(report),
        }
        if hasattr(report, "wasxfail"):
            record["wasxfail"] = _clean(str(report.wasxfail), MESSAGE_LIMIT)
        subtest = _subtest(report)
        if subtest is not None:
            record["subtest"] = subtest
        if report.skipped and isinstance(report.longrepr, tuple):
            record["message"] = _clean(str(report.longrepr[2]), MESSAGE_LIMIT).removeprefix(
                "Skipped: "
            )
        elif report.outcome not in ("passed", "skipped"):  # failed, or a plugin's: rerun
            message = getattr(report, "testgate_message", None) or _last_line(report.longreprtext)
            record["message"] = _clean(message, MESSAGE_LIMIT)
            record["line"] = getattr(report, "testgate_line", None)
            if getattr(report, "testgate_timed_out", False):
                record["timed_out"] = True
            record["text"] = _clean(report_text(report.longreprtext), TEXT_LIMIT)
            record["stdout"] = _clean(report.capstdout, TEXT_LIMIT)
            record["stderr"] = _clean(report.capstderr, TEXT_LIMIT)
        self.write(record)

    def pytest_internalerror(self, excrepr: Any) -> None:
        self.write({"kind": INTERNAL_ERROR, "text": _clean(str(excrepr), TEXT_LIMIT)})

    def pytest_warning_recorded(
        self, warning_message: Any, when: str, nodeid: str, location: Any
    ) -> None:
        """pytest's own warnings (configuration, marks, plugins, collection), once each;
        not deprecations, which change no outcome."""
        category = warning_message.category
        if (
            isinstance(category, type)
            and issubclass(category, pytest.PytestWarning)
            and not issubclass(category, pytest.PytestDeprecationWarning)
        ):
            message = _clean(str(warning_message.message).strip(), MESSAGE_LIMIT)
            text = f"{category.__name__}: {message}"
            if text not in self._warned:
                self._warned.add(text)
                self.write({"kind": WARNING, "text": text})

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.write({"kind": FINISH, "exitstatus": int(exitstatus)})
        session.config.stash[_FINISHED_KEY] = True

    def uncaught(self, error: BaseException, *, root: Path) -> None:
        """An exception that escaped pytest itself (raised in another plugin's
        ``pytest_sessionfinish``, say): pytest reports no INTERNALERROR for it, the process
        just ends, so its last traceback line and the frame it came from are recorded."""
        text = "".join(traceback.format_exception(error))
        frame = traceback.extract_tb(error.__traceback__)[-1]  # it was raised: it has one
        place = (
            os.path.relpath(frame.filename, root)
            if frame.filename.startswith(str(root) + os.sep)
            else frame.filename.replace(os.sep, "/").rpartition("/site-packages/")[2]
        )
        # pytest 8 and later have closed it already: they unconfigure in a finally.
        self._stream.close()
        self._stream = open(self._stream.name, "a", encoding="utf-8")  # noqa: SIM115
        self.write(
            {
                "kind": UNCAUGHT,
                "message": _clean(_last_line(text), MESSAGE_LIMIT),
                "where": f"{place}:{frame.lineno} in {frame.name}",
                "text": _clean(text, TEXT_LIMIT),
            }
        )
        self._stream.close()


def _watch_uncaught(config: pytest.Config, recorder: Recorder) -> None:
    """Chain ``sys.excepthook`` (which Python, and ``coverage run``, call for an exception
    that ends the process) to record it. ``pytest_unconfigure`` puts the old one back once
    the session has finished; before that, an exception may be on its way out of pytest."""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        try:
            # Inside the session pytest catches every exception itself: a call from there
            # is a test's own (a crash handler's test), or a nested pytest's passing it on.
            if not config.stash.get(_IN_SESSION_KEY, False):
                recorder.uncaught(error, root=config.rootpath)
        finally:
            previous(kind, error, trace)

    config.stash[_EXCEPTHOOK_KEY] = previous
    config.stash[_FINISHED_KEY] = False
    sys.excepthook = excepthook


def _exit_code(node: Any) -> int | None:
    """The exit code of a worker's process (execnet's popen gateways keep the process)."""
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)
    try:
        return int(popen.wait(timeout=2))  # type: ignore[union-attr]
    except Exception:  # an execnet without that attribute, or a process that would not end
        return None


def _subtest(report: pytest.TestReport) -> str | None:
    """``[msg] (i=2)``: which subtest a report is of (pytest 9's ``SubtestReport``, or
    pytest-subtests' ``SubTestReport``); None for a test's own report."""
    for name in ("_sub_test_description", "sub_test_description"):  # pytest 9's, the plugin's
        describe = getattr(report, name, None)
        if callable(describe):
            return _clean(str(describe()), MESSAGE_LIMIT)
    return None


def _crashed_worker(report: pytest.TestReport) -> str | None:
    """xdist's report for the test a worker died in carries the worker as ``node``."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    return getattr(gateway, "id", None)


def _def_line(nodeid: str, location: tuple[str, int | None, str]) -> int | None:
    """The 1-based ``def`` line, when pytest's location lies in the node's own file.

    pytest's locations are 0-based, and a test function imported from another module
    is located in that module: its line would point into the wrong file.
    """
    file, zero_based = location[0], location[1]
    if zero_based is None or file.replace(os.sep, "/") != nodeid.split("::", 1)[0]:
        return None
    return zero_based + 1


def _last_line(text: str) -> str:
    """The last non-empty line of a report text, which names the error for most reports.

    pytest marks error lines with ``E`` and spaces (``E   ImportError: ...``): the marker
    is layout, not message, and goes.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    marker, _, rest = last.partition(" ")
    return rest.lstrip() if marker == "E" and rest.startswith("  ") and rest.strip() else last


def report_text(text: str) -> str:
    """A failure's text without xdist's first line (``[gw0] linux -- Python 3.12.1 PATH``),
    which names the worker and a temporary environment's path, not the failure."""
    first, newline, rest = text.partition("\n")
    if newline and first.startswith("[gw") and " -- Python " in first:
        return rest.lstrip("\n")
    return text


def _read_schedule(config: pytest.Config, path: str | None) -> None:
    if path:
        with open(path, encoding="utf-8") as stream:
            config.stash[_SCHEDULE_KEY] = json.load(stream)
        config.pluginmanager.register(Scheduler(), "testgate-scheduler")


def _read_timeouts(config: pytest.Config, plan: str | None) -> None:
    if plan:
        config.pluginmanager.register(Timeouts(json.loads(plan)), "testgate-timeouts")


def _read_selection(config: pytest.Config, path: str | None) -> None:
    if path:
        with open(path, encoding="utf-8") as stream:
            wanted = json.load(stream)
        config.stash[_SELECT_KEY] = Selection(
            config.rootpath,
            list(wanted["ids"]),
            ordered=bool(wanted.get("ordered")),
            rounds=[list(order) for order in wanted.get("rounds", [])],
            prefixes=bool(wanted.get("prefixes")),
        )


class Handoff:
    """Hands the selection and schedule to xdist's workers (they no longer see the env),
    and how many first queues the controller's scheduler cuts (``first_queues``)."""

    def __init__(self, plans: dict[str, str | None]) -> None:
        self.plans = plans

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput.update({f"testgate_{name}": path for name, path in self.plans.items()})
        dist = str(node.config.getoption("dist", "no"))
        node.workerinput[QUEUES_KEY] = first_queues(
            dist=dist, workers=int(node.workerinput["workercount"])
        )


@pytest.hookimpl(trylast=True)  # last: after every plugin that adds options of its own
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """Make testgate's decision on xdist workers (``TESTGATE_ATTEMPT_WORKERS``) the one that runs.

    A ``-n`` in the project's addopts, or one a plugin adds (pytest-enabler adds ``-n auto``
    where xdist is installed, after pytest-cov chose its mode from the command line), would
    otherwise start workers testgate did not decide: pytest-cov then fails in xdist's
    controller, and the reports would name the wrong workers. Appended last, as argparse
    takes the last ``-n``. Taken out of the environment, so no pytest the tests start sees it.
    """
    workers = os.environ.pop(WORKERS_ENV, None)
    if workers is not None and early_config.pluginmanager.has_plugin("xdist"):
        args += ["-n", workers]


@pytest.hookimpl(wrapper=True, specname="pytest_load_initial_conftests")
def pytest_load_initial_conftests_recorded(
    early_config: pytest.Config,
) -> Generator[None, None, None]:
    """Record a conftest that failed to import before pytest configures (then pytest
    exits 4, as for bad arguments, and testgate's recorder is never registered)."""
    try:
        yield
    except Exception as error:
        path = os.environ.get(RECORD_ENV)
        if path and type(error).__name__ == "ConftestImportFailure":
            failed = getattr(error, "path", "conftest.py")
            with open(path, "a", encoding="utf-8") as stream:
                record = {
                    "kind": CONFTEST_ERROR,
                    "path": os.path.relpath(failed, early_config.rootpath),
                    "message": _clean(str(error).rpartition(" (from ")[0], MESSAGE_LIMIT),
                }
                stream.write(json.dumps(record) + "\n")
        raise


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Without xdist, name pytest-django's database as its first worker's (in the
    controller only: xdist's workers have no ``numprocesses`` of their own)."""
    # pragma below: the other way is taken in xdist's workers, which coverage cannot follow
    if getattr(config, "workerinput", None) is None:  # pragma: no branch
        django_suffix(config, os.environ)


@pytest.hookimpl(tryfirst=True)  # first, before configure: a crash there is recorded
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Read testgate's plans; in the controller, register the recorder testgate asked for.

    Registered here, before ``pytest_configure`` runs, never inside it: pluggy before 1.3
    walks the live list of ``pytest_configure`` implementations, and a plugin registered
    during that walk (``Timeouts`` has a ``pytest_configure``) shifts the list, so that
    another plugin's ``pytest_configure`` is skipped (cacheprovider's: stepwise then fails
    with "'Config' object has no attribute 'cache'"). xdist's workers run this hook too,
    with their ``workerinput`` already set.

    The variables are taken out of the environment (xdist's workers get the plans through
    their ``workerinput``), so that neither the tests nor a pytest session they start
    themselves (pytester) can read testgate's plans or write into its record.
    """
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # pragma: no cover - runs in xdist worker processes, which this
        # suite's coverage cannot follow; test_under_xdist_the_controller_records_every_worker
        # shows the workers applying the selection the controller handed them.
        plans = {
            name: worker.get(f"testgate_{name}") for name in ("select", "schedule", "timeouts")
        }
    else:
        plans = {
            "select": os.environ.pop(SELECT_ENV, None),
            "schedule": os.environ.pop(SCHEDULE_ENV, None),
            "timeouts": os.environ.pop(TIMEOUTS_ENV, None),
        }
        config.pluginmanager.register(Handoff(plans), "testgate-handoff")
    _read_selection(config, plans["select"])
    _read_schedule(config, plans["schedule"])
    _read_timeouts(config, plans["timeouts"])
    path = os.environ.pop(RECORD_ENV, None)
    if not path or worker is not None:
        return
    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in pytest_unconfigure
    recorder = Recorder(stream, root=config.rootpath)
    config.pluginmanager.register(recorder, "testgate-recorder")
    config.stash[_STREAM_KEY] = stream
    recorder.write({"kind": START, "pytest": pytest.__version__})
    _watch_uncaught(config, recorder)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_IN_SESSION_KEY] = True


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """From here on an exception can escape pytest (one another plugin's
    ``pytest_sessionfinish`` raises), and reach ``sys.excepthook`` as the process ends."""
    session.config.stash[_IN_SESSION_KEY] = False
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the record file; after a finished session, put Python's exception hook back,
    unless an exception is on its way out of pytest: one that another plugin's
    ``pytest_sessionfinish`` raised after the recorder's (the terminal's, writing to an
    output a test closed), which unconfigures pytest from ``main``'s ``finally``."""
    previous = config.stash.get(_EXCEPTHOOK_KEY, None)
    if previous is not None and config.stash[_FINISHED_KEY] and sys.exc_info()[1] is None:
        sys.excepthook = previous
    stream = config.stash.get(_STREAM_KEY, None)
    if stream is not None:
        stream.close()
