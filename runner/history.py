"""Test history across runs: the store, and what it shows about flaky tests and coverage.

The history keeps, per run, the commit, the branch, whether the work tree was clean, the
suite duration, coverage totals and the lines coverage missed, and per test its outcome,
its attempts and its duration. It is stored column-wise (one character per test for the
outcome, one for the attempts, one integer of milliseconds for the duration, all in the
order of one shared list of node ids) and gzip-compressed, so a 10,000-test suite over
100 runs stays a download of a few megabytes. It is bounded by ``history-runs`` (the last
N runs) and ``history-days`` (runs no older than D days before the newest).

The rules, all pure functions of a history:

- a test that failed and passed on the same clean commit in different runs is flaky;
- a test that fails now and failed intermittently on the base branch within the window
  is "flaky on <base>: failed k of n recent runs", with the 95 % Wilson interval of k/n;
- coverage that differs between runs of the same clean commit is named line by line;
- each of those compares only runs of the same environment (its fingerprint, see
  ``runner.probe_cache``): a test that passed, then fails on the same commit after a
  dependency was removed, is broken by that change, not flaky; such a failure is
  labelled so and stays failed. A run recorded without a fingerprint (by a testgate
  before this one) is evidence for no run: which environment it had is unknown, and
  failing a gate until one clean run records it beats passing one on evidence that may
  not apply. A failure whose reruns were stopped (one shared cause, over max-reruns:
  the run said it looks broken, not flaky) stays failed too, whatever earlier runs show,
  and a run whose reruns were stopped is evidence for no later run (a database that was
  down makes every test fail once: no test is flaky by it, nor flips);
- the flip rate of a test is the share of its runs whose verdict differs from the run
  before (a run that flaked within itself counts as a flip);
- quarantine entries are suggested for tests the history shows flaky, and their removal
  once every test they match passed the runs a ``stable`` verdict needs in a row.
"""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec

from runner import owned_dir
from runner.errors import ConfigError
from runner.results import TestResult, classify
from runner.stability import wilson_interval
from runner.verdicts import verdict

SCHEMA_VERSION = 1
FILE_NAME = "history.json.gz"
LIMIT_BYTES = 256 * 1024 * 1024  # unpacked: 10,000 tests x 1,000 runs fits
CODES = {
    "passed": "p",
    "failed": "f",
    "error": "e",
    "flaky": "k",
    "skipped": "s",
    "xfailed": "x",
    "xpassed": "X",
}
OUTCOMES = {code: outcome for outcome, code in CODES.items()}
ABSENT = "-"
FAILED_CODES = frozenset("fek")  # a run in which the test failed at least once
_FAILED_CODE = re.compile("[fek]")
JUDGED_CODES = frozenset("pfek")  # a run that says something about passing or failing
COUNTS_AS = ("flaky", "failed", "quarantined")


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """One run: its metadata and, aligned with the history's ids, each test's record.

    As the history file holds it, field by field (``duration_s`` to the millisecond); the
    fields with a default may be missing from a file, which reads them so.
    """

    started: str
    commit: str | None = None
    branch: str | None = None
    clean: bool = False
    duration_s: float
    line_percent: float | None = None
    branch_percent: float | None = None
    flaky: int = 0
    environment: str | None = None
    reruns_stopped: bool = False
    codes: str
    attempts: str
    durations_ms: tuple[int, ...]
    missing: dict[str, tuple[int, ...]] = {}

    def code(self, index: int) -> str:
        return self.codes[index] if index < len(self.codes) else ABSENT


class History(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """Runs, oldest first, and the node ids their per-test columns are aligned with."""

    ids: tuple[str, ...] = ()
    runs: tuple[Run, ...] = ()

    @cached_property
    def index(self) -> dict[str, int]:
        """Each node id's position in the per-test columns."""
        return {test_id: number for number, test_id in enumerate(self.ids)}


class _Version(msgspec.Struct):
    """A history file as first read: its schema version alone, whatever else it holds."""

    schema_version: Any = None


class _Stored(msgspec.Struct, frozen=True, kw_only=True):
    """The history file: its schema version, then the history's fields."""

    schema_version: int = SCHEMA_VERSION
    ids: tuple[str, ...]
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Entry:
    """One test in one run, as ``testgate history ID`` prints it."""

    run: Run
    outcome: str
    attempts: int
    duration_s: float


@dataclass(frozen=True)
class Rate:
    """k of n runs, with the 95 % Wilson interval of k/n."""

    count: int
    runs: int

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.count, self.runs)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.count} of {self.runs} recent runs (95 % interval {low:.0%} to {high:.0%})"


# --- building and bounding -------------------------------------------------------------


