"""Scale-out, measured: scheduling inside a job, shard balance, merging, JUnit ingest.

Prints, in one run:

1. makespan / lower bound, with lower bound = max(sum of durations / workers, longest
   test), on a suite with skewed durations (2 xdist workers), for plain ``--dist load``,
   plain ``--dist worksteal``, and worksteal with testgate's duration order;
2. slowest shard / (total / N) for N = 2, 4, 8, testgate's partition against
   pytest-split's ``least_duration`` on the same (lognormal) durations of 5,000 tests;
3. merging 64 shards of 5,000 tests (results + JUnit + coverage data): ``testgate
   merge`` against ``junitparser merge`` followed by ``coverage combine``, wall time and
   peak memory (largest process);
4. ingesting one 100,000-test JUnit file (1 % failures with 20-line tracebacks) into
   results.json, the summary and the annotations (goal: 0.5 s, 150 MB), and ``testgate
   merge`` of it, with junitparser's parse alone for reference: wall time and peak memory.

Run: ``.venv/bin/python benchmarks/scale.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_split.algorithms import Algorithms

from runner.junit import write_junit
from runner.results import Attempt, RunInfo, RunResult, TestResult
from runner.sharding import partition

BIN = Path(sys.executable).parent
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
for command in __COMMANDS__:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measured(commands: list[list[str]], cwd: Path) -> tuple[float, float]:
    """Wall seconds of the commands in a row, and the largest one's peak RSS in MB."""
    script = MEASURE.replace("__COMMANDS__", repr(commands))
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]) / 1024


def median_of(times: int, commands: list[list[str]], cwd: Path) -> tuple[float, float]:
    """The median wall time and peak memory of ``times`` measured runs (this machine is noisy)."""
    runs = [measured(commands, cwd) for _ in range(times)]
    return statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)


def makespan(root: Path, *, seconds: list[float], title: str, runs: int = 5) -> None:
    project = root / f"skewed-{len(seconds)}"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "skewed"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = []\n[dependency-groups]\ndev = ["pytest", "pytest-xdist", "pytest-cov"]\n'
        "[tool.uv]\npackage = false\n[tool.testgate]\nfail-under-line = 0\nfail-under-branch = 0\n",
        "utf-8",
    )
    body = "import time\n\n" + "".join(
        f"def test_{n:02d}():\n    time.sleep({s})\n\n" for n, s in enumerate(seconds)
    )
    (project / "tests" / "test_skewed.py").write_text(body, "utf-8")
    bound = max(sum(seconds) / 2, *seconds)
    ways = {
        "--dist load": ["--dist", "load", "--durations", "none.json"],
        "--dist worksteal": ["--dist", "worksteal", "--durations", "none.json"],
        "worksteal + testgate order": ["--dist", "worksteal", "--durations", "recorded.json"],
    }
    subprocess.run([str(BIN / "testgate"), "run", "--project", str(project), "--workers", "2"],
                   capture_output=True, check=False)  # fmt: skip
    shutil.copy(project / "testgate-reports" / "durations.json", project / "recorded.json")
    print(f"\n1. makespan / lower bound (about {bound:.2f} s), {title}, 2 workers, {runs} runs")
    for name, args in ways.items():
        ratios = []
        for _ in range(runs):
            subprocess.run(
                [str(BIN / "testgate"), "run", "--project", str(project), "--workers", "2", *args],
                capture_output=True,
                check=False,
            )
            data = json.loads((project / "testgate-reports" / "results.json").read_text("utf-8"))
            load: dict[str, float] = {}
            for test in data["tests"]:
                attempt = test["attempts"][0]
                load[attempt["worker"]] = load.get(attempt["worker"], 0.0) + attempt["duration_s"]
            # The bound from this run's own durations: each test's setup and teardown cost
            # a few milliseconds more than its sleep, which no scheduler can avoid.
            spent = [test["attempts"][0]["duration_s"] for test in data["tests"]]
            ratios.append(max(load.values()) / max(sum(spent) / 2, *spent))
        print(
            f"  {name:28} median {statistics.median(ratios):.3f}  ({', '.join(f'{r:.3f}' for r in ratios)})"
        )


FIXTURE_MODULE = """
import time
import pytest


@pytest.fixture(scope="module")
def expensive():
    time.sleep(0.4)  # a database schema, a server: paid once per module per process
    return 1
""" + "".join(
    f"\n\ndef test_{n}(expensive):\n    time.sleep({0.05 + 0.08 * n:.2f})\n" for n in range(6)
)


