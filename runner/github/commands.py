"""Workflow commands, annotations and the job summary's text: pure formatting, no I/O.

* Workflow commands are escaped exactly as ``@actions/core`` does: ``%``, CR and LF in the
  message; those and ``:`` and ``,`` in properties.
* GitHub shows at most 10 annotations of each type per step and 50 per job: the most
  important come first (failed tests, then flaky tests, then uncovered changed lines) and
  what does not fit is listed in the summary instead.
* The step summary is capped at GitHub's 1 MiB, saying what was cut.
* GitHub resolves an annotation's ``file`` from the repository root: a project in a
  subdirectory of ``GITHUB_WORKSPACE`` (``working-directory: svc``) has its paths
  prefixed (``svc/tests/test_x.py``) in every annotation and Checks API payload, while
  the reports keep project-relative paths.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.output import clean
from runner.plural import counted
from runner.record import PYTEST_WARNED
from runner.results import BROKEN, RunResult, spans_text
from runner.stability import Detection

PER_TYPE = 10
PER_STEP = 50
SUMMARY_LIMIT = 1024 * 1024


def on_github(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A workflow command's message, as @actions/core escapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, as @actions/core escapes it."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """One check annotation: error or warning, where, and what."""

    level: str
    file: str
    line: int | None
    title: str
    message: str
    end_line: int | None = None

    def command(self) -> str:
        """The workflow command, byte for byte as ``core.error``/``core.warning`` write it."""
        properties = {"title": self.title, "file": self.file, "line": self.line,
                      "endLine": self.end_line}  # fmt: skip
        given = ",".join(
            f"{name}={escape_property(str(value))}" for name, value in properties.items() if value
        )
        return f"::{self.level}{' ' if given else ''}{given}::{escape_data(self.message)}"


def repository_prefix(root: str | None, environ: Mapping[str, str]) -> str:
    """The project's place in the repository, ``svc/`` (or nothing at its root).

    A project outside ``GITHUB_WORKSPACE`` (or off a runner) keeps its own paths.
    """
    workspace = environ.get("GITHUB_WORKSPACE")
    if not workspace or not root:
        return ""
    try:
        inside = Path(root).resolve().relative_to(Path(workspace).resolve())
    except ValueError:
        return ""
    return "" if inside == Path() else inside.as_posix() + "/"


def workspace_path(path: str, environ: Mapping[str, str]) -> str:
    """A path as a later step of the job names it (``actions/upload-artifact``'s ``path:``
    is resolved from ``GITHUB_WORKSPACE``): relative to the workspace when it lies inside,
    else as given. ``path`` is absolute, or relative to the current directory."""
    workspace = environ.get("GITHUB_WORKSPACE")
    if not workspace:
        return path
    try:
        return Path(path).resolve().relative_to(Path(workspace).resolve()).as_posix()
    except ValueError:
        return path


DIFF = "diff-coverage"


def _path(prefix: str, file: str) -> str:
    """A project path made relative to the repository; no file stays no file."""
    return prefix + file if file else ""


def annotations_of(result: RunResult, *, prefix: str = "") -> list[Annotation]:
    """Every annotation the run deserves, the most important first.

    ``prefix`` makes the project's paths relative to the repository (``repository_prefix``).
    """
    found: list[Annotation] = []
    for test in result.tests:
        if test.outcome in BROKEN:
            attempt = test.attempts[0]
            message = attempt.message or attempt.teardown_error or test.outcome
            title = f"{test.outcome}: {test.id}" + (f" [{test.variant}]" if test.variant else "")
            found.append(Annotation("error", _path(prefix, test.file), test.line, title, message))
    for test in result.tests:
        if test.outcome == "flaky":
            title = f"flaky ({test.flaky_kind}): {test.id}"
            found.append(
                Annotation(
                    "warning", _path(prefix, test.file), test.line, title, f"flaky: {test.note}"
                )
            )
    # Lines a partial run left uncovered may be covered by the tests it never ran.
    judged = all(gate.status in ("pass", "fail") for gate in result.gates if gate.name == DIFF)
    diff = result.diff_coverage if judged else None
    base, changed = ("", ()) if diff is None else (diff.base, diff.files)
    for file in changed:
        for first, last in file.missing_ranges:
            lines = (
                f"line {first} changed since {base} is"
                if first == last
                else (f"lines {spans_text([(first, last)])} changed since {base} are")
            )
            message = f"{lines} not covered"
            found.append(
                Annotation(
                    "warning",
                    prefix + file.path,
                    first,
                    "changed lines not covered",
                    message,
                    last,
                )
            )
    return found


def detection_annotations(detection: Detection, *, prefix: str = "") -> list[Annotation]:
    """A flaky-detection job's annotations: each flaky test a warning at its ``def`` line
    with its failure rate and interval; each test that failed every run an error."""
    found = [
        Annotation("warning", prefix + test.file, test.line, f"flaky: {test.id}", test.statement)
        for test in detection.tests
        if test.verdict == "flaky"
    ]
    return found + [
        Annotation("error", prefix + test.file, test.line, f"failing: {test.id}", test.statement)
        for test in detection.tests
        if test.verdict == "failing"
    ]


def pytest_warnings(result: RunResult) -> str:
    """pytest's own warnings (a config option or mark it did not know, a plugin that is
    missing) as one warning annotation: tests may have been skipped because of them."""
    texts = [text for text in result.run.warnings if text.startswith(PYTEST_WARNED)]
    if not texts:
        return ""
    message = "\n".join(text.removeprefix(PYTEST_WARNED) for text in texts)
    title = escape_property(f"pytest warned {counted(len(texts), 'time')}")
    return f"::warning title={title}::{escape_data(message)}\n"


def shown_and_left(found: list[Annotation]) -> tuple[list[Annotation], list[Annotation]]:
    """Those GitHub will show (10 per type, 50 in all, in order of importance), and the rest."""
    shown: list[Annotation] = []
    left: list[Annotation] = []
    per_type: dict[str, int] = {}
    for annotation in found:
        if per_type.get(annotation.level, 0) < PER_TYPE and len(shown) < PER_STEP:
            per_type[annotation.level] = per_type.get(annotation.level, 0) + 1
            shown.append(annotation)
        else:
            left.append(annotation)
    return shown, left


def summary(markdown: str, left: list[Annotation]) -> str:
    """The job summary: testgate's summary, the annotations that did not fit, under 1 MiB."""
    if left:
        markdown += "\n### Not shown as annotations (GitHub's limit)\n\n" + "".join(
            f"- {a.level} `{clean(a.file)}:{a.line}` {clean(a.title)}\n" for a in left
        )
    data = markdown.encode("utf-8")
    if len(data) <= SUMMARY_LIMIT:
        return markdown
    note = "\n\n_(cut at GitHub's 1 MiB summary limit; results.json has everything)_\n"
    room = SUMMARY_LIMIT - len(note.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + note


def outputs(result: RunResult, reports_dir: str) -> dict[str, str]:
    """The step outputs SPEC names."""
    totals = result.totals
    coverage = result.coverage
    return {
        "passed": "true" if result.passed and not result.run.problems else "false",
        "tests": str(totals.tests),
        "failed": str(totals.failed + totals.errors),
        "flaky": str(totals.flaky),
        "skipped": str(totals.skipped),
        "line-coverage": "" if coverage is None else f"{coverage.line_percent:.2f}",
        "branch-coverage": ""
        if coverage is None or not coverage.branch_data
        else f"{coverage.branch_percent:.2f}",
        "diff-coverage": ""
        if coverage is None or coverage.diff_percent is None
        else f"{coverage.diff_percent:.2f}",
        "duration": f"{result.run.suite_duration_s:.2f}",
        "reports-dir": reports_dir,
    }


def stop_commands() -> tuple[str, str]:
    """The lines around untrusted output that keep GitHub from parsing commands in it."""
    token = secrets.token_hex(16)
    return f"::stop-commands::{token}\n", f"::{token}::\n"
