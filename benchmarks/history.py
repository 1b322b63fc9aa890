"""Flaky detection from history: test executions with 30 earlier runs, against from scratch.

The labelled suite of benchmarks/flaky.py (random flakes at known rates, an order-dependent
pair, a shared-file race, a broken test, 20 stable tests) is committed to a git repository
and run ``--earlier`` times (default 30) with ``testgate run``, which records each run in
the test history. Then ``testgate flaky`` (c = 0.95, p = 0.05, so n = 59) runs on the
whole suite twice: once with no history, once with it. The benchmark prints both jobs'
executions (test runs the job itself made: runs minus those counted from the history),
their verdicts (which must agree, flakes aside: a random flake is proven flaky at its
first flip, whenever that comes), and both against a fixed 50-run loop on the same suite
(pytest-flakefinder's default), as ratios.

Timings are noisy on a shared machine; executions are not. Run:
``.venv/bin/python benchmarks/history.py [--earlier 30]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from flaky import make_suite  # a sibling script, not a package

TESTGATE = Path(sys.executable).parent / "testgate"
FIXED_LOOP = 50


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.org", *args],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip


def detect(project: Path, *, history: str, reports: str) -> dict[str, Any]:
    subprocess.run(
        [str(TESTGATE), "flaky", "--project", str(project), "--workers", "2",
         "--history", history, "--reports-dir", reports],
        capture_output=True, check=False,
    )  # fmt: skip
    data: dict[str, Any] = json.loads((project / reports / "flaky.json").read_text("utf-8"))
    return data


def executions(data: dict[str, Any]) -> int:
    """Test runs the job made: the whole suite's first round runs every test once, even one
    whose verdict the history already gives (its run then is not counted in ``runs``)."""
    return sum(max(1, test["runs"] - test.get("from_history", 0)) for test in data["tests"])


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--earlier", type=int, default=30)
    options = arguments.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    with tempfile.TemporaryDirectory() as temporary:
        project = make_suite(Path(temporary))
        (project / ".gitignore").write_text("testgate-reports/\n.venv/\n*.json.gz\n", "utf-8")
        subprocess.run([uv, "sync", "-q", "--project", str(project)], check=True)
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "suite")
        for _ in range(options.earlier):
            subprocess.run(
                [str(TESTGATE), "run", "--project", str(project), "--workers", "2",
                 "--history", "history.json.gz"],
                capture_output=True, check=False,
            )  # fmt: skip
        scratch = detect(project, history="none.json.gz", reports="scratch")
        seeded = detect(project, history="history.json.gz", reports="seeded")
    tests = len(scratch["tests"])
    fixed = FIXED_LOOP * tests
    print(f"suite: {tests} tests; n = {scratch['runs_needed']} for c=0.95, p=0.05")
    print(f"{'test':44} {'scratch':>18} {'with history':>18}")
    verdicts = {t["id"]: t for t in seeded["tests"]}
    agree = 0
    for test in scratch["tests"]:
        other = verdicts[test["id"]]
        same = test["verdict"] == other["verdict"]
        agree += same
        print(
            f"{test['id'][:44]:44} {test['verdict']:>9} {test['runs']:>8} "
            f"{other['verdict']:>9} {max(1, other['runs'] - other['from_history']):>8}"
            + ("" if same else "  (differs)")
        )
    ours, before = executions(seeded), executions(scratch)
    print(f"verdicts agree: {agree} of {tests}")
    print(f"executions: from scratch {before}, with {options.earlier} earlier runs {ours}, "
          f"fixed {FIXED_LOOP}-run loop {fixed}")  # fmt: skip
    print(f"ratio with-history / from-scratch: {ours / before:.2f}")
    print(f"ratio with-history / fixed {FIXED_LOOP}-run loop: {ours / fixed:.2f}")
    print(f"ratio from-scratch / fixed {FIXED_LOOP}-run loop: {before / fixed:.2f}")


if __name__ == "__main__":
    main()