def fixture_groups(root: Path) -> None:
    """Wall time with and without keeping a module-scoped fixture's tests together."""
    project = root / "fixtures"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "fx"\nversion = "0"\nrequires-python = ">=3.11"\ndependencies = []\n'
        '[dependency-groups]\ndev = ["pytest", "pytest-xdist"]\n[tool.uv]\npackage = false\n',
        "utf-8",
    )
    durations = {}
    for module in range(4):
        (project / "tests" / f"test_m{module}.py").write_text(FIXTURE_MODULE, "utf-8")
        for n in range(6):
            durations[f"tests/test_m{module}.py::test_{n}"] = 0.05 + 0.08 * n
    subprocess.run(["uv", "sync", "-q", "--project", str(project)], check=True)
    plugin = Path(__file__).parent.parent / "runner" / "plugin"
    print(
        "\n1b. keeping a module fixture's tests together (4 modules x 6 tests, 0.4 s fixture, 2 workers)"
    )
    ways = {
        "grouped (testgate)": {"order": True, "group": True},
        "per test, longest first": {"order": True, "group": False},
        "pytest's own order": {"order": False},
    }
    for label, plan in ways.items():
        (project / "schedule.json").write_text(json.dumps({"durations": durations, **plan}))
        env = {
            **os.environ,
            "PYTHONPATH": str(plugin),
            "TESTGATE_SCHEDULE": str(project / "schedule.json"),
        }
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(["uv", "run", "--project", str(project), "python", "-m", "pytest", "-q",
                            "-p", "_testgate_plugin", "-n", "2", "--dist", "worksteal"],
                           cwd=project, env=env, capture_output=True, check=False)  # fmt: skip
            walls.append(time.perf_counter() - started)
        print(
            f"  {label:24} median {statistics.median(walls):.2f} s  ({', '.join(f'{w:.2f}' for w in walls)})"
        )


class Item:
    """What pytest-split's algorithm reads of a pytest item."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __str__(self) -> str:
        return self.nodeid


def shard_balance() -> None:
    rng = random.Random(7)
    durations = {
        f"tests/test_{n // 50}.py::test_{n}": rng.lognormvariate(-2.0, 1.2) for n in range(5000)
    }
    ids = list(durations)
    total = sum(durations.values())
    print("\n2. slowest shard / (total / N), 5,000 tests with lognormal durations")
    for count in (2, 4, 8):
        ours = max(sum(durations[t] for t in part) for part in partition(ids, durations, count))
        items: list[Any] = [Item(t) for t in ids]  # pytest-split reads only .nodeid and str()
        groups = Algorithms.least_duration.value(count, items, durations)
        theirs = max(group.duration for group in groups)
        print(
            f"  N={count}: testgate {ours / (total / count):.5f}   pytest-split {theirs / (total / count):.5f}"
        )


def shard_results(index: int, count: int, per_shard: int, failures: int) -> dict[str, Any]:
    tests = []
    for n in range(per_shard):
        number = index * per_shard + n
        failed = n < failures
        attempt = Attempt(
            outcome="failed" if failed else "passed",
            duration_s=0.01,
            message="AssertionError: boom" if failed else None,
            line=3 if failed else None,
            text="\n".join(f"tests/test_{number // 100}.py:{k}: in test" for k in range(20))
            if failed
            else None,
            worker="gw0",
        )
        test_id = f"tests/test_{number // 100}.py::test_{number}"
        tests.append(TestResult(id=test_id, file=test_id.split("::", maxsplit=1)[0], line=3,
                                outcome=attempt.outcome, attempts=(attempt,)))  # fmt: skip
    info = RunInfo(started="2026-11-21T00:00:00+00:00", duration_s=1.0, suite_duration_s=1.0,
                   commit=None, python="3.11.7", platform="linux", variant="py3.11.7-linux",
                   shard=f"{index + 1}/{count}")  # fmt: skip
    return RunResult(run=info, tests=tuple(tests), coverage=None, gates=()).to_json()


def merging(root: Path) -> None:
    project = root / "merged-project"
    (project / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "m"\nversion = "0"\n', "utf-8")
    for n in range(50):
        (project / "pkg" / f"m{n}.py").write_text(
            "".join(
                f"def f{k}(x):\n    if x:\n        return {k}\n    return -{k}\n\n"
                for k in range(10)
            ),
            "utf-8",
        )
    runner_script = "import importlib\n" + "".join(
        f"m = importlib.import_module('pkg.m{n}')\n[getattr(m, f'f{{k}}')(k % 2) for k in range(10)]\n"
        for n in range(50)
    )
    (project / "pkg" / "__init__.py").write_text("", "utf-8")
    (project / "drive.py").write_text(runner_script, "utf-8")
    subprocess.run([sys.executable, "-m", "coverage", "run", "--branch", "--data-file=.coverage.one",
                    "drive.py"], cwd=project, check=True)  # fmt: skip
    shards = []
    for index in range(64):
        directory = root / f"shard-{index}"
        directory.mkdir()
        data = shard_results(index, 64, 5000, failures=50)
        (directory / "results.json").write_text(json.dumps(data), "utf-8")
        write_junit(RunResult.from_json(data), directory / "junit.xml")
        shutil.copy(project / ".coverage.one", directory / ".coverage")
        shards.append(directory)
    ours = measured(
        [[str(BIN / "testgate"), "merge", "--project", str(project), "--reports-dir",
          str(root / "out"), "--expect-shards", "64", *map(str, shards)]],
        project,
    )  # fmt: skip
    for index, directory in enumerate(shards):
        shutil.copy(directory / ".coverage", root / f".coverage.shard{index}")
    peers = measured(
        [[str(BIN / "junitparser"), "merge", *[str(d / "junit.xml") for d in shards], str(root / "peer.xml")],
         [sys.executable, "-m", "coverage", "combine", "--keep", "--data-file", str(root / ".coverage"),
          *[str(root / f".coverage.shard{i}") for i in range(64)]]],
        project,
    )  # fmt: skip
    print("\n3. merging 64 shards x 5,000 tests (results, JUnit, coverage data)")
    print(f"  testgate merge:                       {ours[0]:.2f} s, {ours[1]:.0f} MB")
    print(f"  junitparser merge + coverage combine: {peers[0]:.2f} s, {peers[1]:.0f} MB")
    print(f"  ratio time {ours[0] / peers[0]:.2f}, memory {ours[1] / peers[1]:.2f}")


INGEST = """
import os, sys
from pathlib import Path
from runner import render
from runner.github.step import report
from runner.junit import read_junit
from runner.results import RunInfo, RunResult, encode
tests = read_junit(Path(sys.argv[1]), project=Path(sys.argv[2]))
info = RunInfo(started="", duration_s=0.0, suite_duration_s=0.0, commit=None, python=None,
               platform=None, variant=None)
