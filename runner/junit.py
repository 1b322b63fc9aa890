"""JUnit XML in and out: ``junit.xml`` in the xunit2 shape pytest writes, and reading others'.

Consumers of pytest's JUnit XML (Jenkins, SonarQube, Codecov, GitHub reporting actions)
read it as they read pytest's own. testgate adds ``file`` and a 1-based ``line`` to each
test case, and keeps earlier attempts the way Maven Surefire does, so no attempt is lost.
Text is cleaned of characters XML 1.0 cannot hold, as pytest's own writer does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar
from xml.parsers import expat

from runner.errors import InfraError
from runner.output import bounded
from runner.owned_dir import open_text
from runner.record import MESSAGE_LIMIT, TEXT_LIMIT, line_in_traceback
from runner.results import (
    BROKEN,
    Attempt,
    AttemptOutcome,
    RunResult,
    TestResult,
    Totals,
    classify,
)

# XML's escapes, as xml.sax.saxutils writes them (whose import pulls in urllib.request):
# in an attribute, whitespace is kept as character references, or a reader normalizes it.
# Each is one str.replace, in this order (``&`` first): far faster than str.translate.
_IN_TEXT = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_IN_ATTRIBUTE = (*_IN_TEXT, ('"', "&quot;"), ("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;"))


def _escaped(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each character of ``escapes`` replaced by its reference."""
    for character, reference in escapes:
        if character in text:
            text = text.replace(character, reference)
    return text


_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str | None) -> str:
    """Text with the characters XML 1.0 cannot carry shown as ``#xNN``."""
    if not text:
        return ""
    return _ILLEGAL_XML.sub(lambda match: f"#x{ord(match.group()):02X}", text)


def split_node_id(test_id: str) -> tuple[str, str]:
    """A node id's owner (file, classes) and name, split as pytest's junitxml does.

    The parametrization ``[...]`` stays whole in the name: the split is at the last
    ``::`` before the first ``[``, so ``test_x[a::b]`` is the test ``test_x[a::b]``.
    """
    base, bracket, parameters = test_id.partition("[")
    owner, _, name = base.rpartition("::")
    return owner, name + bracket + parameters


def classname(test_id: str) -> str:
    """pytest's classname: the module path dotted, then any classes."""
    return _dotted(split_node_id(test_id)[0] or test_id)


def _dotted(owner: str) -> str:
    """A test file's path, then its classes (``a/b.py::K``), as one dotted name."""
    parts = owner.split("::")
    return ".".join([parts[0].removesuffix(".py").replace("/", "."), *parts[1:]])


_SHARED = 65536  # strings kept for reuse per kind, at most (a few MB)
_K = TypeVar("_K")


class _Made(dict[_K, str]):
    """Strings made once per key by ``make`` (the first ``shared`` keys are kept)."""

    def __init__(self, make: Callable[[_K], str], *, shared: int) -> None:
        super().__init__()
        self._make = make
        self._shared = shared

    def __missing__(self, key: _K) -> str:
        made = self._make(key)
        if len(self) < self._shared:
            self[key] = made
        return made


class _Cases:
    """Writes ``<testcase>`` elements; what thousands of them share is made once.

    A large run names thousands of files and classes, and each passing test case is only
    its attributes: each class's ``classname``, each file's ``file`` and line, each test
    name that many classes share (``test_create``) is escaped once per write, and each
    ``Attempt`` that many test cases share (``read_junit``'s) has its time formatted once.
    """

    def __init__(self, *, shared: int = _SHARED) -> None:
        self._owners = _Made[str](
            lambda owner: f"<testcase classname={_attr(_dotted(owner))} name=", shared=shared
        )
        self._names = _Made[str](_attr, shared=shared)
        self._files = _Made[tuple[str, int | None]](
            lambda where: _file_attributes(*where), shared=shared
        )
        self._times: dict[int, str] = {}  # by the attempt itself: 0 and 0.0 are written apart
        self._shared = shared

    def xml(self, test: TestResult) -> str:
        """The ``<testcase>`` of one test (see ``testcase_xml``)."""
        # split_node_id, inlined: this runs once per test of a run of any size
        base, bracket, parameters = test.id.partition("[")
        owner, _, name = base.rpartition("::")
        first = test.attempts[0]  # a test's first attempt is a run, never an order check
        seconds = self._times.get(id(first))
        if seconds is None:
            seconds = f' time="{round(first.duration_s, 6)}"'
            if len(self._times) < self._shared:
                self._times[id(first)] = seconds
        owner = self._owners[owner or test.id]
        name = self._names[name + bracket + parameters]
        where = self._files[test.file, test.line]
        if test.outcome in _PASSED:  # nothing more to say, and by far the most common
            return f"{owner}{name}{seconds}{where}</testcase>"
        return _verdict(test, f"{owner}{name}{seconds}{where}")


