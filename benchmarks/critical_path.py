"""The action's critical path: does a job with services take longer than its own work?

One job runs the action (``uses: acme/testgate@v1``) under act on the example project
(``examples/inventory``) with a PostgreSQL and a RabbitMQ service. Its wall time is
divided by the work that cannot overlap: installing the project plus running its tests
(``install_s + tests_s`` from the job's own results.json). Goal: <= 1.10.

Two versions of the action, in alternating runs (ABBA), the same runner in both:

* overlapped: this checkout's action.yml, which starts the services in the background
  first and lets ``testgate run`` await them after the installation;
* in sequence: the action.yml of ``SEQUENTIAL`` (before the overlap), whose services
  step waits until every service answers, then installs, then tests.

act runs the job on this machine (``-P ubuntu-latest=-self-hosted``, no network); the
services come from Docker when an engine answers, else from this machine's binaries
(RabbitMQ boots in about 5 s either way). The machine is shared: medians of --rounds.

Run: ``.venv/bin/python benchmarks/critical_path.py [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.action.act import ACT, SETUP_UV, SETUP_UV_REF, action_copy
from tests.conftest import ROOT

SEQUENTIAL = "fc27a99"  # main before the services overlapped the installation
WORKFLOW = """\
name: bench
on: push
jobs:
  inventory:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/testgate@v1
        with:
          working-directory: ${{ env.PROJECTS }}/inventory
          services: |
            postgres:16
            rabbitmq:3
          workers: "0"
          fail-under-branch: "80"
"""


def prepare(root: Path) -> Path:
    """The act repository with the workflow, and the setup-uv stand-in."""
    (root / "setup-uv").mkdir()
    (root / "setup-uv" / "action.yml").write_text(SETUP_UV, "utf-8")
    repo = root / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "bench.yml").write_text(WORKFLOW, "utf-8")
    git = ["git", "-C", str(repo), "-c", "user.email=b@example.com", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return repo


STEP = re.compile(r"(?:Success|Failure) - Main (.+?) \[((?:\d+m)?[\d.]+)(ms|s)\]")


def steps_of(output: str) -> dict[str, float]:
    """Each step's seconds, as act reports them (``[1m2.5s]``, ``[12.3ms]``)."""
    found: dict[str, float] = {}
    for name, amount, unit in STEP.findall(output):
        minutes, _, rest = amount.rpartition("m")
        seconds = float(rest) / (1000 if unit == "ms" else 1) + 60 * float(minutes or 0)
        found[name] = seconds
    return found


def one_job(
    root: Path, repo: Path, action: Path, run: int, name: str
) -> tuple[float, float, float]:
    """Run the job once on a fresh copy of the project: its wall time, install + tests, and
    the least any job could take: the slower of installing and the services' readiness,
    then the tests (``max(install_s, services_ready_s) + tests_s``)."""
    projects = root / f"projects-{run}"
    shutil.copytree(ROOT / "examples" / "inventory", projects / "inventory",
                    ignore=shutil.ignore_patterns(".venv", "*-reports", ".testgate"))  # fmt: skip
    uv_dir = Path(shutil.which("uv") or sys.executable).parent
    started = time.perf_counter()
    completed = subprocess.run(
        [str(ACT), "push", "-P", "ubuntu-latest=-self-hosted",
         "--local-repository", f"acme/testgate@v1={action}",
         "--local-repository", f"{SETUP_UV_REF}={root / 'setup-uv'}",
         "--env", f"TESTGATE_TEST_UV_DIR={uv_dir}", "--env", f"PROJECTS={projects}"],
        cwd=repo, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    results = projects / "inventory" / "testgate-reports" / "results.json"
    if completed.returncode != 0 or not results.is_file():
        raise SystemExit(
            f"the job failed (exit {completed.returncode}):\n{completed.stdout[-4000:]}"
        )
    phases = json.loads(results.read_text("utf-8"))["run"]["phases"]
    steps = steps_of(completed.stdout)
    shown = ", ".join(
        f"{name} {seconds:.1f}"
        for name, seconds in steps.items()
        if seconds >= 0.3 and name != "acme/testgate@v1"
    )
    work = phases["install_s"] + phases["tests_s"]
    bound = max(phases["install_s"], phases.get("services_ready_s", 0.0)) + phases["tests_s"]
    print(f"  {name:<12} job {wall:6.1f} s, install + tests {work:5.1f} s, bound {bound:5.1f} s")
    print(f"    steps (s): {shown}; phases (s): " + ", ".join(
        f"{phase.removesuffix('_s')} {value:.1f}" for phase, value in phases.items()))  # fmt: skip
    return wall, work, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (4 jobs each)")
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        overlapped = action_copy(root)
        sequential = root / "sequential"
        shutil.copytree(overlapped, sequential)
        old = subprocess.run(["git", "-C", str(ROOT), "show", f"{SEQUENTIAL}:action.yml"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        (sequential / "action.yml").write_text(old, "utf-8")
        repo = prepare(root)
        found: dict[str, list[tuple[float, float, float]]] = {"overlapped": [], "in sequence": []}
        run = 0
        for _ in range(rounds):
            for name in ("overlapped", "in sequence", "in sequence", "overlapped"):
                action = overlapped if name == "overlapped" else sequential
                run += 1
                found[name].append(one_job(root, repo, action, run, name))
    print("\nJob critical path under act (PostgreSQL + RabbitMQ, examples/inventory), medians:")
    ratios = {}
    for name, jobs in found.items():
        wall = statistics.median(job[0] for job in jobs)
        ratio = statistics.median(job[0] / job[1] for job in jobs)
        bound = statistics.median(job[0] / job[2] for job in jobs)
        ratios[name] = ratio
        print(f"  {name:<12} job wall {wall:6.1f} s; job / (install + tests) = {ratio:.2f}; "
              f"job / (max(install, services ready) + tests) = {bound:.2f}")  # fmt: skip
    print(
        f"  overlapped / in sequence (job wall): "
        f"{statistics.median(j[0] for j in found['overlapped']) / statistics.median(j[0] for j in found['in sequence']):.2f}"
        "\n  goal: job / (install + tests) <= 1.10; no job is faster than its bound, so where the"
        "\n  services take longer to answer than the project takes to install, the bound is the goal"
    )


if __name__ == "__main__":
    main()