result = RunResult(run=info, tests=tests, coverage=None, gates=())
out = Path(sys.argv[3])
with (out / "results.json").open("wb") as stream:
    stream.writelines(encode(result))
markdown = render.markdown(result)
(out / "summary.md").write_text(markdown)
(out / "annotations.txt").write_text(
    report(result, markdown=markdown, reports_dir=str(out), environ=os.environ, api=None)
)
"""
JUNITPARSER = """
import sys
from junitparser import JUnitXml
failed = sum(1 for suite in JUnitXml.fromfile(sys.argv[1]) for case in suite if not case.is_passed)
print(failed, file=sys.stderr)
"""


def ingest(root: Path) -> None:
    directory = root / "foreign"
    directory.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "big"\nversion = "0"\n', "utf-8")
    path = directory / "junit.xml"
    trace = "\n".join(f"tests/test_big.py:{k}: in helper_{k}\n    call_{k}()" for k in range(10))
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="100000">'
        )
        for n in range(100_000):
            out.write(f'<testcase classname="tests.test_big" name="test_{n}" time="0.001"')
            if n % 100 == 0:
                out.write(f'><failure message="AssertionError: {n}">{trace}</failure></testcase>')
            else:
                out.write("/>")
        out.write("</testsuite></testsuites>")
    (root / "ingested").mkdir()
    runner = {  # GitHub's files, so that the summary, outputs and annotations are written
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(root / "step-summary.md"),
        "GITHUB_OUTPUT": str(root / "outputs.txt"),
    }
    previous = {name: os.environ.get(name) for name in runner}
    os.environ.update(runner)
    try:
        own = median_of(
            5, [[sys.executable, "-c", INGEST, str(path), str(root), str(root / "ingested")]], root
        )
        merge = median_of(
            5,
            [[str(BIN / "testgate"), "merge", "--project", str(root), "--reports-dir",
              str(root / "merged"), str(directory)]],
            root,
        )  # fmt: skip
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    parsed = median_of(5, [[sys.executable, "-c", JUNITPARSER, str(path)]], root)
    size = path.stat().st_size / 1e6
    print(
        f"\n4. ingesting a 100,000-test JUnit file ({size:.0f} MB, 1 % failures, 20-line tracebacks);"
        " each a fresh process, imports included, median of 5"
    )
    print(f"  into results.json, summary and annotations: {own[0]:.2f} s, {own[1]:.0f} MB"
          f"   (goal 0.5 s, 150 MB; the reporting actions take 1.2-3.0 s and 260-290 MB)")  # fmt: skip
    print(
        f"  testgate merge of it (also junit.xml x2, durations.json, gates): {merge[0]:.2f} s, {merge[1]:.0f} MB"
    )
    print(
        f"  junitparser, only parsing it and counting failures:            {parsed[0]:.2f} s, {parsed[1]:.0f} MB"
    )
    print(f"  ratio to the goal: time {own[0] / 0.5:.2f}, memory {own[1] / 150:.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        # Long tests last in file order: the case a count-based split handles worst.
        makespan(root, seconds=[0.05] * 30 + [0.3] * 7 + [1.0] * 3, title="40 tests of 0.05-1.0 s")
        makespan(root, seconds=[0.05] * 20 + [1.5], title="20 short tests, then one of 1.5 s")
        fixture_groups(root)
        shard_balance()
        merging(root)
        ingest(root)


if __name__ == "__main__":
    main()
