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
* With a token (the action's ``github-token``), every annotation goes to a check run of
  its own through the Checks API, 50 per request, as the API allows; without one, or when
  the token may not write checks, the workflow-command limits above apply.
* A pull request from a fork gets no usable token: token features are skipped with one
  notice, and the gates still run.
* GitHub resolves an annotation's ``file`` from the repository root: a project in a
  subdirectory of ``GITHUB_WORKSPACE`` (``working-directory: svc``) has its paths
  prefixed (``svc/tests/test_x.py``) in every annotation and Checks API payload, while
  the reports keep project-relative paths.
* On a re-run (``GITHUB_RUN_ATTEMPT`` > 1), the previous attempt's ``results.json``
  artifact is read: a test that failed there and passes now, on the same commit, is flaky.
  The artifact is untrusted: it is streamed to a temporary file and refused past a size
  bound, unpacked only within one, and decoded into typed structs; whatever is wrong with
  it is one warning, and the run goes on (its own reports are never lost to it).
* The REST calls retry a server error (5xx) and a secondary rate limit (403 or 429 with
  ``Retry-After``) a few times with exponential backoff, by urllib3's ``Retry``.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from runner.errors import ConfigError
from runner.output import clean
from runner.record import PYTEST_WARNED
from runner.results import BROKEN, RunResult, TestResult

# requests is imported where the API is called: most runs have no token, and do not
# pay its import (about 70 ms).
if TYPE_CHECKING:
    import requests

    from runner.detection import Detection

PER_TYPE = 10
PER_STEP = 50
SUMMARY_LIMIT = 1024 * 1024
API_BATCH = 50
API_SUMMARY_LIMIT = 65535
API_TIMEOUT_S = 30
API_RETRIES = 3
API_BACKOFF_S = 0.25  # urllib3 waits 0 s, then 0.5 s, then 1 s
API_RETRY_AFTER_MAX_S = 60
ARTIFACT_LIMIT = 256 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
_IN_MEMORY_BYTES = 8 * 1024 * 1024
LEVELS = {"error": "failure", "warning": "warning", "notice": "notice"}


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
    diff = result.diff_coverage or {"files": [], "base": ""}
    for file in diff["files"]:
        for first, last in file["missing_ranges"]:
            where = str(first) if first == last else f"{first}-{last}"
            message = f"lines {where} changed since {diff['base']} are not covered"
            found.append(
                Annotation(
                    "warning",
                    prefix + file["path"],
                    first,
                    "changed lines not covered",
                    message,
                    last,
                )
            )
    return found


def pytest_warnings(result: RunResult) -> str:
    """pytest's own warnings (a config option or mark it did not know, a plugin that is
    missing) as one warning annotation: tests may have been skipped because of them."""
    texts = [text for text in result.run.warnings if text.startswith(PYTEST_WARNED)]
    if not texts:
        return ""
    message = "\n".join(text.removeprefix(PYTEST_WARNED) for text in texts)
    title = escape_property(f"pytest warned {len(texts)} time{'s' if len(texts) > 1 else ''}")
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
        "branch-coverage": "" if coverage is None else f"{coverage.branch_percent:.2f}",
        "diff-coverage": ""
        if coverage is None or coverage.diff_percent is None
        else f"{coverage.diff_percent:.2f}",
        "duration": f"{result.run.suite_duration_s:.2f}",
        "reports-dir": reports_dir,
    }


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT`` (see ``write_file_command``)."""
    write_file_command(path, values)


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """Append variables for the job's later steps to ``$GITHUB_ENV`` (``write_file_command``)."""
    write_file_command(path, values)