def code_of(test: TestResult) -> str:
    """A test's outcome in this run from its attempts alone: what quarantine or a label
    from history (both judgements, not observations) made of it is not recorded."""
    attempts = test.attempts
    if len(attempts) == 1:  # by far the most common: its one attempt says it
        return CODES[classify(attempts[0])]
    return CODES[verdict(attempts).outcome] if attempts else ABSENT


def run_of(
    tests: Sequence[TestResult],
    *,
    positions: Sequence[int],
    started: str,
    commit: str | None,
    branch: str | None,
    clean: bool,
    duration_s: float,
    line_percent: float | None,
    branch_percent: float | None,
    missing: Mapping[str, tuple[int, ...]],
    environment: str | None = None,
    reruns_stopped: bool = False,
) -> Run:
    """A run's record: each test's column at its position (in the history's ids)."""
    size = max(positions, default=-1) + 1
    codes, attempts, durations = [ABSENT] * size, ["0"] * size, [0] * size
    flaky = 0
    for index, test in zip(positions, tests, strict=True):
        runs = test.attempts
        if len(runs) == 1 and runs[0].teardown_error is None:  # code_of, inlined: the most
            codes[index] = CODES[runs[0].outcome]  # common case by far (and never flaky)
            attempts[index] = "1"
            durations[index] = round(runs[0].duration_s * 1000)
            continue
        codes[index] = code_of(test)
        flaky += codes[index] == "k"
        attempts[index] = str(min(9, len(runs)))
        durations[index] = round(runs[0].duration_s * 1000) if runs else 0
    return Run(
        started=started,
        commit=commit,
        branch=branch,
        clean=clean,
        duration_s=round(duration_s, 3),  # the record's precision, as the file holds it
        line_percent=line_percent,
        branch_percent=branch_percent,
        flaky=flaky,
        environment=environment,
        reruns_stopped=reruns_stopped,
        codes="".join(codes),
        attempts="".join(attempts),
        durations_ms=tuple(durations),
        missing=dict(missing),
    )


def extend(
    history: History, tests: Sequence[TestResult], *, max_runs: int, max_days: float, **run: Any
) -> History:
    """The history with one more run (``run`` holds ``run_of``'s metadata), bounded."""
    index = history.index
    known = len(index)
    # Each test's column: its id's, or the next new one, in the order the run has them.
    positions = [index.setdefault(test.id, len(index)) for test in tests]
    ids = (*history.ids, *itertools.islice(index, known, None))
    added = run_of(tests, positions=positions, **run)
    extended = History(ids=ids, runs=(*history.runs, added))
    return bound(extended, max_runs=max_runs, max_days=max_days)


def bound(history: History, *, max_runs: int, max_days: float) -> History:
    """The last ``max_runs`` runs no older than ``max_days`` before the newest; ids they use."""
    runs = history.runs[-max_runs:] if max_runs else ()
    if runs:
        newest = _when(runs[-1].started)
        runs = tuple(run for run in runs if newest - _when(run.started) <= timedelta(max_days))
    size = len(history.ids)
    padded = [run.codes.ljust(size, ABSENT) for run in runs]
    # A test is kept when one run has it: its column, read across the runs, is not all absent.
    if any(ABSENT not in codes for codes in padded):  # a run has every test: all are kept
        used = list(range(size))
    else:
        absent = (ABSENT,) * len(runs)
        columns = enumerate(zip(*padded, strict=True))
        used = [number for number, column in columns if column != absent]
    if len(used) == size:  # nothing to drop: the columns stay as they are, filled out
        return History(
            ids=history.ids,
            runs=tuple(
                msgspec.structs.replace(
                    run,
                    codes=run.codes.rstrip(ABSENT),
                    attempts=run.attempts.ljust(size, "0"),
                    durations_ms=(*run.durations_ms, *(0,) * (size - len(run.durations_ms))),
                )
                for run in runs
            ),
        )
    return History(
        ids=tuple(history.ids[number] for number in used),
        runs=tuple(
            msgspec.structs.replace(
                run,
                codes="".join(run.code(number) for number in used).rstrip(ABSENT),
                attempts="".join(_at(run.attempts, number, "0") for number in used),
                durations_ms=tuple(_at(run.durations_ms, number, 0) for number in used),
            )
            for run in runs
        ),
    )


def _at(column: Sequence[Any], index: int, absent: Any) -> Any:
    return column[index] if index < len(column) else absent


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- reading and writing ---------------------------------------------------------------


