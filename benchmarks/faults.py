"""What making every run end costs: the timeout machinery, and the time from SIGTERM to exit.

1. A generated suite of 500 quick tests (a third marked ``unit``, a third ``integration``),
   run by plain pytest in one process, alternating (ABBA) with the same pytest plus testgate's
   plugin giving every test its pytest-timeout limit (``timeout`` 900, ``timeouts``
   unit 1 and integration 5): the median of each and their ratio (goal: under 2 % more).
2. ``testgate run`` on a suite whose second test hangs: SIGTERM sent once the hang has
   begun, and the seconds until testgate has written its reports and exited (goal:
   under 3 s), for each of a few runs.

The machine is shared, so single numbers are noisy; the alternation and the medians are
there for that. Run: ``.venv/bin/python benchmarks/faults.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "runner" / "plugin"
TESTGATE = Path(sys.executable).parent / "testgate"
PLAN = json.dumps({"default": 900, "markers": {"unit": 1, "integration": 5}})


def make_suite(root: Path, *, tests: int) -> Path:
    """A project of ``tests`` quick tests, a third ``unit``, a third ``integration``."""
    project = root / "suite"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["unit: u", "integration: i"]\n', "utf-8"
    )
    body = ["import pytest\n"]
    for n in range(tests):
        marker = ("@pytest.mark.unit\n", "@pytest.mark.integration\n", "")[n % 3]
        body.append(f"\n{marker}def test_{n}():\n    assert sum(range({n % 50})) >= 0\n")
    (project / "tests" / "test_many.py").write_text("".join(body), "utf-8")
    return project


def pytest_once(project: Path, *, timeouts: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one single-process pytest run, with or without the limits.

    CPU time (user + system) is less disturbed than wall time by the machine's other load.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TESTGATE_"))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    command += ["-p", "no:randomly", "-p", "no:cov"]
    if timeouts:
        env["PYTHONPATH"] = str(PLUGIN_DIR)
        env["TESTGATE_TIMEOUTS"] = PLAN
        command += ["-p", "_testgate_plugin"]
    else:
        command += ["-p", "no:timeout"]
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return time.perf_counter() - started, cpu


def make_hanging(root: Path) -> Path:
    """A uv project whose first test passes and whose second hangs, announcing it."""
    project = root / "hanging"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "hanging"
            version = "0"
            requires-python = ">=3.11"
            [dependency-groups]
            dev = ["pytest", "pytest-cov"]
            [tool.uv]
            package = false
            [tool.testgate]
            workers = 2
            fail-under-line = 0
            fail-under-branch = 0
            """
        ),
        "utf-8",
    )
    (project / "tests" / "test_hang.py").write_text(
        textwrap.dedent(
            """\
            import os, pathlib, time

            def test_quick():
                pass

            def test_hangs():
                pathlib.Path(os.environ["HANG_FLAG"]).write_text("")
                time.sleep(120)
            """
        ),
        "utf-8",
    )
    return project


def sigterm_to_exit(project: Path) -> tuple[float, int]:
    """Seconds from SIGTERM (sent once the test hangs) to testgate's exit, and its exit code."""
    flag = project / "hanging.flag"
    flag.unlink(missing_ok=True)
    shutil.rmtree(project / "testgate-reports", ignore_errors=True)
    env = {**os.environ, "HANG_FLAG": str(flag)}
    child = subprocess.Popen(
        [str(TESTGATE), "run", "--project", str(project)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not flag.exists():
        time.sleep(0.02)
    sent = time.perf_counter()
    child.send_signal(signal.SIGTERM)
    code = child.wait()
    return time.perf_counter() - sent, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--signals", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        suite = make_suite(Path(temp), tests=args.tests)
        pytest_once(suite, timeouts=False)  # warm the bytecode caches
        plain: list[tuple[float, float]] = []
        limited: list[tuple[float, float]] = []
        for index in range(args.rounds):  # ABBA: whichever runs second in a pair is faster
            for timeouts in (False, True) if index % 2 else (True, False):
                (limited if timeouts else plain).append(pytest_once(suite, timeouts=timeouts))
        print(f"{args.tests} tests, one pytest process, median of {args.rounds} alternating runs:")
        for what, index in (("wall", 0), ("CPU", 1)):
            base = statistics.median(run[index] for run in plain)
            cost = statistics.median(run[index] for run in limited)
            print(
                f"  {what}: plain pytest {base:.3f} s, with testgate's per-test timeouts "
                f"{cost:.3f} s, ratio {cost / base:.3f} ({(cost / base - 1) * 100:+.1f} %; "
                "goal under +2 %)"
            )
        hanging = make_hanging(Path(temp))
        times = [sigterm_to_exit(hanging) for _ in range(args.signals)]
        print("SIGTERM to testgate during a hanging test (2 xdist workers), to its exit:")
        for seconds, code in times:
            print(f"  {seconds:.2f} s, exit {code}")
        print(f"  median {statistics.median(s for s, _ in times):.2f} s (goal under 3 s)")


if __name__ == "__main__":
    main()
