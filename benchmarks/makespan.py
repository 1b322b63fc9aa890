"""P2, makespan: how close a run on 2 xdist workers comes to the best any scheduler could do.

makespan = from the first test's start to the last test's end (the pytest session
without xdist's start-up and shutdown), read from the test reports' own clocks by a
conftest in the controller; lower bound = max(sum of the tests' durations / workers,
longest test), from the same run's reports. Two suites:

* skewed: 120 sleep-only tests in 6 modules, 24 s in all, the 20 longest (18 s) all in
  the last module in ascending order, the longest (2.49 s) collected last;
* module fixtures: 4 modules x 6 tests, each module with a 0.4 s module-scoped fixture
  (paid once per module per worker that runs any of its tests).

Each is run as plain ``--dist load`` and ``--dist worksteal`` (with ``--cov --cov-branch``,
as testgate measures), and ``testgate run`` with the durations an earlier run recorded,
alternating; medians of the ratios are printed. Goal: testgate <= 1.05 on both and never above plain worksteal.

Run: ``.venv/bin/python benchmarks/makespan.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TESTGATE = shlex.split(os.environ.get("TESTGATE", str(Path(sys.executable).parent / "testgate")))
WORKERS = 2

CLOCK = """
import json

import pytest

_seen = []


def pytest_runtest_logreport(report):
    _seen.append((report.nodeid, report.when, report.start, report.stop))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    with open(session.config.rootpath / "clock.json", "w", encoding="utf-8") as stream:
        json.dump(_seen, stream)
"""


def project(root: Path, name: str, modules: dict[str, str]) -> Path:
    folder = root / name
    (folder / "tests").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "makespan"
            version = "0"
            requires-python = ">=3.11"
            dependencies = []
            [dependency-groups]
            dev = ["pytest", "pytest-xdist", "pytest-cov"]
            [tool.uv]
            package = false
            [tool.testgate]
            fail-under-line = 0
            fail-under-branch = 0
            fail-under-diff = 0
            """
        ),
        "utf-8",
    )
    (folder / "conftest.py").write_text(CLOCK, "utf-8")
    for module, body in modules.items():
        (folder / "tests" / f"{module}.py").write_text(body, "utf-8")
    subprocess.run(["uv", "sync", "-q", "--project", str(folder)], check=True)
    return folder


def skewed(root: Path) -> Path:
    """120 tests: 100 short ones (6 s) in 5 modules, then 20 ascending ones (18 s)."""
    modules = {}
    for module in range(5):
        modules[f"test_m{module}"] = "import time\n\n" + "".join(
            f"def test_{n:02d}():\n    time.sleep(0.06)\n\n" for n in range(20)
        )
    raw = [((n + 1) / 20) ** 1.77 for n in range(20)]
    scale = 18 / sum(raw)
    long = [min(2.49, round(value * scale, 3)) for value in raw]
    long[-1] = 2.49
    modules["test_m5"] = "import time\n\n" + "".join(
        f"def test_{n:02d}():\n    time.sleep({seconds})\n\n" for n, seconds in enumerate(long)
    )
    return project(root, "skewed", modules)


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


def fixtures(root: Path) -> Path:
    return project(root, "fixtures", {f"test_f{m}": FIXTURE_MODULE for m in range(4)})


def measure(command: list[str], folder: Path) -> tuple[float, float, float]:
    """One run's makespan, and the sum and longest of its tests' times (setup, call and
    teardown), from the controller's clock.json."""
    (folder / "clock.json").unlink(missing_ok=True)
    subprocess.run(command, cwd=folder, capture_output=True, check=False)
    seen = json.loads((folder / "clock.json").read_text("utf-8"))
    per_test: dict[str, float] = {}
    for nodeid, _, began, ended in seen:
        per_test[nodeid] = per_test.get(nodeid, 0.0) + ended - began
    span = max(entry[3] for entry in seen) - min(entry[2] for entry in seen)
    return span, sum(per_test.values()), max(per_test.values())


def compare(folder: Path, *, title: str, runs: int) -> None:
    """The lower bound takes the least work any run paid (a run that splits a module
    across workers pays its fixture twice: that is its scheduler's cost, not the bound's)."""
    python = str(folder / ".venv" / "bin" / "python")
    plain = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov", "--cov-branch"]
    plain += ["-n", str(WORKERS)]
    ways = {
        "--dist load": [*plain, "--dist", "load"],
        "--dist worksteal": [*plain, "--dist", "worksteal"],
        "testgate (durations)": [
            *TESTGATE,
            "run",
            "--project",
            str(folder),
            "--workers",
            str(WORKERS),
        ],
    }
    subprocess.run(ways["testgate (durations)"], cwd=folder, capture_output=True, check=False)
    spans: dict[str, list[float]] = {name: [] for name in ways}
    totals, longest = [], []
    names = list(ways)
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            span, total, long = measure(ways[name], folder)
            spans[name].append(span)
            totals.append(total)
            longest.append(long)
    bound = max(min(totals) / WORKERS, min(longest))
    print(
        f"\nP2 makespan / lower bound ({bound:.2f} s), {title}, {WORKERS} workers, "
        f"{runs} alternating runs"
    )
    for name, values in spans.items():
        shown = ", ".join(f"{value / bound:.3f}" for value in values)
        print(f"  {name:22} median {statistics.median(values) / bound:.3f}  ({shown})", flush=True)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--runs", type=int, default=5)
    options = arguments.parse_args()
    if shutil.which("uv") is None:
        raise SystemExit("uv is not on PATH")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        compare(skewed(root), title="skewed suite (120 tests, 24 s)", runs=options.runs)
        compare(
            fixtures(root), title="module fixtures (4 x 6 tests, 0.4 s each)", runs=options.runs
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
