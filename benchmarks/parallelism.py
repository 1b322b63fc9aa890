"""Never slower for being parallel (P8), and the fixed cost on a passing suite (P1).

P8: for generated suites of 8, 50, 150, 500 and 2,000 tests (realistic per-test times of
1-20 ms, half busy and half waiting, with a few slow tests of 0.1-0.3 s; many modules in
packages, a quarter of the tests in classes, a third parametrized), ``testgate run``'s
wall time divided by the faster of plain serial ``pytest --cov --cov-branch`` and plain
``pytest -n auto --dist worksteal --cov --cov-branch``. testgate is measured twice: on a
first run (no ``durations.json``, as on a CI job without a cache) and with the durations
an earlier run recorded. Goal: <= 1.05 at every size.

P1: on a passing 500-test suite, ``testgate run`` against ``pytest -n auto --dist
worksteal --cov --cov-branch --junitxml``. Goal: <= 1.03 (median ratio of >= 7 runs).

The commands alternate (A B B A ...) so that the noise of a shared machine falls on each
alike; medians and ratios are printed. Plain pytest runs with the project's own Python
(no ``uv run`` in front of it), as testgate does.

Run: ``.venv/bin/python benchmarks/parallelism.py [--sizes 8,50] [--runs 5]``. Set
``TESTGATE`` to another testgate command (e.g. ``python -m runner`` in an older checkout)
to measure it instead of this checkout's; ``TESTGATE_BEFORE`` adds one to P1's alternation.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TESTGATE = shlex.split(os.environ.get("TESTGATE", str(Path(sys.executable).parent / "testgate")))
BEFORE = shlex.split(os.environ.get("TESTGATE_BEFORE", ""))
PER_MODULE = 25
PER_PACKAGE = 10

TIMED = """
import time


def spend(seconds):
    \"\"\"Half busy (parsing, computing), half waiting (I/O): a test's time, roughly.\"\"\"
    end = time.perf_counter() + seconds / 2
    while time.perf_counter() < end:
        pass
    time.sleep(seconds / 2)
"""

WORK = """
def crunch(n):
    total = 0
    for i in range(n):
        if i % 3:
            total += i
        else:
            total -= 1
    return total


def describe(value):
    if value < 0:
        return "negative"
    if value == 0:
        return "zero"
    return "positive"
"""


def make_suite(root: Path, *, tests: int, seed: int = 8) -> Path:
    """A uv project of ``tests`` tests in modules of 25, packages of 10 modules."""
    rng = random.Random(seed)
    project = root / f"suite-{tests}"
    (project / "work").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "suite"
            version = "0"
            requires-python = ">=3.11"
            dependencies = []
            [dependency-groups]
            dev = ["pytest", "pytest-xdist", "pytest-cov"]
            [tool.uv]
            package = false
            [tool.pytest.ini_options]
            pythonpath = ["."]
            testpaths = ["tests"]
            [tool.coverage.run]
            source = ["work"]
            [tool.testgate]
            fail-under-line = 0
            fail-under-branch = 0
            fail-under-diff = 0
            """
        ),
        "utf-8",
    )
    (project / "work" / "__init__.py").write_text(WORK, "utf-8")
    (project / "work" / "timed.py").write_text(TIMED, "utf-8")
    made, module = 0, 0
    while made < tests:
        package = project / "tests" / f"pkg_{module // PER_PACKAGE}"
        package.mkdir(parents=True, exist_ok=True)
        count = min(PER_MODULE, tests - made)
        lines = [
            "import pytest",
            "",
            "from work import crunch, describe",
            "from work.timed import spend",
            "",
        ]
        index = 0
        while index < count:
            seconds = rng.uniform(0.001, 0.02)
            if rng.random() < 0.01:
                seconds = rng.uniform(0.1, 0.3)  # a few slow ones
            kind = rng.random()
            left = count - index
            if kind < 0.33 and left >= 4:
                ids = ["a/b", "[]", "with space", "ünï"][: rng.randint(2, min(4, left))]
                lines += [
                    f"@pytest.mark.parametrize('name', {ids!r})",
                    f"def test_p{index}(name):",
                    f"    spend({seconds:.4f})",
                    f"    assert describe(crunch({50 + index})) in ('negative', 'zero', 'positive')",
                    "",
                ]
                index += len(ids)
            elif kind < 0.58 and left >= 3:
                lines.append(f"class TestGroup{index}:")
                for method in range(3):
                    lines += [
                        f"    def test_m{method}(self):",
                        f"        spend({seconds:.4f})",
                        f"        assert crunch({method}) <= {method}",
                        "",
                    ]
                index += 3
            else:
                lines += [
                    f"def test_f{index}():",
                    f"    spend({seconds:.4f})",
                    f"    assert describe({index - 5}) != ''",
                    "",
                ]
                index += 1
        (package / f"test_mod_{module}.py").write_text("\n".join(lines), "utf-8")
        made += index
        module += 1
    return project


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout.decode()[-3000:] + completed.stderr.decode()[-3000:])
        raise SystemExit(f"{shlex.join(command)} failed with exit {completed.returncode}")
    return elapsed


