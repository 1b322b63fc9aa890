"""A cancelled job under act: the SIGTERM sent to the step reaches testgate, which ends cleanly.

GitHub cancels a job by signalling the step's shell; act does the same to the process it
started for the step. The cancel fixture's second test hangs until then; the run must
record the interruption, keep the first test's result, and leave no process or service
behind (the action's "Stop services" step).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner import process_group
from tests.action.act import ACT, SETUP_UV, SETUP_UV_REF, action_copy
from tests.conftest import Ran, copy_fixture, gone

CANCEL = "tests/test_cancel.py"
CANCEL_JOB = """\
name: cancel
on: push
jobs:
  cancel:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/testgate@v1
        with:
          working-directory: {project}
          services: redis
"""


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text("utf-8").rsplit(")", 1)[1].split()[1])


def step_shell(act: int, descendant: int) -> int:
    """The process act started for the step: the ancestor of ``descendant`` below act."""
    pid = descendant
    while parent_of(pid) != act:
        pid = parent_of(pid)
        assert pid > 1, "the test's process does not descend from act"
    return pid


def test_the_actions_step_lets_a_cancelled_jobs_signal_reach_testgate(tmp_path: Path) -> None:
    """Under act, SIGTERM to the step's shell (as the runner sends it) ends the run cleanly."""
    action = action_copy(tmp_path)
    (tmp_path / "setup-uv").mkdir()
    (tmp_path / "setup-uv" / "action.yml").write_text(SETUP_UV, "utf-8")
    project = copy_fixture("cancel", tmp_path)
    pids = project / "pids.json"
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    workflow = CANCEL_JOB.format(project=project)
    (repo / ".github" / "workflows" / "cancel.yml").write_text(workflow, "utf-8")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "workflow"], check=True)
    uv_dir = Path(shutil.which("uv") or sys.executable).parent
    with (tmp_path / "act-output.txt").open("w+", encoding="utf-8") as log:
        act = subprocess.Popen(
            [str(ACT), "push", "-P", "ubuntu-latest=-self-hosted",
             "--local-repository", f"acme/testgate@v1={action}",
             "--local-repository", f"{SETUP_UV_REF}={tmp_path / 'setup-uv'}",
             "--env", f"TESTGATE_TEST_UV_DIR={uv_dir}", "--env", f"CANCEL_PIDS={pids}"],
            cwd=repo, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while not pids.exists() and act.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            seen = json.loads(pids.read_text("utf-8"))
            shell = step_shell(act.pid, seen["test"])
            state = project / ".testgate" / "services.json"  # the action's services step
            services = json.loads(state.read_text("utf-8"))["services"]
            os.kill(shell, signal.SIGTERM)
            act.wait(timeout=120)
        finally:
            act.kill()
            act.wait()
        log.seek(0)
        output = log.read()
    ran = Ran(3, output, project, project / "testgate-reports")
    assert ran.results()["run"]["interrupted"] == "SIGTERM", output[-3000:]
    assert ran.test(f"{CANCEL}::test_a_finishes")["outcome"] == "passed"
    assert "INTERRUPTED by SIGTERM" in output
    assert "[cancel/cancel] exit status 3" in output
    assert process_group.members(seen["group"]) == ()
    for pid in [seen["test"], seen["parent"], seen["daemon"], seen["escaped"], shell]:
        assert gone(pid), (pid, seen, ran.output[-3000:])
    assert all(gone(service["pid"]) for service in services)  # the Stop services step
    assert not state.exists()
