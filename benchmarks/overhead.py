"""The wall-time overhead of ``testgate run`` against the plain pytest command it replaces.

Both run the same generated suite in the same project environment, alternating, so
machine noise falls on both alike:

* plain:    uv run pytest -n auto --dist worksteal --cov=PKG --cov-branch --junitxml=...
* testgate: testgate run (the same pytest, plus the probe, the record, coverage XML/JSON
            reports, results.json, summary and gates)

Prints the median of each and their ratio. Run: ``.venv/bin/python benchmarks/overhead.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TESTGATE = Path(sys.executable).parent / "testgate"


def make_suite(root: Path, *, files: int, tests_per_file: int) -> Path:
    """A uv project with a small package and files x tests_per_file tests."""
    project = root / "suite"
    (project / "work").mkdir(parents=True)
    (project / "tests").mkdir()
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
            [tool.coverage.run]
            source = ["work"]
            """
        ),
        "utf-8",
    )
    (project / "work" / "__init__.py").write_text(
        "def crunch(n):\n    total = 0\n    for i in range(n):\n"
        "        if i % 3:\n            total += i\n    return total\n",
        "utf-8",
    )
    for index in range(files):
        body = "from work import crunch\n\n" + "".join(
            f"def test_{index}_{n}():\n    assert crunch({2000 + n}) >= 0\n\n"
            for n in range(tests_per_file)
        )
        (project / "tests" / f"test_{index}.py").write_text(body, "utf-8")
    return project


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        sys.stderr.write(completed.stdout.decode() + completed.stderr.decode())
        raise SystemExit(f"{command[0]} failed with exit {completed.returncode}")
    return elapsed


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--runs", type=int, default=5)
    arguments.add_argument("--files", type=int, default=20)
    arguments.add_argument("--tests-per-file", type=int, default=25)
    options = arguments.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    with tempfile.TemporaryDirectory() as temporary:
        project = make_suite(
            Path(temporary), files=options.files, tests_per_file=options.tests_per_file
        )
        subprocess.run([uv, "sync", "-q", "--project", str(project)], check=True)
        plain = [
            uv, "run", "--project", str(project), "python", "-m", "pytest", "-q",
            "-n", "auto", "--dist", "worksteal", "--cov=work", "--cov-branch",
            "--junitxml=plain-junit.xml",
        ]  # fmt: skip
        ours = [str(TESTGATE), "run", "--project", str(project)]
        timings: dict[str, list[float]] = {"plain": [], "testgate": []}
        timed(plain, project)  # warm caches for both
        for _ in range(options.runs):
            timings["plain"].append(timed(plain, project))
            timings["testgate"].append(timed(ours, project))
    tests = options.files * options.tests_per_file
    plain_median = statistics.median(timings["plain"])
    ours_median = statistics.median(timings["testgate"])
    print(f"suite: {tests} tests, {options.runs} alternating runs each, 2 xdist workers (auto)")
    for name, values in timings.items():
        shown = ", ".join(f"{value:.2f}" for value in values)
        print(f"{name:9} median {statistics.median(values):.2f} s  ({shown})")
    print(
        f"ratio testgate/plain: {ours_median / plain_median:.2f}  "
        f"(overhead {ours_median - plain_median:+.2f} s per run)"
    )


if __name__ == "__main__":
    main()