def _file_attributes(file: str, line: int | None) -> str:
    """A test case's ``file`` and ``line`` attributes, and the end of its opening tag."""
    return f" file={_attr(file)}>" if line is None else f' file={_attr(file)} line="{line}">'


def _exception_type(message: str | None) -> str:
    head = (message or "").split(":", 1)[0].strip()
    return head if head.isidentifier() else "failure"


def testcase_xml(test: TestResult) -> str:
    """The ``<testcase>`` of one test: its verdict, and every other failed attempt.

    Attempt 1 gives the final result of a test that failed every time, with its reruns
    as ``<rerunFailure>``/``<rerunError>``; a flaky test passes, with each failed attempt
    as ``<flakyFailure>``/``<flakyError>``. Order checks are evidence, not attempts.
    """
    return _Cases().xml(test)


def _verdict(test: TestResult, opening: str) -> str:
    """A test case that did not simply pass: its result elements after ``opening``."""
    outcome = test.outcome
    first = test.attempts[0]
    runs = [attempt for attempt in test.attempts if attempt.kind != "order-check"]
    parts = [opening]
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


_PASSED = frozenset({"passed", "xpassed"})
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
    if value is None:
        return '""'
    if _PLAIN.fullmatch(value):  # nothing to escape, by far the most common
        return f'"{value}"'
    return '"' + _escaped(xml_text(value), _IN_ATTRIBUTE) + '"'


_PLAIN = re.compile('[^&<>"\x00-\x1f\ud800-\udfff\ufffe\uffff]*')


def _text(tag: str, value: str | None) -> str:
    return f"<{tag}>{_escaped(xml_text(value), _IN_TEXT)}</{tag}>" if value else ""


def _element(tag: str, message: str | None, kind: str, body: str | None) -> str:
    text = _escaped(xml_text(body), _IN_TEXT)
    return f"<{tag} message={_attr(message)} type={_attr(kind)}>{text}</{tag}>"


def write_junit(result: RunResult, path: Path) -> None:
    """Write the run as JUnit XML: one test suite, or one per variant after a merge.

    Streamed test case by test case: a run of any size is written in little memory.
    """
    named = {test.variant for test in result.tests}
    variants: Mapping[str | None, Sequence[TestResult]]
    if len(named) == 1:  # one run, or one variant: its tests as they are
        variants = {named.pop(): result.tests}
    else:
        grouped: dict[str | None, list[TestResult]] = {}
        for test in result.tests:
            grouped.setdefault(test.variant, []).append(test)
        variants = grouped
    cases = _Cases()
    with open_text(path) as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>')
        for variant, tests in variants.items() or [(None, [])]:
            totals = result.totals if len(variants) == 1 else Totals.of(tuple(tests))
            seconds = round(sum(test.attempts[0].duration_s for test in tests), 3)
            skipped = totals.skipped + totals.xfailed + totals.quarantined
            out.write(
                f'<testsuite name={_attr(variant or "testgate")} tests="{totals.tests}" '
                f'errors="{totals.errors}" failures="{totals.failed}" skipped="{skipped}" '
                f'time="{seconds}">'
            )
            out.writelines(map(cases.xml, tests))
            out.write("</testsuite>")
        out.write("</testsuites>\n")


READ_LIMIT_BYTES = 2 * 1024 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
_FAILED: dict[str, AttemptOutcome] = {"failure": "failed", "error": "error"}
_RETRIED: dict[str, AttemptOutcome] = {
    "flakyFailure": "failed",
    "flakyError": "error",
    "rerunFailure": "failed",
    "rerunError": "error",
}
_RESULTS = frozenset({*_FAILED, *_RETRIED, "skipped"})
# classname, or (classname, file) -> the test file, and the node id's prefix (``FILE::CLASS::``)
Located = dict[str | tuple[str, str], tuple[str, str]]


class _Refused(Exception):
    """What makes a JUnit file unsafe or unreadable, raised from inside the parser."""