def alternate(commands: dict[str, list[str]], *, cwd: Path, runs: int) -> dict[str, list[float]]:
    """Each command ``runs`` times, in A B .. B A order (ABBA), after one warm-up each."""
    for command in commands.values():
        timed(command, cwd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            times[name].append(timed(commands[name], cwd))
    return times


def peers(project: Path) -> dict[str, list[str]]:
    python = str(project / ".venv" / "bin" / "python")
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov", "--cov-branch"]
    return {
        "serial": pytest,
        "xdist": [*pytest, "-n", "auto", "--dist", "worksteal"],
    }


def p8(root: Path, *, sizes: list[int], runs: int) -> None:
    print(f"P8: testgate / min(serial, xdist) wall time; {runs} alternating runs, medians (s)")
    print(
        f"  {'tests':>6} {'serial':>7} {'xdist':>7} {'tg first':>8} {'tg durs':>8}  ratio first  ratio durs"
    )
    for size in sizes:
        project = make_suite(root, tests=size)
        subprocess.run(["uv", "sync", "-q", "--project", str(project)], check=True)
        first_dir = project / "first-reports"
        commands = {
            **peers(project),
            # a reports dir made afresh each run: no durations.json, as on a first CI run
            "first": [
                "sh",
                "-c",
                f'rm -rf "{first_dir}" && exec "$@"',
                "sh",
                *TESTGATE,
                "run",
                "--project",
                str(project),
                "--reports-dir",
                str(first_dir),
            ],
            "durations": [*TESTGATE, "run", "--project", str(project)],
        }
        times = alternate(commands, cwd=project, runs=runs)
        median = {name: statistics.median(values) for name, values in times.items()}
        best = min(median["serial"], median["xdist"])
        print(
            f"  {size:>6} {median['serial']:>7.2f} {median['xdist']:>7.2f} {median['first']:>8.2f}"
            f" {median['durations']:>8.2f}  {median['first'] / best:>11.2f}"
            f"  {median['durations'] / best:>10.2f}",
            flush=True,
        )


def p1(root: Path, *, runs: int) -> None:
    project = make_suite(root / "p1", tests=500, seed=1)  # not P8's suite of 500 in root
    subprocess.run(["uv", "sync", "-q", "--project", str(project)], check=True)
    commands = {
        "plain": [*peers(project)["xdist"], "--junitxml=plain-junit.xml"],
        "testgate": [*TESTGATE, "run", "--project", str(project)],
    }
    if BEFORE:  # another testgate (an older checkout) in the same alternation
        commands["before"] = [*BEFORE, "run", "--project", str(project)]
    times = alternate(commands, cwd=project, runs=runs)
    print(f"\nP1: testgate / plain xdist+cov+junitxml, 500 passing tests, {runs} alternating runs")
    for name, values in times.items():
        shown = ", ".join(f"{value:.2f}" for value in values)
        print(f"  {name:9} median {statistics.median(values):.2f} s  ({shown})")
    for name in [name for name in commands if name != "plain"]:
        ratios = [ours / plain for ours, plain in zip(times[name], times["plain"], strict=True)]
        shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(f"  {name:9} median ratio {statistics.median(ratios):.3f}  ({shown})")


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--sizes", default="8,50,150,500,2000")
    arguments.add_argument("--runs", type=int, default=5)
    arguments.add_argument("--p1-runs", type=int, default=7)
    arguments.add_argument("--only", choices=("p8", "p1"), default=None)
    options = arguments.parse_args()
    if shutil.which("uv") is None:
        raise SystemExit("uv is not on PATH")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as temporary:
        if options.only in (None, "p8"):
            sizes = [int(size) for size in options.sizes.split(",")]
            p8(Path(temporary), sizes=sizes, runs=options.runs)
        if options.only in (None, "p1"):
            p1(Path(temporary), runs=options.p1_runs)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
