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

from runner.results import Attempt, RunResult, TestResult

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
    """The ``<testcase>`` of one test, with its final attempt's result."""
    name = test.id.split("::")[-1] if "::" in test.id else test.id
    case = xunit2.TestCase(xml_text(name), xml_text(classname(test.id)), 0.0)
    case.time = round(sum(attempt.duration_s for attempt in test.attempts), 6)
    case._elem.set("file", xml_text(test.file))
    if test.line is not None:
        case._elem.set("line", str(test.line))
    last = test.attempts[-1]
    results = _results(test.outcome, last)
    if results:
        case.result = results  # type: ignore[assignment]  # junitparser's hint is too narrow
    if test.outcome in ("failed", "error"):
        if last.stdout:
            case.system_out = xml_text(last.stdout)
        if last.stderr:
            case.system_err = xml_text(last.stderr)
    return case


def _results(outcome: str, attempt: Attempt) -> list[Result]:
    message = xml_text(attempt.message or attempt.teardown_error)
    result: Result
    if outcome in ("failed", "error"):
        kind = Failure if outcome == "failed" else Error
        result = kind(message, _exception_type(message))
        result.text = xml_text(attempt.text)
    elif outcome in ("skipped", "xfailed"):
        result = Skipped(message, "pytest.skip" if outcome == "skipped" else "pytest.xfail")
    else:
        return []
    return [result]


def write_junit(result: RunResult, path: Path) -> None:
    """Write the run as one JUnit XML file with one test suite."""
    totals = result.totals
    suite = xunit2.TestSuite("testgate")  # type: ignore[no-untyped-call]
    # add_testcase recounts the whole suite after each case (quadratic); the counts
    # are set once below from the totals, which follow pytest's own counting.
    suite.extend([testcase(test) for test in result.tests])  # type: ignore[no-untyped-call]
    suite.tests = totals.tests
    suite.failures = totals.failed
    suite.errors = totals.errors
    suite.skipped = totals.skipped + totals.xfailed
    suite.time = round(result.run.suite_duration_s, 3)
    document = xunit2.JUnitXml()
    document.add_testsuite(suite)
    document.write(str(path), pretty=False)
