"""Write ``junit.xml``: one ``<testcase>`` per test, in the xunit2 shape pytest writes.

Consumers of pytest's JUnit XML (Jenkins, SonarQube, Codecov, GitHub reporting actions)
read it as they read pytest's own. testgate adds ``file`` and a 1-based ``line`` to each
test case, and keeps earlier attempts the way Maven Surefire does, so no attempt is lost.
Text is cleaned of characters XML 1.0 cannot hold, as pytest's own writer does.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from junitparser import Error, Failure, Skipped, xunit2
from junitparser.junitparser import Result

from runner.errors import InfraError
from runner.record import line_in_traceback
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


READ_LIMIT_BYTES = 2 * 1024 * 1024 * 1024
_FAILED = {"failure": "failed", "error": "error"}
_RETRIED = {
    "flakyFailure": "failed",
    "flakyError": "error",
    "rerunFailure": "failed",
    "rerunError": "error",
}
Located = dict[tuple[str, str | None], tuple[str, list[str]]]


def read_junit(path: Path, *, project: Path) -> tuple[TestResult, ...]:
    """The tests of a JUnit XML file (pytest's, ours, Surefire's), read as untrusted input.

    No DTD, entity or external reference is accepted, the file's size is bounded, and it
    is streamed: each ``<testcase>`` is turned into a result and freed. Node ids are
    rebuilt from ``file`` (or the dotted ``classname``, resolved against the project's
    files), and the failing line is read from the traceback's ``FILE:LINE:`` lines.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InfraError(f"cannot read {path}: {error}") from None
    if size > READ_LIMIT_BYTES:
        raise InfraError(f"{path} is {size} bytes, over testgate's limit of {READ_LIMIT_BYTES}.")
    tests: list[TestResult] = []
    zero_based = False
    located: Located = {}
    try:
        for event, element in DefusedET.iterparse(
            str(path), events=("start", "end"), forbid_dtd=True
        ):
            if event == "start":
                if element.tag == "testsuite":
                    zero_based = element.get("name") == "pytest"  # pytest's xunit1: 0-based
                continue
            if element.tag == "testcase":
                tests.append(_read_case(element, located, project=project, zero_based=zero_based))
                element.clear()
    except (DefusedXmlException, ElementTree.ParseError) as error:
        raise InfraError(f"{path} is not JUnit XML testgate can read safely: {error}") from None
    return tuple(tests)


def _read_case(
    element: Element, located: Located, *, project: Path, zero_based: bool
) -> TestResult:
    name = element.get("name") or "(unnamed)"
    key = (element.get("classname") or "", element.get("file"))
    if key not in located:  # thousands of test cases share a handful of classes
        located[key] = _locate(key[0], key[1], project)
    file, classes = located[key]
    final, message, text = "passed", None, None
    retried: list[tuple[str, str | None, str | None, float]] = []
    for child in element:
        if child.tag in _FAILED:
            final, message, text = _FAILED[child.tag], child.get("message"), child.text
        elif child.tag == "skipped":
            final = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            message = child.get("message")
        elif child.tag in _RETRIED:
            trace = child.findtext("stackTrace")
            retried.append((_RETRIED[child.tag], child.get("message"), trace, 0.0))
    # The testcase's own result is attempt 1 of a test that failed every time (its reruns
    # follow), and the last attempt of a flaky one (its failures came first).
    own = (final, message, text, float(element.get("time") or 0.0))
    runs = [own, *retried] if final in BROKEN else [*retried, own]
    attempts = tuple(
        Attempt(
            outcome=outcome,
            duration_s=seconds,
            number=number,
            kind="run" if number == 1 else "rerun",
            message=said,
            line=line_in_traceback(trace, file),
            text=trace,
        )
        for number, (outcome, said, trace, seconds) in enumerate(runs, 1)
    )
    declared = element.get("line")
    def_line = int(declared) + zero_based if declared and declared.isdigit() else None
    failing = next((attempt.line for attempt in attempts if attempt.line is not None), None)
    flaky = bool(retried) and final not in BROKEN
    failures = sum(attempt.outcome in BROKEN for attempt in attempts)
    return TestResult(
        id="::".join([file, *classes, name]),
        file=file,
        line=failing if failing is not None else def_line,
        outcome="flaky" if flaky else final,
        attempts=attempts,
        flaky_kind="nondeterministic" if flaky else None,
        note=f"failed {failures} of {len(attempts)} attempts" if retried else None,
    )


def _locate(classname: str, file: str | None, project: Path) -> tuple[str, list[str]]:
    """The test file and the classes inside it, from JUnit's attributes."""
    parts = [part for part in classname.split(".") if part]
    if file:
        module_parts = len(file.removesuffix(".py").replace("\\", "/").split("/"))
        return file.replace("\\", "/"), parts[module_parts:]
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (project / candidate).is_file():
            return candidate, parts[end:]
    return ("/".join(parts) + ".py") if parts else "(unknown)", []
