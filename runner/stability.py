"""How sure a test is stable: the statistics of repeated runs and a flaky-detection job's record.

How many passing runs in a row justify "fails less than p of the time, at confidence c",
the Wilson interval of an observed failure rate, and ``Detection``, what ``testgate
flaky`` found (what ``flaky.json`` holds), which the renderers and the history read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any


def runs_needed(*, confidence: float, max_fail_rate: float) -> int:
    """Passing runs in a row after which "fails less than p of the time" holds at c.

    n = ceil(ln(1 - c) / ln(1 - p)): a test failing with probability p or more would
    have failed at least once in n runs with probability c or more.
    """
    return math.ceil(math.log(1 - confidence) / math.log(1 - max_fail_rate))


def wilson_interval(failures: int, runs: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a failure rate observed as ``failures`` in ``runs``."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = failures / runs
    denominator = 1 + z * z / runs
    centre = (rate + z * z / (2 * runs)) / denominator
    spread = z * math.sqrt(rate * (1 - rate) / runs + z * z / (4 * runs * runs)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


@dataclass(frozen=True)
class TestVerdict:
    """One test's verdict with its evidence."""

    __test__ = False  # not a pytest test class, despite the name

    id: str
    verdict: str
    runs: int
    failures: int
    statement: str
    line: int | None = None
    from_history: int = 0

    @property
    def file(self) -> str:
        """The test's file, from its node id (relative to the project)."""
        return self.id.split("::", 1)[0]

    def to_json(self) -> dict[str, Any]:
        rate = self.failures / self.runs if self.runs else None
        interval = list(wilson_interval(self.failures, self.runs)) if self.runs else None
        return {
            "id": self.id,
            "file": self.file,
            "line": self.line,
            "verdict": self.verdict,
            "runs": self.runs,
            "failures": self.failures,
            "failure_rate": rate,
            "interval_95": interval,
            "statement": self.statement,
            "from_history": self.from_history,
        }


@dataclass(frozen=True)
class Detection:
    """The outcome of a flaky-detection job: what ``flaky.json`` holds."""

    confidence: float
    max_fail_rate: float
    runs_needed: int
    rounds: int
    duration_s: float
    stopped_by: str
    tests: tuple[TestVerdict, ...]
    quarantine_stable: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    def count(self, verdict: str) -> int:
        return sum(test.verdict == verdict for test in self.tests)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "confidence": self.confidence,
            "max_fail_rate": self.max_fail_rate,
            "runs_needed": self.runs_needed,
            "rounds": self.rounds,
            "duration_s": round(self.duration_s, 3),
            "stopped_by": self.stopped_by,
            "tests": [test.to_json() for test in self.tests],
            "undecided": [test.id for test in self.tests if test.verdict == "undecided"],
            "quarantine_stable": list(self.quarantine_stable),
            "warnings": list(self.warnings),
            "problems": list(self.problems),
        }
