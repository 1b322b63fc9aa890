"""The results model: every test, every attempt, the totals, coverage and gate verdicts.

This is what ``results.json`` holds (schema in ``runner/schema/results.schema.json``),
and what every report, the summary and the gates are computed from. Nothing here does
I/O beyond turning the model into JSON-ready dictionaries and back.

Totals follow pytest's own terminal summary: each test counts once in its outcome, and
a test whose teardown failed also counts one ``error``, as pytest counts it (a test that
passed and then broke in teardown is "1 passed, 1 error" there and here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

ATTEMPT_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
TEST_OUTCOMES = (*ATTEMPT_OUTCOMES, "flaky", "quarantined")
# Outcomes that fail the "failed-tests" gate.
BROKEN = frozenset({"failed", "error"})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of one test: setup, call and teardown taken together.

    ``outcome`` comes from setup and call; a failure in teardown is kept apart in
    ``teardown_error`` so that a test's own verdict and pytest's counting both stay exact.
    ``line`` is the 1-based line of the failing frame inside the test file, when one is.
    ``number`` counts the pytest runs (1 is the suite, 2.. the reruns); ``kind`` says
    which run it was: ``run``, ``rerun``, or ``order-check`` (a replay of the tests that
    ran before it on its worker, to tell order-dependent from nondeterministic).
    """

    outcome: str
    duration_s: float
    number: int = 1
    kind: str = "run"
    message: str | None = None
    line: int | None = None
    phase: str | None = None
    worker: str | None = None
    teardown_error: str | None = None
    text: str | None = None
    stdout: str | None = None
    stderr: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "outcome": self.outcome,
            "duration_s": round(self.duration_s, 6),
            "number": self.number,
            "kind": self.kind,
        }
        for name in ("message", "line", "phase", "worker", "teardown_error"):
            data[name] = getattr(self, name)
        for name in ("text", "stdout", "stderr"):
            if getattr(self, name):
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            outcome=data["outcome"],
            duration_s=float(data["duration_s"]),
            number=int(data.get("number", 1)),
            kind=str(data.get("kind", "run")),
            message=data.get("message"),
            line=data.get("line"),
            phase=data.get("phase"),
            worker=data.get("worker"),
            teardown_error=data.get("teardown_error"),
            text=data.get("text"),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
        )


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test (a pytest node id, or a module that failed to collect) and its verdict."""

    __test__ = False  # not a pytest test class, despite the name

    id: str
    file: str
    line: int | None
    outcome: str
    attempts: tuple[Attempt, ...]
    flaky_kind: str | None = None
    note: str | None = None
    variant: str | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories a summary counts this test in, the way pytest counts a run.

        A failed teardown also counts as an error, as in pytest's own summary line;
        flaky and quarantined tests count once, as such.
        """
        last = self.attempts[-1]
        if last.teardown_error is None or self.outcome in ("flaky", "quarantined"):
            return (self.outcome,)
        return (last.outcome, "error") if last.outcome != "error" else ("error",)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.file,
            "line": self.line,
            "outcome": self.outcome,
            "flaky_kind": self.flaky_kind,
            "note": self.note,
            "variant": self.variant,
            "attempts": [attempt.to_json() for attempt in self.attempts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            id=data["id"],
            file=data["file"],
            line=data.get("line"),
            outcome=data["outcome"],
            flaky_kind=data.get("flaky_kind"),
            note=data.get("note"),
            variant=data.get("variant"),
            attempts=tuple(Attempt.from_json(item) for item in data["attempts"]),
        )


def classify(attempt: Attempt) -> str:
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

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateResult:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


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
    problems: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["duration_s"] = round(self.duration_s, 3)
        data["suite_duration_s"] = round(self.suite_duration_s, 3)
        data["rerun_duration_s"] = round(self.rerun_duration_s, 3)
        data["problems"] = list(self.problems)
        data["warnings"] = list(self.warnings)
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
            problems=tuple(data.get("problems", ())),
            warnings=tuple(data.get("warnings", ())),
        )


@dataclass(frozen=True)
class RunResult:
    """The whole record of one run: what ``results.json`` holds."""

    run: RunInfo
    tests: tuple[TestResult, ...]
    coverage: CoverageSummary | None
    gates: tuple[GateResult, ...]
    diff_coverage: dict[str, Any] | None = None

    @property
    def totals(self) -> Totals:
        return Totals.of(self.tests)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run.to_json(),
            "totals": self.totals.to_json(),
            "passed": self.passed,
            "tests": [test.to_json() for test in self.tests],
            "coverage": None if self.coverage is None else self.coverage.to_json(),
            "diff_coverage": self.diff_coverage,
            "gates": [gate.to_json() for gate in self.gates],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        coverage = data.get("coverage")
        return cls(
            run=RunInfo.from_json(data["run"]),
            tests=tuple(TestResult.from_json(item) for item in data["tests"]),
            coverage=None if coverage is None else CoverageSummary.from_json(coverage),
            gates=tuple(GateResult.from_json(item) for item in data["gates"]),
            diff_coverage=data.get("diff_coverage"),
        )