def write_file_command(path: Path, values: Mapping[str, str]) -> None:
    """Append ``values`` (name -> value) to a runner's ``NAME=VALUE`` file, safe for any value.

    Each value goes in the ``name<<DELIMITER`` form with a random delimiter that is in
    neither the name nor the value, as ``@actions/core`` writes it: a line break in a
    value (``\\n``; ``\\r\\n`` on Windows runners) can never end it early and start a
    variable of its own, such as ``LD_PRELOAD``. Raises ConfigError, before writing
    anything, for a name the runner would read as something else (empty, or holding a
    line break, ``=`` or ``<<``).
    """
    for name in values:
        if not name or any(text in name for text in ("\n", "\r", "=", "<<")):
            raise ConfigError(
                f"{name!r} cannot be written to {path.name} as a name: the runner would read "
                "a line break, '=' or '<<' in it as the start of another entry; use letters, "
                "digits and underscores."
            )
    text = ""
    for name, value in values.items():
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        while delimiter in name or delimiter in value:  # drawn again, as @actions/core fails
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        text += f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
    with path.open("a", encoding="utf-8", newline="") as out:  # each line end as it is
        out.write(text)


class GitHubApi:
    """The few REST endpoints testgate uses, with the job's token."""

    def __init__(self, environ: Mapping[str, str], token: str) -> None:
        self.base = environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        import requests  # noqa: PLC0415 (lazy, see top)

        self.repository = environ.get("GITHUB_REPOSITORY", "")
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=_retry())
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        )

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(
            method, f"{self.base}/repos/{self.repository}{path}", timeout=API_TIMEOUT_S, **kwargs
        )
        response.raise_for_status()
        return response


def _retry() -> Any:
    """urllib3's ``Retry`` for GitHub: 5xx, and 403/429 that carry ``Retry-After``.

    A 403 without ``Retry-After`` is a permission: it is not retried. Methods other than
    GET are retried too (a check run the server failed on was not created).
    """
    from urllib3.util.retry import Retry  # noqa: PLC0415 (lazy, see top)

    class GitHubRetry(Retry):
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if status_code == 403 and has_retry_after and self.respect_retry_after_header:
                return bool(self.total)  # a secondary rate limit, not a permission
            return bool(super().is_retry(method, status_code, has_retry_after))

    return GitHubRetry(
        total=API_RETRIES,
        connect=1,  # a host that refuses once more is reported, not waited for
        read=0,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=None,
        backoff_factor=API_BACKOFF_S,
        raise_on_status=False,
        retry_after_max=API_RETRY_AFTER_MAX_S,
    )


def token_of(environ: Mapping[str, str], pull: dict[str, Any] | None) -> str | None:
    """The token for the API, unless this is a pull request from a fork (no usable token)."""
    token = environ.get("TESTGATE_GITHUB_TOKEN") or environ.get("GITHUB_TOKEN")
    return token if token and not from_fork(pull) else None


