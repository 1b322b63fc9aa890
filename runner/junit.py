"""JUnit XML in and out: ``junit.xml`` in the xunit2 shape pytest writes, and reading others'.

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
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET

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


def testcase_xml(test: TestResult) -> str:
    """The ``<testcase>`` of one test: its verdict, and every other failed attempt.

    Attempt 1 gives the final result of a test that failed every time, with its reruns
    as ``<rerunFailure>``/``<rerunError>``; a flaky test passes, with each failed attempt
    as ``<flakyFailure>``/``<flakyError>``. Order checks are evidence, not attempts.
    """
    name = test.id.split("::")[-1] if "::" in test.id else test.id
    runs = [attempt for attempt in test.attempts if attempt.kind != "order-check"]
    first = runs[0]
    line = "" if test.line is None else f' line="{test.line}"'
    parts = [
        f"<testcase classname={_attr(classname(test.id))} name={_attr(name)} "
        f'time="{round(first.duration_s, 6)}" file={_attr(test.file)}{line}>'
    ]
    outcome = test.outcome
    message = first.message or first.teardown_error
    if outcome in BROKEN:
        tag = "failure" if outcome == "failed" else "error"
        parts.append(_element(tag, message, _exception_type(message), first.text))
        parts += [_text("system-out", first.stdout), _text("system-err", first.stderr)]
    elif outcome in _SKIP_TYPES:
        said = test.note if outcome == "quarantined" else message
        parts.append(_element("skipped", said, _SKIP_TYPES[outcome], None))
    interim = _INTERIM.get(outcome)
    if interim is not None:
        retried = runs if outcome in ("flaky", "quarantined") else runs[1:]
        for attempt in retried:
            verdict = classify(attempt)
            if verdict in BROKEN:
                tag = interim[0] if verdict == "failed" else interim[1]
                said = attempt.message or attempt.teardown_error
                parts.append(
                    f"<{tag} message={_attr(said)} type={_attr(_exception_type(said))}>"
                    + _text("stackTrace", attempt.text)
                    + _text("system-out", attempt.stdout)
                    + _text("system-err", attempt.stderr)
                    + f"</{tag}>"
                )
    parts.append("</testcase>")
    return "".join(parts)


_SKIP_TYPES = {
    "skipped": "pytest.skip",
    "xfailed": "pytest.xfail",
    "quarantined": "testgate.quarantine",
}
_INTERIM = {
    "flaky": ("flakyFailure", "flakyError"),
    "quarantined": ("flakyFailure", "flakyError"),
    "failed": ("rerunFailure", "rerunError"),
    "error": ("rerunFailure", "rerunError"),
}


def _attr(value: str | None) -> str:
    return quoteattr(xml_text(value))


def _text(tag: str, value: str | None) -> str:
    return f"<{tag}>{escape(xml_text(value))}</{tag}>" if value else ""


def _element(tag: str, message: str | None, kind: str, body: str | None) -> str:
    return f"<{tag} message={_attr(message)} type={_attr(kind)}>{escape(xml_text(body))}</{tag}>"


def write_junit(result: RunResult, path: Path) -> None:
    """Write the run as JUnit XML: one test suite, or one per variant after a merge.

    Streamed test case by test case: a run of any size is written in little memory.
    """
    variants: dict[str | None, list[TestResult]] = {}
    for test in result.tests:
        variants.setdefault(test.variant, []).append(test)
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>')
        for variant, tests in variants.items() or [(None, [])]:
            totals = Totals.of(tuple(tests))
            seconds = round(sum(test.attempts[0].duration_s for test in tests), 3)
            skipped = totals.skipped + totals.xfailed + totals.quarantined
            out.write(
                f'<testsuite name={_attr(variant or "testgate")} tests="{totals.tests}" '
                f'errors="{totals.errors}" failures="{totals.failed}" skipped="{skipped}" '
                f'time="{seconds}">'
            )
            for test in tests:
                out.write(testcase_xml(test))
            out.write("</testsuite>")
        out.write("</testsuites>\n")


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
    seconds = float(element.get("time") or 0.0)
    declared = element.get("line")
    def_line = int(declared) + zero_based if declared and declared.isdigit() else None
    if not len(element):  # a passing test case, by far the most common: kept fast
        return TestResult(
            id="::".join([file, *classes, name]),
            file=file,
            line=def_line,
            outcome="passed",
            attempts=(Attempt(outcome="passed", duration_s=seconds),),
        )
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
    own = (final, message, text, seconds)
    runs = [own, *retried] if final in BROKEN else [*retried, own]
    attempts = tuple(
        Attempt(
            outcome=outcome,
            duration_s=spent,
            number=number,
            kind="run" if number == 1 else "rerun",
            message=said,
            line=line_in_traceback(trace, file),
            text=trace,
        )
        for number, (outcome, said, trace, spent) in enumerate(runs, 1)
    )
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
