"""The results model: every test, every attempt, the totals, coverage and gate verdicts.

This is what ``results.json`` holds (schema in ``runner/schema/results.schema.json``),
and what every report, the summary and the gates are computed from. Nothing here does
I/O beyond turning the model into JSON and back, and reading a ``results.json``
(``read_results``) as untrusted input.

Every class here is a frozen msgspec struct: a run of 100,000 tests builds them more
than ten times faster than dataclasses, in less memory, and msgspec encodes and decodes
``results.json`` straight from and into them (one serializer for the whole model).
Only a gate differs on the wire: results.json keeps its ``passed``, not its status.

Totals follow pytest's own terminal summary: each test counts once in its outcome, and
a test whose teardown failed also counts one ``error``, as pytest counts it (a test that
passed and then broke in teardown is "1 passed, 1 error" there and here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import msgspec

from runner.errors import InfraError

SCHEMA_VERSION = 1
# A results.json is untrusted input (a shard's artifact): larger than this is refused.
RESULTS_LIMIT_BYTES = 1024 * 1024 * 1024

# Typed as literals: results.json is validated as it is decoded, and each of these
# strings is one shared object however many tests name it.
AttemptOutcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
TestOutcome = Literal[AttemptOutcome, "flaky", "quarantined"]
Kind = Literal["run", "rerun", "order-check"]
Phase = Literal["collect", "setup", "call", "teardown"]
ATTEMPT_OUTCOMES: tuple[AttemptOutcome, ...] = get_args(AttemptOutcome)
TEST_OUTCOMES: tuple[TestOutcome, ...] = (*ATTEMPT_OUTCOMES, "flaky", "quarantined")
# Outcomes that fail the "failed-tests" gate.
BROKEN = frozenset({"failed", "error"})
_COUNTED_ONCE = frozenset({"flaky", "quarantined"})


class Attempt(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One run of one test: setup, call and teardown taken together.

    ``outcome`` comes from setup and call; a failure in teardown is kept apart in
    ``teardown_error`` so that a test's own verdict and pytest's counting both stay exact.
    ``line`` is the 1-based line of the failing frame inside the test file, when one is.
    ``number`` counts the pytest runs (1 is the suite, 2.. the reruns); ``kind`` says
    which run it was: ``run``, ``rerun``, or ``order-check`` (a replay of the tests that
    ran before it on its worker, to tell order-dependent from nondeterministic).
    """

    outcome: AttemptOutcome
    duration_s: float
    number: int = 1
    kind: Kind = "run"
    message: str | None = None
    line: int | None = None
    phase: Phase | None = None
    worker: str | None = None
    teardown_error: str | None = None
    text: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class TestResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One test (a pytest node id, or a module that failed to collect) and its verdict."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    id: str
    file: str
    line: int | None
    outcome: TestOutcome
    flaky_kind: str | None = None
    note: str | None = None
    variant: str | None = None
    attempts: tuple[Attempt, ...]

    @property
    def categories(self) -> tuple[TestOutcome, ...]:
        """The categories a summary counts this test in, the way pytest counts a run.

        A failed teardown also counts as an error, as in pytest's own summary line;
        flaky and quarantined tests count once, as such.
        """
        last = self.attempts[-1]
        if last.teardown_error is None or self.outcome in _COUNTED_ONCE:
            return (self.outcome,)
        return (last.outcome, "error") if last.outcome != "error" else ("error",)


def classify(attempt: Attempt) -> AttemptOutcome:
    """The verdict of a test run once: a teardown failure breaks an otherwise good test."""
    if attempt.teardown_error is not None and attempt.outcome not in BROKEN:
        return "error"
    return attempt.outcome


class Rounded(dict[float, float]):
    """Seconds rounded to the microsecond (``round(seconds, 6)``), each value once.

    ``round`` with digits is slow (a decimal conversion each time) and a run's tests share
    few distinct times: read from a JUnit file's 3 decimals, 100,000 tests have a few
    hundred. Zero is never kept, so ``-0.0`` stays ``-0.0``; every duration is a float.
    """

    def __missing__(self, seconds: float) -> float:
        rounded = round(seconds, 6)
        if seconds:
            self[seconds] = rounded
        return rounded


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of tests by outcome, as pytest's summary line gives them."""

    tests: int = 0
    passed: int = 0
    failed: int = 0
    flaky: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    errors: int = 0
    quarantined: int = 0

    @classmethod
    def of(cls, tests: tuple[TestResult, ...]) -> Totals:
        counts = dict.fromkeys(TEST_OUTCOMES, 0)
        counts.update(Counter([test.outcome for test in tests]))  # one category each, mostly
        for test in tests:  # but a failed teardown may count an error too (see categories)
            if test.attempts[-1].teardown_error is not None:
                counts[test.outcome] -= 1
                for category in test.categories:
                    counts[category] += 1
        return cls(
            tests=len(tests),
            passed=counts["passed"],
            failed=counts["failed"],
            flaky=counts["flaky"],
            skipped=counts["skipped"],
            xfailed=counts["xfailed"],
            xpassed=counts["xpassed"],
            errors=counts["error"],
            quarantined=counts["quarantined"],
        )

    @property
    def ran(self) -> int:
        """Tests that ran: every test but the skipped ones."""
        return self.tests - self.skipped


