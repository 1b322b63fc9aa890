"""Releasing: the release workflow moves the major tag, dry-run under act; LICENSE, CHANGELOG.

The workflow runs as GitHub would run it on a published release (act's ``release``
event), with ``RELEASE_DRY_RUN=true`` so nothing is pushed: it checks the tag's form and
the CHANGELOG entry, then moves ``v1`` in the job's copy of the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from ruamel.yaml import YAML

from tests.action.act import ACT
from tests.conftest import ROOT


def release(repo: Path, tag: str) -> str:
    event = repo.parent / f"event-{tag}.json"
    event.write_text(json.dumps({"action": "published", "release": {"tag_name": tag}}), "utf-8")
    # The release job needs no engine; with DOCKER_HOST set, act talks to the engine when a
    # job fails and its message replaces the job's own.
    environ = {name: value for name, value in os.environ.items() if name != "DOCKER_HOST"}
    completed = subprocess.run(
        [str(ACT), "release", "-e", str(event), "-P", "ubuntu-latest=-self-hosted",
         "--env", "RELEASE_DRY_RUN=true"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=120, env=environ,
    )  # fmt: skip
    return completed.stdout + completed.stderr


def the_steps_script(repo: Path, tag: str) -> subprocess.CompletedProcess[str]:
    """The workflow's own step, run by bash in the repository as the runner runs it."""
    workflow = YAML(typ="safe").load(repo / ".github" / "workflows" / "release.yml")
    (step,) = [s for s in workflow["jobs"]["move-major-tag"]["steps"] if "run" in s]
    environ = {**os.environ, "TAG": tag, "RELEASE_DRY_RUN": "true"}
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=repo, capture_output=True, text=True, check=False, env=environ,
    )  # fmt: skip


def test_a_release_moves_the_major_tag_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / ".github" / "workflows" / "release.yml", repo / ".github" / "workflows")
    (repo / "CHANGELOG.md").write_text("# Changelog\n\n## [1.2.0] - 2026-12-01\n", "utf-8")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "1.1"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "1.2"], check=True)
    subprocess.run([*git, "tag", "v1.2.0"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Under act, as GitHub runs it on a published release. act's own job lines are reliable;
    # a step's last lines are sometimes lost when the step ends at once (an act race), so
    # the step's messages are checked from the step itself below.
    assert "🏁  Job succeeded" in release(repo, "v1.2.0")
    assert "🏁  Job failed" in release(repo, "v1.3.0")
    moved = the_steps_script(repo, "v1.2.0")
    assert moved.returncode == 0
    assert f"moved v1 to v1.2.0 ({head})" in moved.stdout
    assert "dry run: v1 not pushed" in moved.stdout
    tagged = subprocess.run(
        [*git, "rev-parse", "v1^{commit}"], capture_output=True, text=True, check=True
    )
    assert tagged.stdout.strip() == head
    unlisted = the_steps_script(repo, "v1.3.0")
    assert unlisted.returncode == 1
    assert "CHANGELOG.md has no '## [1.3.0]' entry" in unlisted.stdout
    named = the_steps_script(repo, "latest")
    assert named.returncode == 1
    assert "is not vMAJOR.MINOR.PATCH" in named.stdout


def test_license_and_changelog_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text("utf-8").startswith("MIT License\n")
    assert f"## [{project['version']}]" in (ROOT / "CHANGELOG.md").read_text("utf-8")
