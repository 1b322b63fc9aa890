"""How many xdist workers a pytest attempt gets, and why: the ``workers = auto`` decision.

xdist's workers are separate pytest processes that each import pytest, the plugins and
the project, and collect the suite, and its controller handles every test's reports as
they come: measured on a quiet 2-core machine with tests that take no time, ``-n 2``
against serial pytest (both with ``--cov``) cost about 0.45 s more for 8 tests, 0.65 s for
200 and 1.1 s for 800. A suite whose tests take a few seconds in all is faster serially,
and most pull-request suites of small libraries are like that. So ``auto`` (the default)
weighs the time the tests are expected to take against what the workers cost:

* the expected time is the recorded durations (``durations.json``) of the tests the
  pytest arguments name (all of them when they name no path or node id) when there are
  any, else a count of the suite's test functions (read from the test files, not collected:
  a second pytest start would cost what it is meant to save) times a typical test's time;
* N workers are worth it when the time they save, ``expected * (1 - 1/N)``, exceeds what
  they cost, ``N * WORKER_START_S + tests * PER_TEST_S``, by a tenth of ``expected`` at
  least (MIN_SAVING); N is at most the machine's cores and the test count.

Reruns and flaky-detection rounds decide the same way from their own tests' first
durations. An explicit number of workers (``--workers 4``, or ``0``) always wins.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.plural import counted
from runner.pytest_config import find_config, named_paths

# What xdist costs beyond a serial run, in seconds (fitted to the measures above, rounded
# up): each worker's start-up (they start at once, one per core), and each test's report
# handed to the controller. Before: 1.2 s a worker and nothing a test, which kept a suite
# of 150 tests recorded at 3 s serial where 2 workers took 2.84 s against 3.47 s.
WORKER_START_S = 0.3
PER_TEST_S = 0.001
TYPICAL_TEST_S = 0.01  # a test's time when none is recorded: unit tests of a library
# xdist must save this share of the serial time: a smaller gain is within the estimate's
# error, and a wrong guess for xdist costs more than one against it.
MIN_SAVING = 0.1
SKIPPED_DIRS = frozenset({"node_modules", "venv", "build", "dist", "site-packages", "__pycache__"})
_TEST_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+test\w*[ \t]*\(", re.MULTILINE)
AUTO = ("auto",)  # the workers setting testgate decides
_UNKNOWN_PARAMETERS = 2  # a parametrize whose values are not a literal list: a guess


@dataclass(frozen=True)
class Decision:
    """The workers for one pytest attempt: ``workers`` is ``"0"`` (no xdist) or a count,
    as pytest's ``-n`` takes it; ``reason`` says why, in a sentence a user can check."""

    workers: str
    reason: str

    @property
    def count(self) -> int:
        """The number of xdist workers; 0 without xdist."""
        return int(self.workers)