class FileCoverage(msgspec.Struct, frozen=True, kw_only=True):
    """One file's line and branch coverage, in percent, as coverage.py's JSON report gives it."""

    path: str
    line_percent: float
    branch_percent: float


class CoverageSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Coverage totals exactly as coverage.py's JSON report states them.

    ``diff_percent`` is the change's coverage (``DiffCoverage.percent``) when measured;
    ``worst_files`` the least covered files, below 100 % only.
    """

    line_percent: float
    branch_percent: float
    covered_lines: int
    num_statements: int
    covered_branches: int
    num_branches: int
    precision: int = 0
    diff_percent: float | None = None
    worst_files: tuple[FileCoverage, ...] = ()
    # False when coverage.py's data holds no branch at all (lines only: none of the
    # measured code ran); its report then gives no branch figures, and branch_percent is
    # not a measurement.
    branch_data: bool = True

    @property
    def total_percent(self) -> float:
        """coverage.py's total, the number its ``fail_under`` judges: statements and
        branches covered over statements and branches (100 when there are none)."""
        measured = self.num_statements + self.num_branches
        if measured == 0:
            return 100.0
        return 100.0 * (self.covered_lines + self.covered_branches) / measured


Span = tuple[int, int]


def spans_text(spans: Iterable[Span]) -> str:
    """``3-5, 9``: line ranges as coverage.py's report shows missing lines."""
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in spans)


class FileDiff(msgspec.Struct, frozen=True, kw_only=True):
    """One changed file's changed statements and branches, and what of them is missing.

    ``missing_ranges`` are the uncovered changed lines as ``(first, last)`` ranges;
    ``missing_branches`` the ``(from line, to line)`` arcs not taken (negative: an exit).
    """

    path: str
    statements: int
    covered_statements: int
    missing_ranges: tuple[Span, ...]
    branches: int
    covered_branches: int
    missing_branches: tuple[Span, ...]


class DiffCoverage(msgspec.Struct, frozen=True, kw_only=True):
    """Coverage of a change against its base (``diff_coverage`` in results.json).

    ``percent`` combines changed statements and branches the way coverage.py's total
    does, ``line_percent`` is statements alone (what diff-cover reports); both are
    None when no counted line changed. Built by ``runner.diff_coverage.measure``.
    """

    base: str
    merge_base: str
    percent: float | None
    line_percent: float | None
    statements: int
    branches: int
    files: tuple[FileDiff, ...]


GateName = Literal[
    "failed-tests",
    "line-coverage",
    "branch-coverage",
    "diff-coverage",
    "max-flaky",
    "min-tests",
    "max-duration",
    "max-skipped",
    "quarantine-expiry",
    "sonar-quality-gate",
]
# pass and fail judge; deferred (a shard's suite-wide gate, judged by the merge) and
# skipped (nothing to judge) pass without judging; not judged (its data is known to be
# partial: an interrupted run, coverage a dead process took, exit 3; or not the code the
# coverage configuration names, exit 2) and not evaluated (pytest crashed, exit 3) fail the
# run without judging the suite.
GateStatus = Literal["pass", "fail", "deferred", "skipped", "not judged", "not evaluated"]
#: A threshold's unit where the gate's name leaves it open: ``max-skipped`` takes a count
#: of tests or a share of them (``5%``).
GateUnit = Literal["%"]
PASSING: frozenset[GateStatus] = frozenset({"pass", "deferred", "skipped"})
# How a gate that did not judge begins its message: results.json written before
# ``verdict`` keeps only ``passed``, so reading one back (``decode``) tells these apart by it.
UNJUDGED_PREFIX: dict[GateStatus, str] = {
    "deferred": "deferred to testgate merge",
    "skipped": "skipped: ",
    "not judged": "not judged: ",
    "not evaluated": "not evaluated: ",
}


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    """One quality gate: what was required, what was measured, and the verdict.

    ``threshold`` and ``actual`` are in the gate's unit (percent, tests, seconds); a
    count stays an integer through results.json, as the gate wrote it. ``unit`` is set
    where the name leaves the unit open: ``%`` for a ``max-skipped`` share.
    """

    name: GateName
    threshold: int | float | None
    actual: int | float | None
    status: GateStatus
    message: str
    unit: GateUnit | None = None

    @property
    def passed(self) -> bool:
        """Whether the gate lets the run pass: ``pass``, ``deferred``, ``skipped``."""
        return self.status in PASSING

    @classmethod
    def judged(
        cls,
        *,
        name: GateName,
        threshold: float | None,
        actual: float | None,
        passed: bool,
        message: str,
        unit: GateUnit | None = None,
    ) -> GateResult:
        """A gate that judged: ``pass`` or ``fail``."""
        return cls(
            name=name,
            threshold=threshold,
            actual=actual,
            status="pass" if passed else "fail",
            message=message,
            unit=unit,
        )


