"""The end of a testgate step on a runner: annotations, job summary, outputs, check run.

``report`` (after run, merge and gate) and ``report_detection`` (after flaky) return
the workflow commands to print and write the step's files; ``previous_attempt`` reads
what an earlier attempt of this workflow run found (``GITHUB_RUN_ATTEMPT`` > 1), which
``runner.verdicts.flaky_on_rerun`` judges. The REST client is the caller's
(``client.connect``): None means no token, and nothing is asked of GitHub.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

from runner.github.client import (
    ARTIFACT_LIMIT,
    GitHubApi,
    check_name,
    create_check_run,
    earlier_results,
    from_fork,
    head_sha,
    pull_request,
    reason,
)
from runner.github.commands import (
    Annotation,
    annotations_of,
    detection_annotations,
    outputs,
    pytest_warnings,
    repository_prefix,
    shown_and_left,
    summary,
    workspace_path,
)
from runner.github.step_files import append_summary, set_outputs
from runner.output import clean, markdown_text
from runner.results import BROKEN, GateResult, RunResult
from runner.stability import Detection


@dataclass(frozen=True)
class PreviousAttempt:
    """An earlier attempt of this workflow run, on this commit: the tests that failed there.

    ``note`` is the evidence a test that failed there and passes now is flaky by.
    """

    failed: frozenset[str]
    note: str


def previous_attempt(
    environ: Mapping[str, str],
    *,
    api: GitHubApi | None,
    environment: str | None = None,
    limit: int = ARTIFACT_LIMIT,
) -> tuple[PreviousAttempt | None, list[str]]:
    """What the previous attempt's ``results.json`` artifact says, and notices.

    None (with a notice saying why) when there is none to compare: a first attempt, no
    artifact name (``TESTGATE_ARTIFACT``), no token, another commit, another environment
    than this attempt's (``environment``, the fingerprint: a failure there after a
    dependency changed says nothing about flakiness; an artifact without one, from an
    older testgate, is another), or an artifact that cannot be read; it is untrusted,
    read only when it unpacks to at most ``limit`` bytes.
    """
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "1")
    prefix = environ.get("TESTGATE_ARTIFACT")
    if not attempt.isdigit() or int(attempt) < 2 or not prefix:
        return None, []
    if api is None:
        return None, ["no token to read the previous attempt's results; re-run flakes unchecked"]
    previous = int(attempt) - 1
    name = f"{prefix}-attempt-{previous}"
    import requests  # noqa: PLC0415 (only with a token: most runs do not pay its import)

    try:
        earlier = earlier_results(api, environ, name, limit)
    except (requests.RequestException, ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        # msgspec's errors are ValueErrors; anything wrong with the artifact is one warning.
        why = clean(str(error))[:500]
        return None, [f"could not read artifact {name} of attempt {previous}: {why}"]
    if earlier is None:
        return None, [f"no artifact {name}: attempt {previous} left no results to compare"]
    if earlier.run.commit != environ.get("GITHUB_SHA"):
        return None, [f"attempt {previous} ran another commit; re-run flakes unchecked"]
    if environment is None or earlier.run.environment != environment:
        return None, [
            f"attempt {previous} ran in another environment (another interpreter or other "
            "installed packages, or not recorded): its failures are not counted as evidence "
            "that a test passing now is flaky"
        ]
    if earlier.run.reruns_stopped is not None:
        return None, [
            f"attempt {previous} stopped its reruns ({clean(earlier.run.reruns_stopped)[:300]}): "
            "its failures looked broken, not flaky, and are not counted as evidence that a "
            "test passing now is flaky"
        ]
    note = (
        f"failed in attempt {previous} of this workflow run, passed in attempt {attempt} "
        "on the same commit"
    )
    failed = frozenset(test.id for test in earlier.tests if test.outcome in BROKEN)
    return PreviousAttempt(failed=failed, note=note), []


def report(
    result: RunResult,
    *,
    markdown: str,
    reports_dir: str,
    environ: Mapping[str, str],
    api: GitHubApi | None,
    annotations: bool = True,
) -> str:
    """On a runner: what to print (annotation commands, notices); summary and outputs are written.

    ``reports_dir`` (absolute, or relative to the current directory) becomes the
    ``reports-dir`` output relative to the workspace, as a later step names it.

    With a client (``client.connect``: a token), every annotation goes to a check run
    instead; if that fails (a token without ``checks: write``), the workflow commands are
    the fallback.
    """
    prefix = repository_prefix(result.run.root, environ)
    found = annotations_of(result, prefix=prefix) if annotations else []
    # What went wrong with pytest or testgate itself (exit 3), or with the project's
    # coverage configuration (exit 2), is in no file: an error of the step's own, first in
    # GitHub's budget, whatever becomes of the check run; the summary lists each already.
    errors = (*result.run.problems, *filter(None, [result.run.coverage_misconfigured]))
    own = [Annotation("error", "", None, "testgate", error) for error in errors]
    shown, left = shown_and_left(own + found)
    mine = {id(annotation) for annotation in own}
    left = [annotation for annotation in left if id(annotation) not in mine]
    printed = ""
    pull = pull_request(environ)
    if from_fork(pull):
        printed += (
            "::notice title=testgate::a pull request from a fork gets no token: annotations "
            "are limited to GitHub's workflow-command limits and earlier attempts are not "
            "read; the gates still run.\n"
        )
    # Also with nothing to annotate: the newest check run of this name is what the pull
    # request shows, and an earlier one (a failed attempt, on this commit) must not stand.
    elif api is not None and annotations:
        import requests  # noqa: PLC0415 (lazy, see top)

        try:
            create_check_run(
                api, result=result, found=found, sha=head_sha(pull, environ),
                markdown=markdown, name=check_name(result.run, environ),
            )  # fmt: skip
            shown, left = [a for a in shown if id(a) in mine], []
        except requests.RequestException as error:
            if found:  # else nothing was to be shown: nothing is lost, nothing to say
                forbidden = error.response is not None and error.response.status_code == 403
                advice = (
                    "give the job 'permissions: checks: write' for every annotation"
                    if forbidden
                    else "GitHub could not be reached or failed; the annotations are not lost"
                )
                printed += (
                    f"::warning title=testgate::could not create a check run ({reason(error)}); "
                    f"{advice}. Showing what workflow commands can.\n"
                )
    printed += pytest_warnings(result)
    append_summary(environ, summary(markdown, left))
    set_outputs(environ, outputs(result, workspace_path(reports_dir, environ)))
    return printed + "".join(annotation.command() + "\n" for annotation in shown)


def report_detection(
    detection: Detection,
    *,
    markdown: str,
    root: str,
    environ: Mapping[str, str],
    annotations: bool = True,
    reports_dir: str | None = None,
) -> str:
    """On a runner, after ``testgate flaky``: the summary and outputs (``reports-dir`` too,
    when given) are written, and the annotation commands returned (GitHub's limits apply;
    the rest go to the summary)."""
    found = detection_annotations(detection, prefix=repository_prefix(root, environ))
    shown, left = shown_and_left(found if annotations else [])
    append_summary(environ, summary(markdown, left))
    bad = detection.count("flaky") or detection.count("failing") or detection.problems
    counts = {
        name: str(detection.count(name))
        for name in ("flaky", "stable", "failing", "undecided", "skipped")
    }
    set_outputs(
        environ,
        {
            "passed": "false" if bad else "true",
            "tests": str(len(detection.tests)),
            **counts,
            **(
                {} if reports_dir is None else {"reports-dir": workspace_path(reports_dir, environ)}
            ),
        },
    )
    return "".join(annotation.command() + "\n" for annotation in shown)


def report_sonar(gate: GateResult, *, passed: bool, environ: Mapping[str, str]) -> str:
    """On a runner, after ``testgate sonar`` judged SonarQube's quality gate: the job
    summary gets its verdict, the step's ``passed`` output says whether every gate passed
    (the action's own ``passed`` is this step's once it judged, so a later step does not
    read "true" from a run whose quality gate then failed), and a failed gate is an error
    annotation of the step's own. Returns the annotation command to print."""
    verdict = "passed" if gate.passed else "failed"
    append_summary(
        environ, f"\n### SonarQube's quality gate {verdict}\n\n{markdown_text(gate.message)}\n"
    )
    set_outputs(environ, {"passed": "true" if passed else "false"})
    if gate.passed:
        return ""
    message = f"SonarQube's quality gate failed: {gate.message}"
    return Annotation("error", "", None, "testgate", message).command() + "\n"
