"""GitHub's REST API: the few endpoints testgate calls, with the job's token.

* With a token (the action's ``github-token``), every annotation goes to a check run of
  its own through the Checks API, 50 per request, as the API allows.
* A pull request from a fork gets no usable token (``token_of`` gives None).
* The calls retry a server error (5xx) and a secondary rate limit (403 or 429 with
  ``Retry-After``) a few times with exponential backoff, by urllib3's ``Retry``.
* An earlier attempt's ``results.json`` artifact is untrusted: it is streamed to a
  temporary file and refused past a size bound, unpacked only within one, and decoded
  into typed structs.

``GitHubApi`` is made by the caller (``connect``) and passed in, so each part can be
tested against a local server standing in for GitHub.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from runner.github.commands import Annotation, escape_data, summary
from runner.output import clean
from runner.results import RunInfo, RunResult

# requests is imported where the API is called: most runs have no token, and do not
# pay its import (about 70 ms).
if TYPE_CHECKING:
    import requests

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


def check_name(run: RunInfo, environ: Mapping[str, str]) -> str:
    """The check run's name: ``testgate / JOB (VARIANT[, shard I/N])``, a merge's
    ``testgate / JOB``. GitHub shows check runs, and matches required checks, by name: the
    jobs of a matrix that all named theirs ``testgate`` hid each other, and whichever
    finished last was what the pull request showed."""
    name = "testgate"
    if environ.get("GITHUB_JOB"):
        name += f" / {environ['GITHUB_JOB']}"
    if run.variant and not run.merged:
        name += f" ({run.variant}" + (f", shard {run.shard}" if run.shard else "") + ")"
    return name


def create_check_run(
    api: GitHubApi,
    *,
    result: RunResult,
    found: Sequence[Annotation],
    sha: str,
    markdown: str,
    name: str,
) -> int:
    """One completed check run named ``name`` (``check_name``) carrying every annotation,
    50 per request; its id."""
    title = "testgate passed" if result.passed else "testgate failed"
    text = summary(markdown, [])[:API_SUMMARY_LIMIT]
    batches = [found[start : start + API_BATCH] for start in range(0, len(found), API_BATCH)]
    first, rest = (batches[0] if batches else []), batches[1:]
    created = api.call(
        "POST",
        "/check-runs",
        json={
            "name": name,
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


class _Artifact(msgspec.Struct):
    id: int
    name: str


class _Artifacts(msgspec.Struct):
    artifacts: list[_Artifact] = []


class _EarlierRun(msgspec.Struct):
    commit: str | None = None
    environment: str | None = None  # absent from an older testgate's results.json
    reruns_stopped: str | None = None


class _EarlierTest(msgspec.Struct):
    id: str
    outcome: str


class _Earlier(msgspec.Struct):
    """The fields of an earlier attempt's ``results.json`` that are read, typed as its schema."""

    run: _EarlierRun
    tests: list[_EarlierTest] = []


def earlier_results(
    api: GitHubApi, environ: Mapping[str, str], name: str, limit: int
) -> _Earlier | None:
    """This workflow run's artifact ``name``, its results.json decoded; None when absent.

    Streamed to a temporary file and refused past ``limit`` bytes, downloaded or unpacked
    (a ``ValueError``); an HTTP failure is a ``requests.RequestException``.
    """
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


def reason(error: requests.RequestException) -> str:
    """``HTTP 502`` or ``ConnectionError: …``: what actually happened, one line, no secret."""
    response = error.response
    if response is not None:
        return f"HTTP {response.status_code}"
    return escape_data(f"{type(error).__name__}: {clean(str(error))[:300]}")


def connect(environ: Mapping[str, str]) -> GitHubApi | None:
    """The client for this job, or None without a usable token (none, or a fork's)."""
    token = token_of(environ, pull_request(environ))
    return None if token is None else GitHubApi(environ, token)