def pull_request(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The event's pull request (read once from GITHUB_EVENT_PATH), or None."""
    path = environ.get("GITHUB_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text("utf-8")) if path else {}
    except (OSError, ValueError):
        return None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    return pull if isinstance(pull, dict) else None


def from_fork(pull: dict[str, Any] | None) -> bool:
    """Whether the pull request's head lives in another repository."""
    if pull is None:
        return False
    head = pull.get("head", {}).get("repo") or {}
    base = pull.get("base", {}).get("repo") or {}
    return bool(head.get("full_name")) and head.get("full_name") != base.get("full_name")


def head_sha(pull: dict[str, Any] | None, environ: Mapping[str, str]) -> str:
    """The commit the check run belongs to: a pull request's head, else GITHUB_SHA."""
    if pull is not None and pull.get("head", {}).get("sha"):
        return str(pull["head"]["sha"])
    return environ.get("GITHUB_SHA", "")


def create_check_run(
    api: GitHubApi, *, result: RunResult, found: Sequence[Annotation], sha: str, markdown: str
) -> int:
    """One completed check run carrying every annotation, 50 per request; its id."""
    title = "testgate passed" if result.passed else "testgate failed"
    text = summary(markdown, [])[:API_SUMMARY_LIMIT]
    batches = [found[start : start + API_BATCH] for start in range(0, len(found), API_BATCH)]
    first, rest = (batches[0] if batches else []), batches[1:]
    created = api.call(
        "POST",
        "/check-runs",
        json={
            "name": "testgate",
            "head_sha": sha,
            "status": "completed",
            "conclusion": "success" if result.passed else "failure",
            "output": {"title": title, "summary": text, "annotations": _api(first)},
        },
    ).json()
    check_id = int(created["id"])
    for batch in rest:
        api.call(
            "PATCH",
            f"/check-runs/{check_id}",
            json={"output": {"title": title, "summary": text, "annotations": _api(batch)}},
        )
    return check_id


def _api(batch: Sequence[Annotation]) -> list[dict[str, Any]]:
    return [
        {
            "path": annotation.file,
            "start_line": annotation.line or 1,
            "end_line": annotation.end_line or annotation.line or 1,
            "annotation_level": LEVELS[annotation.level],
            "title": annotation.title[:255],
            "message": annotation.message[: 64 * 1024] or annotation.title,
        }
        for annotation in batch
    ]


def earlier_attempt_flakes(
    tests: tuple[TestResult, ...], environ: Mapping[str, str], *, limit: int = ARTIFACT_LIMIT
) -> tuple[tuple[TestResult, ...], list[str]]:
    """Tests that failed in this run's previous attempt and pass now: flaky. And notices.

    The artifact is untrusted: its results.json is read only when it unpacks to at most
    ``limit`` bytes.
    """
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "1")
    prefix = environ.get("TESTGATE_ARTIFACT")
    if not attempt.isdigit() or int(attempt) < 2 or not prefix:
        return tests, []
    token = token_of(environ, pull_request(environ))
    if token is None:
        return tests, ["no token to read the previous attempt's results; re-run flakes unchecked"]
    previous = int(attempt) - 1
    name = f"{prefix}-attempt-{previous}"
    import requests  # noqa: PLC0415 (lazy, see top)

    try:
        earlier = _artifact_results(GitHubApi(environ, token), environ, name, limit)
    except (requests.RequestException, ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        # msgspec's errors are ValueErrors; anything wrong with the artifact is one warning.
        reason = clean(str(error))[:500]
        return tests, [f"could not read artifact {name} of attempt {previous}: {reason}"]
    if earlier is None:
        return tests, [f"no artifact {name}: attempt {previous} left no results to compare"]
    if earlier.run.commit != environ.get("GITHUB_SHA"):
        return tests, [f"attempt {previous} ran another commit; re-run flakes unchecked"]
    failed_before = {test.id for test in earlier.tests if test.outcome in BROKEN}
    note = (
        f"failed in attempt {previous} of this workflow run, passed in attempt {attempt} "
        "on the same commit"
    )
    changed = tuple(
        msgspec.structs.replace(test, outcome="flaky", flaky_kind="nondeterministic", note=note)
        if test.outcome == "passed" and test.id in failed_before
        else test
        for test in tests
    )
    return changed, []


class _Artifact(msgspec.Struct):
    id: int
    name: str


class _Artifacts(msgspec.Struct):
    artifacts: list[_Artifact] = []


class _EarlierRun(msgspec.Struct):
    commit: str | None = None


class _EarlierTest(msgspec.Struct):
    id: str
    outcome: str


class _Earlier(msgspec.Struct):
    """The fields of an earlier attempt's ``results.json`` that are read, typed as its schema."""

    run: _EarlierRun
    tests: list[_EarlierTest] = []


def _artifact_results(
    api: GitHubApi, environ: Mapping[str, str], name: str, limit: int
) -> _Earlier | None:
    run_id = environ.get("GITHUB_RUN_ID", "")
    listed = api.call("GET", f"/actions/runs/{run_id}/artifacts", params={"name": name})
    found = msgspec.json.decode(listed.content, type=_Artifacts).artifacts
    artifacts = [item for item in found if item.name == name]
    if not artifacts:
        return None
    with (
        tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES) as archive,
        api.session.get(
            f"{api.base}/repos/{api.repository}/actions/artifacts/{artifacts[0].id}/zip",
            stream=True,
            timeout=API_TIMEOUT_S,
        ) as response,
    ):
        response.raise_for_status()
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ValueError(f"the artifact is {declared} bytes, over {limit}")
        size = 0
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise ValueError(f"the artifact's download passed {limit} bytes; not read")
            archive.write(chunk)
        archive.seek(0)
        with zipfile.ZipFile(archive) as opened:
            entry = opened.getinfo("results.json")
            if entry.file_size > limit:
                raise ValueError(f"results.json unpacks to {entry.file_size} bytes, over {limit}")
            # zipfile stops at the declared size: a lying one fails its CRC check instead.
            data = opened.read(entry)
    return msgspec.json.decode(data, type=_Earlier)


def report(
    result: RunResult,
    *,
    markdown: str,
    reports_dir: str,
    environ: Mapping[str, str],
    annotations: bool = True,
) -> str:
    """On a runner: what to print (annotation commands, notices); summary and outputs are written.

    With a token, every annotation goes to a check run instead; if that fails (a token
    without ``checks: write``), the workflow commands are the fallback.
    """
    prefix = repository_prefix(result.run.root, environ)
    found = annotations_of(result, prefix=prefix) if annotations else []
    shown, left = shown_and_left(found)
    printed = ""
    pull = pull_request(environ)
    token = token_of(environ, pull)
    if from_fork(pull):
        printed += (
            "::notice title=testgate::a pull request from a fork gets no token: annotations "
            "are limited to GitHub's workflow-command limits and earlier attempts are not "
            "read; the gates still run.\n"
        )
    elif token is not None and found:
        import requests  # noqa: PLC0415 (lazy, see top)

        try:
            create_check_run(
                GitHubApi(environ, token), result=result, found=found, sha=head_sha(pull, environ),
                markdown=markdown,
            )  # fmt: skip
            shown, left = [], []
        except requests.RequestException as error:
            forbidden = error.response is not None and error.response.status_code == 403
            advice = (
                "give the job 'permissions: checks: write' for every annotation"
                if forbidden
                else "GitHub could not be reached or failed; the annotations are not lost"
            )
            printed += (
                f"::warning title=testgate::could not create a check run ({_reason(error)}); "
                f"{advice}. Showing what workflow commands can.\n"
            )
    printed += pytest_warnings(result)
    summary_file = environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with Path(summary_file).open("a", encoding="utf-8") as out:
            out.write(summary(markdown, left))
    output_file = environ.get("GITHUB_OUTPUT")
    if output_file:
        write_outputs(Path(output_file), outputs(result, reports_dir))
    return printed + "".join(annotation.command() + "\n" for annotation in shown)


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


def report_detection(
    detection: Detection,
    *,
    markdown: str,
    root: str,
    environ: Mapping[str, str],
    annotations: bool = True,
) -> str:
    """On a runner, after ``testgate flaky``: the summary and outputs are written, and the
    annotation commands returned (GitHub's limits apply; the rest go to the summary)."""
    found = detection_annotations(detection, prefix=repository_prefix(root, environ))
    shown, left = shown_and_left(found if annotations else [])
    summary_file = environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with Path(summary_file).open("a", encoding="utf-8") as out:
            out.write(summary(markdown, left))
    output_file = environ.get("GITHUB_OUTPUT")
    if output_file:
        bad = detection.count("flaky") or detection.count("failing") or detection.problems
        counts = {
            name: str(detection.count(name))
            for name in ("flaky", "stable", "failing", "undecided", "skipped")
        }
        write_outputs(
            Path(output_file),
            {"passed": "false" if bad else "true", "tests": str(len(detection.tests)), **counts},
        )
    return "".join(annotation.command() + "\n" for annotation in shown)


def _reason(error: requests.RequestException) -> str:
    """``HTTP 502`` or ``ConnectionError: …``: what actually happened, one line, no secret."""
    response = error.response
    if response is not None:
        return f"HTTP {response.status_code}"
    return escape_data(f"{type(error).__name__}: {clean(str(error))[:300]}")


def stop_commands() -> tuple[str, str]:
    """The lines around untrusted output that keep GitHub from parsing commands in it."""
    token = secrets.token_hex(16)
    return f"::stop-commands::{token}\n", f"::{token}::\n"