def read_history(path: Path, *, limit: int = LIMIT_BYTES) -> History:
    """The history in ``path``; none when the file does not exist. Bad files are errors."""
    if not path.is_file():
        return History()
    try:
        with gzip.open(path, "rb") as opened:
            raw = opened.read(limit + 1)
        if len(raw) > limit:
            raise ValueError(f"it unpacks to more than {limit} bytes")
        return parse_history(raw)
    except (OSError, EOFError, ValueError) as error:  # msgspec's errors are ValueErrors
        raise ConfigError(
            f"cannot read the test history {path} ({error}); delete it to start a new history."
        ) from None


def parse_history(raw: bytes) -> History:
    """A history from its JSON, every field of its type (it may come from an artifact).

    The schema version is read first, so that a file of another one says so rather
    than what its fields lack. A bad file is a ``ValueError`` that says where.
    """
    try:
        version = msgspec.json.decode(raw, type=_Version).schema_version
    except msgspec.ValidationError:  # not a JSON object: no version at all
        version = None
    if version != SCHEMA_VERSION:
        raise ValueError(f"not a testgate history of schema version {SCHEMA_VERSION}")
    stored = msgspec.json.decode(raw, type=_Stored)
    size = len(stored.ids)
    return History(ids=stored.ids, runs=tuple(_checked(run, size=size) for run in stored.runs))


def _checked(run: Run, *, size: int) -> Run:
    """A run as read: at most ``size`` outcome codes, each one of CODES (or absent), and a
    start that is a time, written as testgate writes one."""
    if len(run.codes) > size or not set(run.codes) <= {*OUTCOMES, ABSENT}:
        raise ValueError(f"bad outcome codes in the run of {run.started!r}")
    started = _when(run.started).isoformat()
    return run if started == run.started else msgspec.structs.replace(run, started=started)


def write_history(history: History, path: Path) -> None:
    """Write the history compressed, to a new file renamed into place (no link followed).

    msgspec encodes it, and gzip's level 1 packs it: for 100,000 tests, a third of level
    6's CPU time (0.03 s, not 0.1 s) for a file about a quarter larger.
    """
    stored = _Stored(ids=history.ids, runs=history.runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        owned_dir.open_binary(path) as out,
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed,
    ):
        packed.write(msgspec.json.encode(stored))


# --- the rules -------------------------------------------------------------------------


def entries(history: History, test_id: str) -> list[Entry]:
    """Every run that recorded ``test_id``, oldest first."""
    number = history.index.get(test_id)
    if number is None:
        return []
    return [
        Entry(
            run=run,
            outcome=OUTCOMES[run.code(number)],
            attempts=int(_at(run.attempts, number, "0")),
            duration_s=_at(run.durations_ms, number, 0) / 1000,
        )
        for run in history.runs
        if run.code(number) != ABSENT
    ]


def failures_on(history: History, test_id: str, *, branch: str) -> Rate:
    """How many of the recorded runs on ``branch`` the test failed in (at least once)."""
    return _failures(
        history, history.index.get(test_id), [r for r in history.runs if r.branch == branch]
    )


def _failures(history: History, number: int | None, runs: Sequence[Run]) -> Rate:
    if number is None:
        return Rate(0, 0)
    judged = [code for run in runs if (code := run.code(number)) in JUDGED_CODES]
    return Rate(sum(code in FAILED_CODES for code in judged), len(judged))


def label(
    tests: Sequence[TestResult],
    history: History,
    *,
    commit: str | None,
    clean: bool,
    base: str | None,
    counts_as: str,
    environment: str | None = None,
    reruns_stopped: str | None = None,
) -> tuple[TestResult, ...]:
    """This run's tests, with what history knows about their failures.

    A failure that history shows as flaky (it passed in a clean run of the same commit,
    or failed intermittently on the base branch) is labelled so, and counts as
    ``counts_as``: ``flaky`` (toward max-flaky), ``failed`` (toward failed-tests, labelled
    only) or ``quarantined`` (toward neither). A pass whose clean commit failed in an
    earlier run is flaky. A failure the base branch shows every time is labelled so.

    Only runs of this run's ``environment`` (its fingerprint) are evidence; a failure
    that passed on the same commit in another environment is labelled with why it is not
    counted as flaky. With ``reruns_stopped`` (this run's failures were not rerun: they
    look broken, not flaky) a failure stays failed, labelled with what history showed.
    """
    committed = [run for run in history.runs if clean and commit and run.commit == commit]
    same = [run for run in committed if run.clean and _same(run, environment)]
    elsewhere = [
        run
        for run in committed
        if run.clean and not run.reruns_stopped and not _same(run, environment)
    ]
    on_base = [
        run
        for run in history.runs
        if base is not None and run.branch == base and _same(run, environment)
    ]
    short = (commit or "")[:12]
    if not (
        same or on_base or elsewhere
    ):  # no run to judge by (a first run, a foreign JUnit merge)
        return tuple(tests)
    labelled = []
    for test in tests:
        number = history.index.get(test.id)
        failed = test.outcome in ("failed", "error")
        if number is None or not (failed or test.outcome == "passed"):
            labelled.append(test)
            continue
        opposite = "p" if failed else "fe"
        if any(run.code(number) in opposite for run in same):
            note = _join(
                test,
                f"{'passed' if failed else 'failed'} in an earlier run of the same commit {short}",
            )
            outcome = "flaky" if not failed else counts_as
        elif failed and (rate := _failures(history, number, on_base)).count:
            if rate.count == rate.runs:
                labelled.append(_with(test, note=_join(test, f"failing on {base} too: {rate}")))
                continue
            note, outcome = _join(test, f"flaky on {base}: failed {rate}"), counts_as
        elif failed and any(run.code(number) == "p" for run in elsewhere):
            note = (
                f"passed in an earlier run of the same commit {short} in another environment "
                "(another interpreter or other installed packages, or not recorded): not "
                "counted as flaky"
            )
            labelled.append(_with(test, note=_join(test, note)))
            continue
        else:
            labelled.append(test)
            continue
        if failed and reruns_stopped is not None and outcome != "failed":
            note += "; not counted as flaky: this run stopped its reruns, its failures look broken"
            outcome = "failed"
        if outcome == "failed":
            labelled.append(_with(test, note=note))
        else:
            labelled.append(_with(test, outcome=outcome, kind="nondeterministic", note=note))
    return tuple(labelled)


