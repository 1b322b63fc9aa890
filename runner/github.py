"""GitHub Actions: the only module that knows GitHub.

On a runner (``GITHUB_ACTIONS=true``) testgate puts failures and flaky tests on the pull
request as check annotations, uncovered changed lines too, writes the job summary and the
step outputs, and keeps the tests' own output from issuing workflow commands.

* Workflow commands are escaped exactly as ``@actions/core`` does: ``%``, CR and LF in the
  message; those and ``:`` and ``,`` in properties.
* GitHub shows at most 10 annotations of each type per step and 50 per job: the most
  important come first (failed tests, then flaky tests, then uncovered changed lines) and
  what does not fit is listed in the summary instead.
* The step summary is capped at GitHub's 1 MiB, saying what was cut; outputs use the
  ``name<<DELIMITER`` form, so any value is safe.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.results import BROKEN, RunResult

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
        properties = [f"file={escape_property(self.file)}"]
        if self.line is not None:
            properties.append(f"line={self.line}")
        if self.end_line is not None:
            properties.append(f"endLine={self.end_line}")
        properties.append(f"title={escape_property(self.title)}")
        return f"::{self.level} {','.join(properties)}::{escape_data(self.message)}"


def annotations_of(result: RunResult) -> list[Annotation]:
    """Every annotation the run deserves, the most important first."""
    found: list[Annotation] = []
    for test in result.tests:
        if test.outcome in BROKEN:
            attempt = test.attempts[0]
            message = attempt.message or attempt.teardown_error or test.outcome
            title = f"{test.outcome}: {test.id}" + (f" [{test.variant}]" if test.variant else "")
            found.append(Annotation("error", test.file, test.line, title, message))
    for test in result.tests:
        if test.outcome == "flaky":
            title = f"flaky ({test.flaky_kind}): {test.id}"
            found.append(Annotation("warning", test.file, test.line, title, f"flaky: {test.note}"))
    diff = result.diff_coverage or {"files": [], "base": ""}
    for file in diff["files"]:
        for first, last in file["missing_ranges"]:
            where = str(first) if first == last else f"{first}-{last}"
            message = f"lines {where} changed since {diff['base']} are not covered"
            found.append(
                Annotation(
                    "warning", file["path"], first, "changed lines not covered", message, last
                )
            )
    return found


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
            f"- {a.level} `{a.file}:{a.line}` {a.title}\n" for a in left
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
        "branch-coverage": "" if coverage is None else f"{coverage.branch_percent:.2f}",
        "diff-coverage": ""
        if coverage is None or coverage.diff_percent is None
        else f"{coverage.diff_percent:.2f}",
        "duration": f"{result.run.suite_duration_s:.2f}",
        "reports-dir": reports_dir,
    }


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append outputs in the ``name<<DELIMITER`` form, safe for any value."""
    with path.open("a", encoding="utf-8") as out:
        for name, value in values.items():
            delimiter = f"testgate_{secrets.token_hex(8)}"
            out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def report(
    result: RunResult, *, markdown: str, reports_dir: str, environ: Mapping[str, str]
) -> str:
    """On a runner: the annotation commands to print; summary and outputs are written."""
    shown, left = shown_and_left(annotations_of(result))
    summary_file = environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with Path(summary_file).open("a", encoding="utf-8") as out:
            out.write(summary(markdown, left))
    output_file = environ.get("GITHUB_OUTPUT")
    if output_file:
        write_outputs(Path(output_file), outputs(result, reports_dir))
    return "".join(annotation.command() + "\n" for annotation in shown)


def stop_commands() -> tuple[str, str]:
    """The lines around untrusted output that keep GitHub from parsing commands in it."""
    token = secrets.token_hex(16)
    return f"::stop-commands::{token}\n", f"::{token}::\n"