class _Gate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A gate as results.json holds it: ``passed``, and the status as ``verdict`` (schema
    version 1; an older file has no ``verdict``)."""

    name: GateName
    threshold: int | float | None
    actual: int | float | None
    passed: bool
    message: str
    verdict: GateStatus | None = None
    unit: GateUnit | None = None

    @classmethod
    def of(cls, gate: GateResult) -> _Gate:
        return cls(
            name=gate.name,
            threshold=gate.threshold,
            actual=gate.actual,
            passed=gate.passed,
            message=gate.message,
            verdict=gate.status,
            unit=gate.unit,
        )

    def gate(self) -> GateResult:
        status: GateStatus = "pass" if self.passed else "fail"
        for unjudged, prefix in UNJUDGED_PREFIX.items():
            if self.passed == (unjudged in PASSING) and self.message.startswith(prefix):
                status = unjudged
        if self.verdict is not None and self.passed == (self.verdict in PASSING):
            status = self.verdict
        return GateResult(
            name=self.name,
            threshold=self.threshold,
            actual=self.actual,
            status=status,
            message=self.message,
            unit=self.unit,
        )


OS_NAMES = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "windows"}


def variant_name(*, python: str, platform: str) -> str:
    """``py3.12-linux``: a matrix entry's Python (major.minor) and OS, as GitHub's runners
    name them, so two shards of one entry merge even on runners with other patch releases."""
    major_minor = ".".join(python.split(".")[:2])
    return f"py{major_minor}-{OS_NAMES.get(platform, platform)}"


class Phases(msgspec.Struct, frozen=True, kw_only=True):
    """Where a run's wall time went, in seconds, phase by phase.

    ``install_s``: installing and probing the project's environment; ``services_s``: what
    waiting for the services (and making the workers' databases) added after that, while
    ``services_ready_s`` is how long the slowest took to answer from its start, mostly
    hidden behind the installation; ``tests_s``: the suite's pytest run; ``reruns_s``:
    reruns and order checks; ``reports_s``: combining coverage, measuring the diff and
    judging the gates, up to writing the reports.
    """

    install_s: float = 0.0
    services_s: float = 0.0
    services_ready_s: float = 0.0
    tests_s: float = 0.0
    reruns_s: float = 0.0
    reports_s: float = 0.0

    def rounded(self) -> Phases:
        """To the millisecond, as results.json holds them."""
        return Phases(**{name: round(getattr(self, name), 3) for name in self.__struct_fields__})


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how the run happened; durations in seconds."""

    started: str
    duration_s: float
    suite_duration_s: float
    commit: str | None = None
    python: str | None = None
    platform: str | None = None
    variant: str | None = None
    shard: str | None = None
    pytest_exit_code: int | None = None
    rerun_duration_s: float = 0.0
    root: str | None = None
    plan: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    merged: tuple[str, ...] = ()
    interrupted: str | None = None
    not_run: tuple[str, ...] = ()
    deselected: int = 0  # tests collected and deselected by the project (-k, -m, a plugin)
    coverage_incomplete: str | None = None
    coverage_misconfigured: str | None = None
    phases: Phases | None = None
    workers: int | None = None
    workers_reason: str | None = None
    reruns_stopped: str | None = None
    environment: str | None = None  # the environment's fingerprint (runner.probe_cache)

    def rounded(self) -> RunInfo:
        """As results.json holds it: durations to the millisecond."""
        return msgspec.structs.replace(
            self,
            duration_s=round(self.duration_s, 3),
            suite_duration_s=round(self.suite_duration_s, 3),
            rerun_duration_s=round(self.rerun_duration_s, 3),
            phases=None if self.phases is None else self.phases.rounded(),
        )


class RunResult(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """The whole record of one run: what ``results.json`` holds."""

    run: RunInfo
    tests: tuple[TestResult, ...]
    coverage: CoverageSummary | None
    gates: tuple[GateResult, ...]
    diff_coverage: DiffCoverage | None = None

    @cached_property
    def totals(self) -> Totals:
        return Totals.of(self.tests)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_json(self) -> dict[str, Any]:
        """The document as JSON-ready dictionaries (``encode`` writes the same, streamed)."""
        before, after = self.around_tests()
        document: dict[str, Any] = msgspec.to_builtins({**before, "tests": self.tests, **after})
        return document

    def around_tests(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The document's fields before its ``tests``, and those after, in their order."""
        before = {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.rounded(),
            "totals": self.totals,
            "passed": self.passed,
        }
        after = {
            "coverage": self.coverage,
            "diff_coverage": self.diff_coverage,
            "gates": [_Gate.of(gate) for gate in self.gates],
        }
        return before, after

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """The run from the document ``to_json`` gives; a wrong shape is a ``ValueError``."""
        return decode(msgspec.json.encode(data))


ENCODE_BATCH = 5000
_ENCODER = msgspec.json.Encoder()


def encode(result: RunResult) -> Iterator[bytes]:
    """``results.json`` in pieces: the document of ``to_json``, a few thousand tests a piece.

    A large run (100,000 tests, or a merge of many shards) never exists as one tree of
    dictionaries nor as one string.
    """
    before, after = result.around_tests()
    yield _ENCODER.encode(before)[:-1] + b',"tests":['
    buffer = bytearray()
    for start in range(0, len(result.tests), ENCODE_BATCH):
        _ENCODER.encode_into(result.tests[start : start + ENCODE_BATCH], buffer)
        yield (b"," if start else b"") + buffer[1:-1]
    yield b"]," + _ENCODER.encode(after)[1:] + b"\n"


class _Document(msgspec.Struct):
    """``results.json`` as first read: the rest left as raw JSON until the version is known."""

    schema_version: Any = None
    run: msgspec.Raw = msgspec.Raw(b"null")
    tests: msgspec.Raw = msgspec.Raw(b"[]")
    coverage: msgspec.Raw = msgspec.Raw(b"null")
    diff_coverage: msgspec.Raw = msgspec.Raw(b"null")
    gates: msgspec.Raw = msgspec.Raw(b"null")


def decode(data: bytes, *, strings: dict[str, str] | None = None) -> RunResult:
    """A ``results.json`` read back; a wrong schema version or shape is a ``ValueError``.

    With ``strings`` (shared by the runs of one merge), each test's file and worker name
    is one object however many tests name it: 64 shards of 5,000 tests take a fifth
    less memory, for about a microsecond a test.
    """
    try:
        document = msgspec.json.decode(data, type=_Document)
        if document.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {document.schema_version!r}, not {SCHEMA_VERSION}")
        tests = _part(document.tests, tuple[TestResult, ...], name="tests")
        result = RunResult(
            run=_part(document.run, RunInfo, name="run"),
            tests=tests,
            coverage=_part(document.coverage, CoverageSummary | None, name="coverage"),
            gates=tuple(
                gate.gate() for gate in _part(document.gates, tuple[_Gate, ...], name="gates")
            ),
            diff_coverage=_part(document.diff_coverage, DiffCoverage | None, name="diff_coverage"),
        )
    except msgspec.DecodeError as error:
        raise ValueError(str(error)) from None
    if strings is not None:
        shared = tuple(_sharing(test, strings.setdefault) for test in tests)
        result = msgspec.structs.replace(result, tests=shared)
    return result


def _part(raw: msgspec.Raw, kind: Any, *, name: str) -> Any:
    """One field of the document, decoded; an error names where in the whole document."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as error:
        where, at, path = str(error).partition(" - at `$")
        raise ValueError(f"{where} - at `$.{name}{path if at else '`'}") from None


def read_results(path: Path, *, strings: dict[str, str] | None = None) -> RunResult:
    """A results.json, read as untrusted input: no symbolic link, bounded, its schema
    version checked.

    ``strings`` lets the runs of one merge share their tests' file and worker names.
    """
    try:
        if path.is_symlink():  # a file elsewhere, whose text its errors would show
            raise ValueError("a symbolic link: only the file a run wrote there is read")
        if path.stat().st_size > RESULTS_LIMIT_BYTES:
            raise ValueError(f"over {RESULTS_LIMIT_BYTES} bytes")
        return decode(path.read_bytes(), strings=strings)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InfraError(f"{path} is not a readable testgate results.json ({error}).") from None


def _sharing(test: TestResult, share: Callable[[str, str], str]) -> TestResult:
    attempts = tuple(
        attempt
        if attempt.worker is None
        else msgspec.structs.replace(attempt, worker=share(attempt.worker, attempt.worker))
        for attempt in test.attempts
    )
    return msgspec.structs.replace(test, file=share(test.file, test.file), attempts=attempts)
