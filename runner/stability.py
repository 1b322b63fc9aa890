"""How sure a test is stable: the statistics of repeated runs and a flaky-detection job's record.

How many passing runs in a row justify "fails less than p of the time, at confidence c",
the Wilson interval of an observed failure rate, and ``Detection``, what ``testgate
flaky`` found (what ``flaky.json`` holds), which the renderers and the history read.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import ClassVar

import msgspec

SCHEMA_VERSION = 1


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


class TestVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """One test's verdict with its evidence, as ``flaky.json`` lists it.

    ``file``, ``failure_rate`` and ``interval_95`` follow from the id and the counts
    (``of`` computes them); they are fields so that msgspec writes the file straight
    from the model. No rate or interval for a test that never ran.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    id: str
    file: str
    line: int | None = None
    verdict: str
    runs: int
    failures: int
    failure_rate: float | None
    interval_95: tuple[float, float] | None
    statement: str
    from_history: int = 0

    @classmethod
    def of(
        cls,
        *,
        id: str,
        verdict: str,
        runs: int,
        failures: int,
        statement: str,
        line: int | None = None,
        from_history: int = 0,
    ) -> TestVerdict:
        """The verdict with what follows from its id and counts filled in."""
        return cls(
            id=id,
            file=id.split("::", 1)[0],  # relative to the project, as the node id is
            line=line,
            verdict=verdict,
            runs=runs,
            failures=failures,
            failure_rate=failures / runs if runs else None,
            interval_95=wilson_interval(failures, runs) if runs else None,
            statement=statement,
            from_history=from_history,
        )


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a flaky-detection job: what ``flaky.json`` holds, field by field.

    ``undecided`` names the tests of ``tests`` whose verdict is ``undecided`` (``of``
    fills it in), for a reader that wants only those.
    """

    schema_version: int = SCHEMA_VERSION
    confidence: float
    max_fail_rate: float
    runs_needed: int
    rounds: int
    duration_s: float
    stopped_by: str
    tests: tuple[TestVerdict, ...]
    undecided: tuple[str, ...]
    quarantine_stable: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        *,
        confidence: float,
        max_fail_rate: float,
        runs_needed: int,
        rounds: int,
        duration_s: float,
        stopped_by: str,
        tests: tuple[TestVerdict, ...],
        quarantine_stable: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
        problems: tuple[str, ...] = (),
    ) -> Detection:
        """The job's record with ``undecided`` filled in from ``tests``."""
        return cls(
            confidence=confidence,
            max_fail_rate=max_fail_rate,
            runs_needed=runs_needed,
            rounds=rounds,
            duration_s=duration_s,
            stopped_by=stopped_by,
            tests=tests,
            undecided=tuple(test.id for test in tests if test.verdict == "undecided"),
            quarantine_stable=quarantine_stable,
            warnings=warnings,
            problems=problems,
        )

    def count(self, verdict: str) -> int:
        return sum(test.verdict == verdict for test in self.tests)


def encode_detection(detection: Detection) -> bytes:
    """``flaky.json``: one-space indented, its duration to the millisecond."""
    rounded = msgspec.structs.replace(detection, duration_s=round(detection.duration_s, 3))
    return msgspec.json.format(msgspec.json.encode(rounded), indent=1) + b"\n"