def cpus() -> int:
    """The cores this process may run on (its affinity where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - platforms without affinity


def switched_off(where: str) -> Decision:
    """No xdist, whatever ``workers`` says: the project's pytest options block the plugin
    (``-p no:xdist`` in ``where``), and pytest would refuse ``-n``. Its suite is meant to
    run serially."""
    return Decision("0", f"no xdist: -p no:xdist in {where} switches it off")


def as_set(requested: str, *, cores: int | None = None) -> Decision:
    """The decision for a number of workers the user set: it wins.

    ``logical`` is xdist's ``-n logical``: one worker per logical CPU (``cores``, by
    default this machine's), as set.
    """
    if requested == "logical":
        workers = str(cores or cpus())
        return Decision(workers, f"{workers} xdist workers: workers = logical, one per CPU")
    if requested == "0":
        return Decision("0", "no xdist: workers = 0, as set")
    return Decision(requested, f"{requested} xdist workers: workers = {requested}, as set")


def decide(
    requested: str, *, expected_s: float, count: int, basis: str, cores: int | None = None
) -> Decision:
    """The workers for ``count`` tests expected to take ``expected_s`` seconds serially.

    ``requested`` is the ``workers`` setting. A number wins, though never more workers
    than tests (a worker without a test only costs its start-up), and so does ``logical``
    (one per CPU). ``auto`` chooses between no xdist and up to ``cores`` workers
    (default: this machine's).
    ``basis`` names where ``expected_s`` comes from, for the reason.
    """
    if requested not in AUTO:
        chosen = as_set(requested, cores=cores)
        used = min(chosen.count, count)
        if used == chosen.count:
            return chosen
        if used < 2:
            return Decision("0", f"no xdist: {counted(count, 'test')} to run")
        return Decision(str(used), f"{used} xdist workers: one per test (workers = {requested})")
    limit = min(cores or cpus(), count)
    best, saved = 0, MIN_SAVING * expected_s
    for workers in range(2, limit + 1):
        gain = expected_s * (1 - 1 / workers) - xdist_cost(workers, count)
        if gain > saved:
            best, saved = workers, gain
    about = f"{basis}: about {expected_s:.2f} s"
    if best == 0:
        if limit < 2:
            return Decision("0", f"no xdist: {about}, {'one test' if count < 2 else 'one core'}")
        return Decision(
            "0",
            f"no xdist: {about}, too little for 2 xdist workers (about "
            f"{xdist_cost(2, count):.2f} s to start them and hand them the tests) to save a "
            "tenth of it",
        )
    return Decision(
        str(best),
        f"{best} xdist workers: {about} serially, about "
        f"{expected_s / best + xdist_cost(best, count):.2f} s with {best} (their start-up "
        "included)",
    )


def xdist_cost(workers: int, tests: int) -> float:
    """The seconds ``workers`` xdist workers add to a run of ``tests`` tests: their start-up,
    and the controller's handling of each test's reports."""
    return workers * WORKER_START_S + tests * PER_TEST_S


def suite_decision(
    requested: str,
    *,
    durations: Mapping[str, float],
    project: Path,
    pytest_args: Sequence[str],
    shards: int = 1,
    cores: int | None = None,
) -> Decision:
    """The workers for the whole suite (or one of ``shards`` shards).

    From the recorded ``durations`` when there are any, else from the test functions
    counted in the project's test files (``count_tests``) at TYPICAL_TEST_S each. An
    explicit number needs neither, and nothing is read then.
    """
    if requested not in AUTO:
        return as_set(requested, cores=cores)
    share = f" / {shards} shards" if shards > 1 else ""
    named = named_durations(durations, project=project, pytest_args=pytest_args)
    if named:
        expected = sum(named.values()) / shards
        count = max(1, len(named) // shards)
        of = " of the tests named" if len(named) < len(durations) else ""
        basis = f"{counted(len(named), 'recorded test duration')}{of}{share}"
    else:
        # Enough tests to be sure parallel is worth it end the count early.
        enough = int(20 * WORKER_START_S * (cores or cpus()) / TYPICAL_TEST_S) * shards
        found = count_tests(project, pytest_args, enough=enough)
        count = max(1, found // shards)
        expected = count * TYPICAL_TEST_S
        tests = f"{'at least ' if found >= enough else ''}{counted(found, 'test')}"
        basis = (
            f"{tests} counted in the test files{share}, no recorded durations, "
            f"{TYPICAL_TEST_S * 1000:.0f} ms each"
        )
    return decide(requested, expected_s=expected, count=count, basis=basis, cores=cores)


def named_durations(
    durations: Mapping[str, float], *, project: Path, pytest_args: Sequence[str]
) -> Mapping[str, float]:
    """The recorded durations of the tests that the paths and node ids in ``pytest_args``
    name (``tests/unit``, ``tests/test_a.py``, ``tests/test_a.py::TestB``), as pytest
    selects them; all of them when the arguments name none.

    Node ids are relative to the project (pytest's rootdir), with ``/``. A ``-k`` or
    ``-m`` expression selects at collection, which this decision comes before: its tests
    are not known, and every named file counts whole.
    """
    targets: list[tuple[str, bool, str]] = []  # (relative path, a folder, the id's rest)
    root = project.resolve()
    for arg in named_paths(project, pytest_args):
        path, separator, rest = arg.partition("::")
        full = (project / path).resolve()
        if full.is_relative_to(root):
            targets.append((full.relative_to(root).as_posix(), full.is_dir(), separator + rest))
    if not targets:
        return durations
    return {
        test_id: seconds
        for test_id, seconds in durations.items()
        if any(_names(test_id, *target) for target in targets)
    }


def _names(test_id: str, path: str, folder: bool, rest: str) -> bool:
    file, _, _ = test_id.partition("::")
    if folder:
        return path == "." or file.startswith(f"{path}/")
    tail = test_id[len(file) :]
    return file == path and (not rest or tail == rest or tail.startswith((f"{rest}::", f"{rest}[")))


def count_tests(project: Path, pytest_args: Sequence[str], *, enough: int | None = None) -> int:
    """The tests pytest would collect, estimated from the test files' text: each
    ``def test…`` once per parameter set of its literal ``parametrize`` lists.

    The files are those under the paths given in ``pytest_args``, else the configured
    ``testpaths``, else the project (``test_*.py`` and ``*_test.py``, hidden and
    environment folders left out). Counting stops once it reaches ``enough``.
    """
    total = 0
    for path in test_files(project, pytest_args):
        try:
            text = path.read_bytes()
        except OSError:
            continue
        total += _count_in(text)
        if enough is not None and total >= enough:
            break
    return total


def _count_in(text: bytes) -> int:
    defs = len(_TEST_DEF.findall(text))
    if b"parametrize" not in text or not defs:
        return defs
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return defs
    return sum(_cases(node) for node in _test_functions(tree.body))


def _test_functions(body: list[ast.stmt]) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("test"):
                yield node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            yield from _test_functions(node.body)


def _cases(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    cases = 1
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call) or not _is_parametrize(decorator.func):
            continue
        values = decorator.args[1] if len(decorator.args) > 1 else None
        if values is None:
            values = next((k.value for k in decorator.keywords if k.arg == "argvalues"), None)
        if isinstance(values, ast.List | ast.Tuple | ast.Set):
            cases *= len(values.elts)
        else:
            cases *= _UNKNOWN_PARAMETERS
    return cases


def _is_parametrize(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == "parametrize"


def test_files(project: Path, pytest_args: Sequence[str]) -> Iterator[Path]:
    """The files pytest would look for tests in (see ``count_tests``), in a stable order."""
    roots = (
        [project / arg.partition("::")[0] for arg in named_paths(project, pytest_args)]
        or [project / path for path in configured_testpaths(project, pytest_args=pytest_args)]
        or [project]
    )
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(
                name for name in dirs if not name.startswith(".") and name not in SKIPPED_DIRS
            )
            for name in sorted(files):
                if name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")):
                    yield Path(folder) / name


def configured_testpaths(project: Path, *, pytest_args: Sequence[str] = ()) -> list[str]:
    """pytest's ``testpaths`` from the file pytest takes its configuration from
    (``runner.pytest_config``), the folders that exist; none when unset."""
    found = find_config(project, pytest_args=pytest_args).args("testpaths")
    return [path for path in found if (project / path).exists()]
