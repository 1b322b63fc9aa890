"""Git, for the lines a change touched: the commit under test, the diff base, the diff.

The diff is taken from the merge base of ``diff-base`` and HEAD to HEAD, so a branch is
judged on what it changed, not on what happened on the base since it forked. GitHub's
checkout is shallow by default: when the base or the merge base is missing, this module
fetches just what it needs, deepening the history a bounded number of times, and
otherwise stops with the exact advice (``fetch-depth: 0``) instead of a wrong number.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InfraError

DEFAULT_BASES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
DEEPEN_STEPS = (50, 200, 1000, 5000)
ADVICE = (
    "fetch more history: on GitHub set 'fetch-depth: 0' on actions/checkout, elsewhere run "
    "'git fetch --unshallow'"
)


@dataclass(frozen=True)
class Git:
    """Runs git in one project directory."""

    project: Path
    environ: Mapping[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", "-c", "core.quotePath=false", *args],
                cwd=self.project,
                env=dict(self.environ),
                capture_output=True,
                text=True,
                # git writes paths as the bytes they are (POSIX), its messages in UTF-8
                encoding="utf-8",
                errors="replace",
                check=False,
            )
        except OSError as error:  # pragma: no cover - git is installed wherever tests run
            raise InfraError(f"could not run git: {error}") from None

    def out(self, *args: str) -> str | None:
        """git's output, stripped, or None when git failed."""
        completed = self.run(*args)
        return completed.stdout.strip() if completed.returncode == 0 else None

    def is_repository(self) -> bool:
        return self.out("rev-parse", "--is-inside-work-tree") == "true"

    def commit(self, ref: str) -> str | None:
        return self.out("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")

    def head(self) -> str | None:
        return self.commit("HEAD")


def default_base(git: Git) -> str | None:
    """The PR's base on GitHub; else origin/HEAD, then main or master, when they exist."""
    pull_base = git.environ.get("GITHUB_BASE_REF")
    if pull_base:
        return f"origin/{pull_base}"
    return next((ref for ref in DEFAULT_BASES if git.commit(ref)), None)


def merge_base(git: Git, base: str) -> str:
    """The merge base of ``base`` and HEAD, fetching (bounded) what a shallow clone lacks."""
    branch = base.removeprefix("origin/") if base.startswith("origin/") else None
    refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}" if branch else None
    if git.commit(base) is None and refspec is not None:
        git.run("fetch", "--no-tags", "--depth=1", "origin", refspec)
    if git.commit(base) is None:
        raise InfraError(
            f"diff-base {base!r} is not a commit in {git.project} and could not be fetched: "
            "check its name, or " + ADVICE + "."
        )
    steps = list(DEEPEN_STEPS)
    while not (found := git.out("merge-base", base, "HEAD")):
        if not steps or git.out("rev-parse", "--is-shallow-repository") != "true":
            raise InfraError(
                f"HEAD and diff-base {base!r} share no commit in the history available here, "
                f"so the changed lines are unknown: {ADVICE}."
            )
        deepen = f"--deepen={steps.pop(0)}"
        git.run("fetch", "--no-tags", deepen, "origin", *([refspec] if refspec else []))
    return found


def diff(git: Git, since: str) -> str:
    """The zero-context diff from ``since`` to HEAD, paths relative to the project."""
    completed = git.run(
        "diff", "--no-color", "--no-ext-diff", "--unified=0", "-M", "--relative", since, "HEAD"
    )
    if completed.returncode != 0:
        raise InfraError(f"git diff {since} HEAD failed: {completed.stderr.strip()}")
    return completed.stdout
