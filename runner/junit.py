"""Write ``junit.xml``: one ``<testcase>`` per test, in the xunit2 shape pytest writes.

Consumers of pytest's JUnit XML (Jenkins, SonarQube, Codecov, GitHub reporting actions)
read it as they read pytest's own. testgate adds ``file`` and a 1-based ``line`` to each
test case, and keeps earlier attempts the way Maven Surefire does, so no attempt is lost.
Text is cleaned of characters XML 1.0 cannot hold, as pytest's own writer does.
"""

from __future__ import annotations

import re
from pathlib import Path

from junitparser import Error, Failure, Skipped, xunit2
from junitparser.junitparser import Result

from runner.results import BROKEN, Attempt, RunResult, TestResult, Totals, classify

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str | None) -> str:
    """Text with the characters XML 1.0 cannot carry shown as ``#xNN``."""
    if not text:
        return ""
    return _ILLEGAL_XML.sub(lambda match: f"#x{ord(match.group()):02X}", text)


def classname(test_id: str) -> str:
    """pytest's classname: the module path dotted, then any classes."""
    parts = test_id.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:-1]]) if len(parts) > 1 else module


def _exception_type(message: str | None) -> str:
    head = (message or "").split(":", 1)[0].strip()
    return head if head.isidentifier() else "failure"


def testcase(test: TestResult) -> xunit2.TestCase:
    """The ``<testcase>`` of one test: its verdict, and every other failed attempt.

    Attempt 1 gives the final result of a test that failed every time, with its reruns
    as ``<rerunFailure>``/``<rerunError>``; a flaky test passes, with each failed attempt
    as ``<flakyFailure>``/``<flakyError>``. Order checks are evidence, not attempts.
    """
    name = test.id.split("::")[-1] if "::" in test.id else test.id
    case = xunit2.TestCase(xml_text(name), xml_text(classname(test.id)), 0.0)
    case.time = round(test.attempts[0].duration_s, 6)
    case._elem.set("file", xml_text(test.file))
    if test.line is not None:
        case._elem.set("line", str(test.line))
    runs = [attempt for attempt in test.attempts if attempt.kind != "order-check"]
    first = runs[0]
    results = _results(test, first)
    if results:
        case.result = results  # type: ignore[assignment]  # junitparser's hint is too narrow
    if test.outcome in ("failed", "error"):
        if first.stdout:
            case.system_out = xml_text(first.stdout)
        if first.stderr:
            case.system_err = xml_text(first.stderr)
    interim = _INTERIM.get(test.outcome)
    if interim is not None:
        retried = runs if test.outcome in ("flaky", "quarantined") else runs[1:]
        for attempt in retried:
            if classify(attempt) in BROKEN:
                case.add_interim_result(_interim(interim, attempt))
    return case


_SKIP_TYPES = {
    "skipped": "pytest.skip",
    "xfailed": "pytest.xfail",
    "quarantined": "testgate.quarantine",
}
_INTERIM = {
    "flaky": (xunit2.FlakyFailure, xunit2.FlakyError),
    "quarantined": (xunit2.FlakyFailure, xunit2.FlakyError),
    "failed": (xunit2.RerunFailure, xunit2.RerunError),
    "error": (xunit2.RerunFailure, xunit2.RerunError),
}


def _interim(
    kinds: tuple[type[xunit2.InterimResult], type[xunit2.InterimResult]], attempt: Attempt
) -> xunit2.InterimResult:
    message = xml_text(attempt.message or attempt.teardown_error)
    kind = kinds[0] if classify(attempt) == "failed" else kinds[1]
    element = kind(message, _exception_type(message))
    if attempt.text:
        element.stack_trace = xml_text(attempt.text)
    if attempt.stdout:
        element.system_out = xml_text(attempt.stdout)
    if attempt.stderr:
        element.system_err = xml_text(attempt.stderr)
    return element


def _results(test: TestResult, attempt: Attempt) -> list[Result]:
    outcome = test.outcome
    message = xml_text(attempt.message or attempt.teardown_error)
    result: Result
    if outcome in ("failed", "error"):
        kind = Failure if outcome == "failed" else Error
        result = kind(message, _exception_type(message))
        result.text = xml_text(attempt.text)
    elif outcome in ("skipped", "xfailed", "quarantined"):
        if outcome == "quarantined":
            message = xml_text(test.note)
        result = Skipped(message, _SKIP_TYPES[outcome])
    else:
        return []
    return [result]


def write_junit(result: RunResult, path: Path) -> None:
    """Write the run as JUnit XML: one test suite, or one per variant after a merge."""
    variants: dict[str | None, list[TestResult]] = {}
    for test in result.tests:
        variants.setdefault(test.variant, []).append(test)
    document = xunit2.JUnitXml()
    for variant, tests in variants.items() or [(None, [])]:
        totals = Totals.of(tuple(tests))
        suite = xunit2.TestSuite(variant or "testgate")  # type: ignore[no-untyped-call]
        # add_testcase recounts the whole suite after each case (quadratic); the counts
        # are set once below from the totals, which follow pytest's own counting.
        suite.extend([testcase(test) for test in tests])  # type: ignore[no-untyped-call]
        suite.tests = totals.tests
        suite.failures = totals.failed
        suite.errors = totals.errors
        suite.skipped = totals.skipped + totals.xfailed + totals.quarantined
        suite.time = round(sum(test.attempts[0].duration_s for test in tests), 3)
        document.add_testsuite(suite)
    document.write(str(path), pretty=False)
