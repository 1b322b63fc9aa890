"""The results model: every test, every attempt, the totals, coverage and gate verdicts.

This is what ``results.json`` holds (schema in ``runner/schema/results.schema.json``),
and what every report, the summary and the gates are computed from. Nothing here does
I/O beyond turning the model into JSON and back.

Tests and attempts are msgspec structs: frozen like the dataclasses around them, but a
run of 100,000 tests builds them more than ten times faster, in less memory, and
msgspec encodes and decodes ``results.json`` straight from and into them.

Totals follow pytest's own terminal summary: each test counts once in its outcome, and
a test whose teardown failed also counts one ``error``, as pytest counts it (a test that
passed and then broke in teardown is "1 passed, 1 error" there and here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, get_args

import msgspec

SCHEMA_VERSION = 1

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


@dataclass(frozen=True)
class Totals:
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
        for test in tests:
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

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class CoverageSummary:
    """Coverage totals exactly as coverage.py's JSON report states them."""

    line_percent: float
    branch_percent: float
    covered_lines: int
    num_statements: int
    covered_branches: int
    num_branches: int
    precision: int = 0
    diff_percent: float | None = None
    worst_files: tuple[tuple[str, float, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["worst_files"] = [
            {"path": path, "line_percent": line, "branch_percent": branch}
            for path, line, branch in self.worst_files
        ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoverageSummary:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        fields["worst_files"] = tuple(
            (item["path"], item["line_percent"], item["branch_percent"])
            for item in data.get("worst_files", ())
        )
        return cls(**fields)


@dataclass(frozen=True)
class GateResult:
    """One quality gate: what was required, what was measured, and the verdict."""

    name: str
    threshold: float | None
    actual: float | None
    passed: bool
    message: str

    @property
    def verdict(self) -> str:
        """``pass`` or ``fail``; a gate that did not judge says why in its message's first
        words: ``not judged`` (its data is known to be partial) and ``not evaluated``
        (pytest crashed) fail the run without judging the suite, ``deferred`` (to merge)
        and ``skipped`` pass it. Every report shows this word."""
        words = ("deferred", "skipped") if self.passed else ("not judged", "not evaluated")
        said = next((word for word in words if self.message.startswith(word)), None)
        return said or ("pass" if self.passed else "fail")

    def to_json(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**fields, "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateResult:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


OS_NAMES = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "windows"}


def variant_name(*, python: str, platform: str) -> str:
    """``py3.12-linux``: a matrix entry's Python (major.minor) and OS, as GitHub's runners
    name them, so two shards of one entry merge even on runners with other patch releases."""
    major_minor = ".".join(python.split(".")[:2])
    return f"py{major_minor}-{OS_NAMES.get(platform, platform)}"


@dataclass(frozen=True)
class RunInfo:
    """Where and how the run happened."""

    started: str
    duration_s: float
    suite_duration_s: float
    commit: str | None
    python: str | None
    platform: str | None
    variant: str | None
    shard: str | None = None
    pytest_exit_code: int | None = None
    rerun_duration_s: float = 0.0
    root: str | None = None
    plan: str | None = None
    problems: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())
    merged: tuple[str, ...] = field(default=())
    interrupted: str | None = None
    not_run: tuple[str, ...] = field(default=())
    coverage_incomplete: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["not_run"] = list(self.not_run)
        data["duration_s"] = round(self.duration_s, 3)
        data["suite_duration_s"] = round(self.suite_duration_s, 3)
        data["rerun_duration_s"] = round(self.rerun_duration_s, 3)
        data["problems"] = list(self.problems)
        data["warnings"] = list(self.warnings)
        data["merged"] = list(self.merged)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        return cls(
            started=data["started"],
            duration_s=float(data["duration_s"]),
            suite_duration_s=float(data["suite_duration_s"]),
            commit=data.get("commit"),
            python=data.get("python"),
            platform=data.get("platform"),
            variant=data.get("variant"),
            shard=data.get("shard"),
            pytest_exit_code=data.get("pytest_exit_code"),
            rerun_duration_s=float(data.get("rerun_duration_s", 0.0)),
            root=data.get("root"),
            plan=data.get("plan"),
            problems=tuple(data.get("problems", ())),
            warnings=tuple(data.get("warnings", ())),
            merged=tuple(data.get("merged", ())),
            interrupted=data.get("interrupted"),
            not_run=tuple(data.get("not_run", ())),
            coverage_incomplete=data.get("coverage_incomplete"),
        )


@dataclass(frozen=True)
class RunResult:
    """The whole record of one run: what ``results.json`` holds."""

    run: RunInfo
    tests: tuple[TestResult, ...]
    coverage: CoverageSummary | None
    gates: tuple[GateResult, ...]
    diff_coverage: dict[str, Any] | None = None

    @cached_property
    def totals(self) -> Totals:
        return Totals.of(self.tests)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_json(self) -> dict[str, Any]:
        """The document as JSON-ready dictionaries (``encode`` writes the same, streamed)."""
        before, after = self.around_tests()
        return {**before, "tests": msgspec.to_builtins(self.tests), **after}

    def around_tests(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The document's fields before its ``tests``, and those after, in their order."""
        before = {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.to_json(),
            "totals": self.totals.to_json(),
            "passed": self.passed,
        }
        after = {
            "coverage": None if self.coverage is None else self.coverage.to_json(),
            "diff_coverage": self.diff_coverage,
            "gates": [gate.to_json() for gate in self.gates],
        }
        return before, after

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        return cls.of_json(data, tests=msgspec.convert(data["tests"], tuple[TestResult, ...]))

    @classmethod
    def of_json(cls, data: dict[str, Any], *, tests: tuple[TestResult, ...]) -> RunResult:
        """The run from its JSON fields, with its tests already decoded."""
        coverage = data.get("coverage")
        return cls(
            run=RunInfo.from_json(data["run"]),
            tests=tests,
            coverage=None if coverage is None else CoverageSummary.from_json(coverage),
            gates=tuple(GateResult.from_json(item) for item in data["gates"]),
            diff_coverage=data.get("diff_coverage"),
        )


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
    """``results.json`` as first read: the tests left as raw JSON until the version is known."""

    schema_version: Any = None
    run: Any = None
    tests: msgspec.Raw = msgspec.Raw(b"[]")
    coverage: Any = None
    diff_coverage: Any = None
    gates: Any = None


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
        tests = msgspec.json.decode(document.tests, type=tuple[TestResult, ...])
    except msgspec.DecodeError as error:  # a ValidationError is one too
        raise ValueError(str(error)) from None
    if strings is not None:
        tests = tuple(_sharing(test, strings.setdefault) for test in tests)
    return RunResult.of_json(msgspec.structs.asdict(document), tests=tests)


def _sharing(test: TestResult, share: Callable[[str, str], str]) -> TestResult:
    attempts = tuple(
        attempt
        if attempt.worker is None
        else msgspec.structs.replace(attempt, worker=share(attempt.worker, attempt.worker))
        for attempt in test.attempts
    )
    return msgspec.structs.replace(test, file=share(test.file, test.file), attempts=attempts)
