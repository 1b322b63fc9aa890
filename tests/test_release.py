"""Releasing: the release workflow moves the major tag, dry-run under act; LICENSE, CHANGELOG.

The workflow runs as GitHub would run it on a published release (act's ``release``
event), with ``RELEASE_DRY_RUN=true`` so nothing is pushed: it checks the tag's form and
the CHANGELOG entry, then moves ``v1`` in the job's copy of the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
ACT = Path(sys.executable).parent / "act"


def release(repo: Path, tag: str) -> str:
    event = repo.parent / f"event-{tag}.json"
    event.write_text(json.dumps({"action": "published", "release": {"tag_name": tag}}), "utf-8")
    completed = subprocess.run(
        [str(ACT), "release", "-e", str(event), "-P", "ubuntu-latest=-self-hosted",
         "--env", "RELEASE_DRY_RUN=true"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return completed.stdout + completed.stderr


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
    moved = release(repo, "v1.2.0")
    assert f"moved v1 to v1.2.0 ({head})" in moved, moved
    assert "dry run: v1 not pushed" in moved
    assert "🏁  Job succeeded" in moved
    unlisted = release(repo, "v1.3.0")
    assert "CHANGELOG.md has no '## [1.3.0]' entry" in unlisted
    assert "🏁  Job failed" in unlisted
    assert "is not vMAJOR.MINOR.PATCH" in release(repo, "latest")


def test_license_and_changelog_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text("utf-8").startswith("MIT License\n")
    assert f"## [{project['version']}]" in (ROOT / "CHANGELOG.md").read_text("utf-8")
