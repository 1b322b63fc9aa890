"""The test history's part in a run or merge: read it, label, gate, extend, summarize.

Locally the history is ``history.json.gz`` in the reports dir (or the ``history`` file),
and every full run extends it. On GitHub it lives in an artifact, ``testgate-history``,
that runs on the default branch upload (the action's step): a run reads the newest one
from its base branch through the REST API (``actions: read``) when it has no history file
of its own, and only runs on the default branch extend it; pull-request runs read it.
Why an artifact: one listing and one download per run, kept 90 days by default (matching
``history-days``), readable by any job of the repository with ``actions: read``; an
``actions/cache`` entry cannot be overwritten under one key and is evicted without notice
when the repository's caches pass 10 GB, and a data branch needs ``contents: write``.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from runner import owned_dir, trend
from runner.coverage_data import read_report
from runner.errors import ConfigError, InfraError
from runner.git import Git
from runner.github import client
from runner.github.commands import on_github as on_a_runner
from runner.history import (
    FILE_NAME,
    JUDGED_CODES,
    LIMIT_BYTES,
    OUTCOMES,
    History,
    coverage_flips,
    entries,
    extend,
    failures_on,
    flip_rates,
    label,
    parse_history,
    passes_in_a_row,
    read_history,
    write_history,
)
from runner.output import clean, markdown_text, table_cell
from runner.plural import counted
from runner.quarantine import Quarantine, expiry_gate, read_quarantine
from runner.results import BROKEN, GateResult, RunInfo, RunResult, TestResult
from runner.settings import Settings
from runner.stability import runs_needed

ARTIFACT = "testgate-history"
HISTORY_NOTE = re.compile(r"(flaky on |failing on )\S+|in an earlier run of the same commit")
SUGGESTED = "quarantine-suggested.txt"
LISTED_ARTIFACTS = 30


@dataclass(frozen=True)
class Context:
    """What the history knows and where this run stands in it."""

    path: Path
    history: History
    commit: str | None
    branch: str | None
    base: str | None
    clean: bool
    extends: bool
    notices: tuple[str, ...] = ()


def work_tree_status(git: Git) -> str | None:
    """What keeps the work tree from being its commit's: ``git status --porcelain`` of the
    tracked files, and the untracked Python files git does not ignore (a conftest.py not yet
    added changes the tests as much as an edit does). Other untracked files (reports, caches,
    ``__pycache__``) leave it clean. None when git fails."""
    tracked = git.out("status", "--porcelain", "--untracked-files=no")
    untracked = git.out("ls-files", "--others", "--exclude-standard", "--", ":/*.py")
    if tracked is None or untracked is None:
        return None
    return "\n".join(part for part in (tracked, untracked) if part)


def prepare(
    settings: Settings,
    *,
    commit: str | None,
    environ: Mapping[str, str],
    limit: int = LIMIT_BYTES,
) -> Context:
    """Read the history (on GitHub, the base branch's artifact when there is no file).

    The artifact is untrusted: it is read only when it unpacks to at most ``limit`` bytes.
    """
    path = settings.project / settings.history if settings.history else None
    path = path or settings.reports_dir / FILE_NAME
    git = Git(settings.project, environ)
    repository = git.is_repository()
    status = work_tree_status(git) if repository else None
    on_github = on_a_runner(environ)
    pull = client.pull_request(environ) if on_github else None
    branch = (
        environ.get("GITHUB_HEAD_REF") or environ.get("GITHUB_REF_NAME")
        if on_github
        else (git.out("rev-parse", "--abbrev-ref", "HEAD") if repository else None)
    )
    base = _base(settings, git=git if repository else None, environ=environ, pull=pull)
    history, notices = read_history(path), tuple[str, ...]()
    if on_github and not path.is_file():
        history, notices = _from_artifact(environ, base=base, pull=pull, limit=limit)
    return Context(
        path=path,
        history=history,
        commit=commit,
        branch=branch if branch != "HEAD" else None,
        base=base,
        clean=status == "",
        extends=settings.shard is None and (not on_github or (pull is None and branch == base)),
        notices=notices,
    )


def _base(
    settings: Settings, *, git: Git | None, environ: Mapping[str, str], pull: Any
) -> str | None:
    """The branch whose history judges this run: the PR's base, diff-base, else main/master."""
    if environ.get("GITHUB_BASE_REF"):
        return environ["GITHUB_BASE_REF"]
    if settings.diff_base:
        return settings.diff_base.removeprefix("origin/")
    event_default = _default_branch(environ)
    if event_default:
        return event_default
    if git is None:
        return None
    found = git.out("rev-parse", "--abbrev-ref", "origin/HEAD")
    if found and found != "origin/HEAD":
        return found.removeprefix("origin/")
    return next((name for name in ("main", "master") if git.commit(name)), None)


def _default_branch(environ: Mapping[str, str]) -> str | None:
    path = environ.get("GITHUB_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text("utf-8")) if path else {}
    except (OSError, ValueError):
        return None
    repository = event.get("repository") if isinstance(event, dict) else None
    name = repository.get("default_branch") if isinstance(repository, dict) else None
    return name if isinstance(name, str) else None


def _from_artifact(
    environ: Mapping[str, str], *, base: str | None, pull: Any, limit: int
) -> tuple[History, tuple[str, ...]]:
    """The newest ``testgate-history`` artifact of a run on ``base``; notices when none."""
    if base is None:  # nothing to compare with: a push, a first run
        return History(), ()
    token = client.token_of(environ, pull)
    if token is None:
        return History(), (f"no token: the {ARTIFACT} artifact was not read (base {base})",)
    import requests  # noqa: PLC0415 (only on GitHub, with a token)

    api = client.GitHubApi(environ, token)
    try:
        listed = api.call(
            "GET", "/actions/artifacts", params={"name": ARTIFACT, "per_page": LISTED_ARTIFACTS}
        ).json()
        found = [
            item
            for item in listed.get("artifacts", [])
            if item.get("name") == ARTIFACT
            and not item.get("expired")
            and (item.get("workflow_run") or {}).get("head_branch") == base
        ]
        if not found:
            return History(), (f"no {ARTIFACT} artifact from {base} yet: this run starts one",)
        newest = max(found, key=lambda item: str(item.get("created_at", "")))
        archive = api.call("GET", f"/actions/artifacts/{newest['id']}/zip").content
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            entry = opened.getinfo(FILE_NAME)
            if entry.file_size > limit:
                raise ValueError(f"{FILE_NAME} is {entry.file_size} bytes, over {limit}")
            with gzip.open(io.BytesIO(opened.read(entry))) as unpacked:
                raw = unpacked.read(limit + 1)
        if len(raw) > limit:
            raise ValueError(f"{FILE_NAME} unpacks to more than {limit} bytes")
        return parse_history(raw), ()
    except (
        requests.RequestException,
        OSError,
        EOFError,
        ValueError,
        KeyError,
        zipfile.BadZipFile,
    ) as error:
        return History(), (f"could not read the {ARTIFACT} artifact of {base}: {error}",)


def label_tests(
    context: Context, tests: tuple[TestResult, ...], *, settings: Settings, info: RunInfo
) -> tuple[TestResult, ...]:
    """This run's tests, labelled with what the history shows about their failures: only
    runs of the same environment (``info.environment``) are evidence, and failures whose
    reruns were stopped (``info.reruns_stopped``) stay failed (``runner.history.label``)."""
    return label(
        tests,
        context.history,
        commit=context.commit,
        clean=context.clean,
        base=context.base,
        counts_as=settings.history_flaky,
        environment=info.environment,
        reruns_stopped=info.reruns_stopped,
    )


def missing_lines(reports: Path) -> dict[str, tuple[int, ...]]:
    """The lines coverage.json says were missed, per file (none without coverage)."""
    path = reports / "coverage.json"
    if not path.is_file():
        return {}
    files = read_report(path).get("files", {})
    return {
        name: tuple(data["missing_lines"])
        for name, data in files.items()
        if data.get("missing_lines")
    }


def warnings(context: Context, *, reports: Path, environment: str | None = None) -> tuple[str, ...]:
    """Notices about the history, and lines whose coverage flipped on the same commit in
    the same ``environment``."""
    flips = (
        coverage_flips(
            context.history,
            commit=context.commit,
            missing=missing_lines(reports),
            environment=environment,
        )
        if context.clean
        else []
    )
    return (*context.notices, *flips)


def history_gates(settings: Settings, *, today: date) -> tuple[GateResult, ...]:
    """The quarantine-expiry gate, when the quarantine file gives expiry dates."""
    gate = expiry_gate(read_quarantine(settings.quarantine), today=today)
    return () if gate is None else (gate,)


def suggestions(
    history: History, *, quarantine: Quarantine, base: str | None, needed: int
) -> tuple[list[tuple[str, str]], list[str]]:
    """Entries to add (test id, why) for tests the history shows flaky; entries to remove."""
    add = [
        (test_id, f"flipped {rate.count} of {rate.runs} recent runs")
        for test_id, rate in flip_rates(history, branch=base)
        if not quarantine.matches(test_id)
    ]
    remove = []
    for entry in quarantine.entries:
        matched = [i for i in history.ids if Quarantine((entry,)).matches(i)]
        if matched and all(
            passes_in_a_row(history, test_id, branch=base) >= needed for test_id in matched
        ):
            remove.append(entry)
    return add, remove


def markdown(context: Context, *, settings: Settings, tests: tuple[TestResult, ...] = ()) -> str:
    """The summary's history part: failures the history explains, suggestions, trends."""
    history = context.history
    known = [
        test
        for test in tests
        if test.outcome in BROKEN and test.note and HISTORY_NOTE.search(test.note)
    ]
    quarantine = read_quarantine(settings.quarantine)
    needed = runs_needed(confidence=settings.confidence, max_fail_rate=settings.max_fail_rate)
    add, remove = suggestions(history, quarantine=quarantine, base=context.base, needed=needed)
    out = []
    if known:
        out += ["", "### Failures the history explains", "", "| test | history |", "| --- | --- |"]
        out += [f"| `{table_cell(test.id)}` | {markdown_text(test.note or '')} |" for test in known]
    out += trend.section(history, branch=context.base)
    if add or remove:
        out += ["", "### Quarantine suggestions", ""]
        out += [f"- add `{_code(test_id)}`: {_code(why)}" for test_id, why in add]
        out += [
            f"- remove `{_code(entry)}`: passed {counted(needed, 'run')} in a row"
            for entry in remove
        ]
        out += ["", f"The whole suggested file is `{SUGGESTED}` in the reports dir."]
    return "\n".join(out) + "\n" if out else ""


def record(context: Context, *, result: RunResult, settings: Settings) -> Context:
    """Extend and write the history with this run (when this run extends it)."""
    if not context.extends:
        return context
    coverage = result.coverage
    info: RunInfo = result.run
    history = extend(
        context.history,
        result.tests,
        max_runs=settings.history_runs,
        max_days=settings.history_days,
        started=info.started,
        commit=context.commit,
        branch=context.branch,
        clean=context.clean,
        duration_s=info.suite_duration_s,
        line_percent=None if coverage is None else coverage.line_percent,
        branch_percent=None if coverage is None else coverage.branch_percent,
        missing=missing_lines(settings.reports_dir),
        environment=info.environment,
        reruns_stopped=info.reruns_stopped is not None,
    )
    try:
        write_history(history, context.path)
    except (OSError, InfraError) as error:  # its folder cannot be made, or the file written
        said = error.message if isinstance(error, InfraError) else str(error)
        raise ConfigError(f"cannot write the test history {context.path}: {said}") from None
    return replace(context, history=history)


def write_suggestions(context: Context, *, settings: Settings) -> Path | None:
    """``quarantine-suggested.txt``: the quarantine file as the history suggests it."""
    quarantine = read_quarantine(settings.quarantine)
    needed = runs_needed(confidence=settings.confidence, max_fail_rate=settings.max_fail_rate)
    add, remove = suggestions(
        context.history, quarantine=quarantine, base=context.base, needed=needed
    )
    if not (add or remove):
        return None
    today = datetime.now(UTC).date().isoformat()
    text = settings.quarantine.read_text("utf-8") if settings.quarantine else ""
    kept = [line for line in text.splitlines() if line.partition(" #")[0].strip() not in remove]
    lines = [
        "# The quarantine file as testgate's history suggests it; review, then commit it.",
        *kept,
        *(f"{test_id}  # {why} (suggested {today})" for test_id, why in add),
    ]
    path = settings.reports_dir / SUGGESTED
    path.parent.mkdir(parents=True, exist_ok=True)
    owned_dir.write_text(path, "\n".join(lines) + "\n")
    return path


def _code(text: str) -> str:
    """Untrusted text inside a Markdown code span of a list item: one inert line."""
    return clean(text).replace("`", "'")


def show(context: Context, *, test_id: str | None) -> str:
    """``testgate history [ID]``: the runs recorded, or one test's outcome in each."""
    history = context.history
    if not history.runs:
        return f"no test history in {context.path} yet: run testgate run first.\n"
    if test_id is None:
        lines = [
            f"{counted(len(history.runs), 'run')} of {counted(len(history.ids), 'test')} in "
            f"{context.path}:"
        ]
        for run in history.runs:
            lines.append(
                f"{run.started}  {(run.commit or '-')[:12]:12}  {run.branch or '-'}  "
                f"{run.duration_s:.2f} s  line {_percent(run.line_percent)}  "
                f"branch {_percent(run.branch_percent)}  {run.flaky} flaky"
            )
        rates = flip_rates(history, branch=None)[: trend.LISTED_FLIPS]
        if rates:
            lines.append("highest flip rates:")
            lines += [f"  {test_id}: flipped {rate}" for test_id, rate in rates]
        return _safe("\n".join(lines)) + "\n"
    found = entries(history, test_id)
    if not found:
        raise ConfigError(
            f"no test {test_id!r} in the history {context.path}; "
            "run 'testgate history' to see the runs it holds, and pass a pytest node id."
        )
    lines = [f"{test_id}: {counted(len(found), 'run')}"]
    lines += [
        f"{entry.run.started}  {(entry.run.commit or '-')[:12]:12}  {entry.run.branch or '-'}  "
        f"{entry.outcome}  {counted(entry.attempts, 'attempt')}  {entry.duration_s:.3f} s"
        for entry in found
    ]
    for branch in sorted({entry.run.branch for entry in found if entry.run.branch}):
        lines.append(f"on {branch}: failed {failures_on(history, test_id, branch=branch)}")
    return _safe("\n".join(lines)) + "\n"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _safe(text: str) -> str:
    """Line terminators other than LF (ids are untrusted) become spaces."""
    for terminator in ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"):
        text = text.replace(terminator, " ")
    return text


def unchanged_outcomes(
    settings: Settings, *, environ: Mapping[str, str], environment: str | None
) -> dict[str, list[str]]:
    """Each test's recorded outcomes, oldest first, from clean runs of the code under test
    now, in the same ``environment`` (fingerprint; a run recorded without one is not).

    "The code under test now" is the project's git tree at HEAD, with a clean work tree:
    a run counts when its commit has the very same tree for the project directory, so a
    change anywhere in the project (the test, the code it calls, a fixture, the lock)
    starts that test's count again. A run that flaked within itself counts as a failure
    then a pass.
    """
    context = prepare(settings, commit=None, environ=environ)
    git = Git(settings.project, environ)
    now = git.out("rev-parse", "--verify", "--quiet", "HEAD:./") if context.clean else None
    if now is None:
        return {}
    trees: dict[str, str | None] = {}
    same = []
    for run in context.history.runs:
        if (
            run.clean
            and run.commit
            and environment
            and run.environment == environment
            and not run.reruns_stopped
        ):
            if run.commit not in trees:
                trees[run.commit] = git.out("rev-parse", "--verify", "--quiet", f"{run.commit}:./")
            if trees[run.commit] == now:
                same.append(run)
    found: dict[str, list[str]] = {}
    for number, test_id in enumerate(context.history.ids):
        codes = [code for run in same if (code := run.code(number)) in JUDGED_CODES]
        if codes:
            found[test_id] = [
                outcome
                for code in codes
                for outcome in (("failed", "passed") if code == "k" else (OUTCOMES[code],))
            ]
    return found