def _same(run: Run, environment: str | None) -> bool:
    """Whether ``run`` is evidence for a run of this environment: it had the same one (a
    run without a fingerprint has none), and its reruns were not stopped."""
    return environment is not None and run.environment == environment and not run.reruns_stopped


def _join(test: TestResult, note: str) -> str:
    return f"{test.note}; {note}" if test.note else note


def _with(
    test: TestResult, *, note: str, outcome: str | None = None, kind: str | None = None
) -> TestResult:
    if outcome is None:
        return msgspec.structs.replace(test, note=note)
    return msgspec.structs.replace(test, outcome=outcome, flaky_kind=kind, note=note)


def coverage_flips(
    history: History,
    *,
    commit: str | None,
    missing: Mapping[str, Iterable[int]],
    environment: str | None = None,
) -> list[str]:
    """Lines whose coverage differs from the last clean run of the same commit in the same
    ``environment`` (another environment may take other paths through the code)."""
    earlier = [
        run
        for run in history.runs
        if commit and run.commit == commit and run.clean and _same(run, environment)
    ]
    if not earlier:
        return []
    before = earlier[-1].missing
    found = []
    for path in sorted(set(before) | set(missing)):
        then, now = set(before.get(path, ())), set(missing.get(path, ()))
        if then - now:
            found.append(f"{path}: {_lines(then - now)} covered now, not in an earlier run")
        if now - then:
            found.append(f"{path}: {_lines(now - then)} not covered now, covered earlier")
    return [f"flaky coverage on commit {(commit or '')[:12]}: {text}" for text in found]


def _lines(lines: set[int]) -> str:
    """``line 2``, ``lines 3-5``: the word as the count wants it."""
    return f"{'line' if len(lines) == 1 else 'lines'} {_spans(lines)}"


def _spans(lines: set[int]) -> str:
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def flip_rates(history: History, *, branch: str | None) -> list[tuple[str, Rate]]:
    """Tests by flip rate over the runs on ``branch`` (all runs when None), highest first."""
    runs = [
        run
        for run in history.runs
        if (branch is None or run.branch == branch) and not run.reruns_stopped
    ]
    size = len(history.ids)
    rates = []
    padded = [run.codes.ljust(size, ABSENT) for run in runs]
    # Each test's column across the runs; one that never failed cannot flip, so only the
    # columns of tests that failed in some run are read (found by one scan of each run).
    failing = {found.start() for codes in padded for found in _FAILED_CODE.finditer(codes)}
    for number in sorted(failing):
        codes = [column[number] for column in padded]
        judged = [code for code in codes if code in JUDGED_CODES]
        flips, previous = 0, None
        for code in judged:
            failed = code in FAILED_CODES
            flips += code == "k" or (previous is not None and failed != previous)
            previous = failed
        if flips:
            rates.append((history.ids[number], Rate(flips, len(judged))))
    return sorted(rates, key=lambda item: (-item[1].count / item[1].runs, item[0]))


def passes_in_a_row(history: History, test_id: str, *, branch: str | None) -> int:
    """Recent runs (on ``branch``) the test passed in, counting back from the newest."""
    count = 0
    for entry in reversed(entries(history, test_id)):
        if branch is not None and entry.run.branch != branch:
            continue
        if entry.outcome != "passed":
            break
        count += 1
    return count