def read_junit(path: Path, *, project: Path) -> tuple[TestResult, ...]:
    """The tests of a JUnit XML file (pytest's, ours, Surefire's), read as untrusted input.

    No DTD, entity or external reference is accepted (expat's handlers refuse them, as
    defusedxml's do), the file's size is bounded, and it is streamed through expat in
    chunks: each ``<testcase>`` becomes a result when it closes. Node ids are rebuilt
    from ``file`` (or the dotted ``classname``, resolved against the project's files),
    and the failing line is read from the traceback's ``FILE:LINE:`` lines.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InfraError(f"cannot read {path}: {error}") from None
    if size > READ_LIMIT_BYTES:
        raise InfraError(f"{path} is {size} bytes, over testgate's limit of {READ_LIMIT_BYTES}.")
    parser = expat.ParserCreate()
    reader = _Reader(parser, project=project)
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except (expat.ExpatError, _Refused) as error:
        raise InfraError(f"{path} is not JUnit XML testgate can read safely: {error}") from None
    except OSError as error:
        raise InfraError(f"cannot read {path}: {error}") from None
    return tuple(reader.tests)


def _refuse(what: str) -> Callable[..., NoReturn]:
    def handler(*_: object) -> NoReturn:
        raise _Refused(f"it declares {what}, which testgate does not accept")

    return handler


Result = tuple[str, dict[str, str], list[str]]  # a result element: tag, attributes, text


class _Reader:
    """expat's callbacks: a ``<testcase>``'s attributes and its result elements.

    Only what a result needs is kept: a passing test case costs two callbacks, and one
    shared ``Attempt`` per distinct ``time``. Text is collected only inside a result
    element (up to its first child, as ElementTree's ``text``), never between cases.
    The callbacks are closures over their state: they run once or twice per test case
    of a file of any size, and a closure's variables are faster than an object's.
    """

    def __init__(self, parser: expat.XMLParserType, *, project: Path) -> None:
        self.tests: list[TestResult] = []
        files = ProjectFiles(project)
        located: Located = {}
        passing: dict[str, tuple[Attempt]] = {}
        append = self.tests.append
        case: dict[str, str] | None = None
        results: tuple[Result, ...] = ()  # most cases have none: no list made for them
        opened: Result | None = None
        zero_based, depth = False, 0

        def start(tag: str, attributes: dict[str, str]) -> None:
            nonlocal case, results, opened, depth, zero_based
            if case is None:
                if tag == "testcase":
                    case, results, depth = attributes, (), 0
                elif tag == "testsuite":  # pytest's xunit1 names its suite "pytest": 0-based
                    zero_based = attributes.get("name") == "pytest"
                return
            depth += 1
            parser.CharacterDataHandler = None
            if depth == 1:
                opened = (tag, attributes, []) if tag in _RESULTS else None
                if opened is not None:
                    results = (*results, opened)
                    if tag in _FAILED:
                        parser.CharacterDataHandler = opened[2].append
            elif depth == 2 and tag == "stackTrace" and opened and opened[0] in _RETRIED:
                parser.CharacterDataHandler = opened[2].append

        def end(_: str) -> None:
            nonlocal case, depth
            if case is None:
                return
            if depth:
                parser.CharacterDataHandler = None
                depth -= 1
                return
            file = case.get("file")  # pytest names none: then the classname is the key
            key = case.get("classname") or ""
            where = located.get(key if file is None else (key, file))
            if where is None:  # thousands of test cases share a handful of classes
                where = located[key if file is None else (key, file)] = _locate(key, file, files)
            test_id, where = _case_id(case.get("name") or "", key, file, where, files)
            declared = case.get("line")
            line = int(declared) + zero_based if declared and declared.isdigit() else None
            time = case.get("time") or "0"
            if results:
                append(_finish(test_id, where[0], line, time, results))
            else:  # a passing test case, by far the most common: kept fast
                attempts = passing.get(time)
                if attempts is None:
                    attempts = passing[time] = (
                        Attempt(outcome="passed", duration_s=_seconds(time, test_id)),
                    )
                append(
                    TestResult(
                        id=test_id, file=where[0], line=line, outcome="passed", attempts=attempts
                    )
                )
            case = None

        _install(parser, start=start, end=end)


def _install(
    parser: expat.XMLParserType,
    *,
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None],
) -> None:
    """The element callbacks; no DTD, entity or external reference; text in large pieces."""
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.buffer_text = True
    parser.buffer_size = 65536
    parser.StartDoctypeDeclHandler = _refuse("a DTD")
    parser.EntityDeclHandler = _refuse("an entity")
    parser.UnparsedEntityDeclHandler = _refuse("an unparsed entity")
    parser.ExternalEntityRefHandler = _refuse("an external reference")


def _finish(
    test_id: str, file: str, def_line: int | None, time: str, results: tuple[Result, ...]
) -> TestResult:
    """A test case with result elements: its attempts, from its own result and its reruns."""
    final: AttemptOutcome = "passed"
    message, text = None, None
    retried: list[tuple[AttemptOutcome, str | None, str | None, float]] = []
    for tag, attributes, parts in results:
        if tag in _FAILED:
            final, message, text = _FAILED[tag], attributes.get("message"), "".join(parts)
        elif tag == "skipped":
            final = "xfailed" if attributes.get("type") == "pytest.xfail" else "skipped"
            message = attributes.get("message")
        else:
            retried.append((_RETRIED[tag], attributes.get("message"), "".join(parts), 0.0))
    # The testcase's own result is attempt 1 of a test that failed every time (its
    # reruns follow), and the last attempt of a flaky one (its failures came first).
    own = (final, message, text, _seconds(time, test_id))
    runs = [own, *retried] if final in BROKEN else [*retried, own]
    attempts = tuple(
        Attempt(
            outcome=outcome,
            duration_s=spent,
            number=number,
            kind="run" if number == 1 else "rerun",
            message=None if said is None else bounded(said, MESSAGE_LIMIT),
            line=line_in_traceback(trace, file),
            text=bounded(trace, TEXT_LIMIT) if trace else None,
        )
        for number, (outcome, said, trace, spent) in enumerate(runs, 1)
    )
    failing = next((attempt.line for attempt in attempts if attempt.line is not None), None)
    flaky = bool(retried) and final not in BROKEN
    failures = sum(attempt.outcome in BROKEN for attempt in attempts)
    return TestResult(
        id=test_id,
        file=file,
        line=failing if failing is not None else def_line,
        outcome="flaky" if flaky else final,
        attempts=attempts,
        flaky_kind="nondeterministic" if flaky else None,
        note=f"failed {failures} of {len(attempts)} attempts" if retried else None,
    )


def _seconds(time: str, test_id: str) -> float:
    try:
        seconds = float(time)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise _Refused(f"{test_id} has time={time!r}, not a number of seconds")
    return seconds


class ProjectFiles:
    """Which paths in the project are files, from one listing per directory.

    A large report names thousands of modules and classes: each directory is listed
    once (``os.scandir``) instead of one ``stat`` per candidate path.
    """

    def __init__(self, project: Path) -> None:
        self.project = project
        self._root = os.fspath(project)
        self._listed: dict[str, frozenset[str]] = {}

    def is_file(self, path: str) -> bool:
        """Whether ``path`` (``/``-separated, relative to the project) is a file there."""
        folder, _, name = path.rpartition("/")
        names = self._listed.get(folder)
        if names is None:
            names = self._listed[folder] = self._files_in(folder)
        return name in names

    def _files_in(self, folder: str) -> frozenset[str]:
        try:
            with os.scandir(os.path.join(self._root, folder)) as entries:
                return frozenset(entry.name for entry in entries if entry.is_file())
        except OSError:  # no such directory (a Java-style package), or not one
            return frozenset()


def _case_id(
    name: str, classname: str, file: str | None, where: tuple[str, str], files: ProjectFiles
) -> tuple[str, tuple[str, str]]:
    """A case's node id, and its file and prefix: a case pytest names after a module
    (``tests.test_x``, no classname) is that module (``tests/test_x.py``), one that failed
    to collect or skipped itself."""
    path = file.replace("\\", "/") if file else name.replace(".", "/") + ".py"
    if name and not classname and _dotted(path) == name and (file or files.is_file(path)):
        return path, (path if files.is_file(path) else "", "")
    return where[1] + (name or "(unnamed)"), where


def _locate(classname: str, file: str | None, files: ProjectFiles) -> tuple[str, str]:
    """The test file and the node id's prefix (``FILE::CLASS::``), from JUnit's attributes.

    A file is never invented: a dotted ``classname`` names a file only when one exists in
    the project (a Java-style ``example.ExampleTests`` does not), and a ``file`` that is
    not on disk is kept in the id but not as the test's file, so no annotation points
    at a file GitHub cannot show. Such a test's file is empty.
    """
    parts = [part for part in classname.split(".") if part]
    if file:
        path = file.replace("\\", "/")
        module_parts = len(path.removesuffix(".py").split("/"))
        prefix = "::".join([path, *parts[module_parts:], ""])
        return (path if files.is_file(path) else ""), prefix
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if files.is_file(candidate):
            return candidate, "::".join([candidate, *parts[end:], ""])
    return "", (classname + "::" if classname else "")
