"""What making every run end costs: the timeout machinery, and the time from SIGTERM to exit.

1. Two generated suites of 500 tests (a third marked ``unit``, a third ``integration``):
   *empty* tests in one module (the worst case: nothing but the per-test cost), and a
   *realistic* suite (ten modules, classes, parametrized ids, a fixture, some real work per
   test). Each runs in one pytest process, in turn (the order rotating every round, so no
   configuration is always first or last), as:

   - ``plain``: plain pytest, no timeouts at all;
   - ``plugin``: pytest plus testgate's plugin, without limits (``timeout`` 0);
   - ``testgate``: pytest plus testgate's plugin giving every test its limit (``timeout``
     900, ``timeouts`` unit 1 and integration 5), as ``testgate run`` does on Linux;
   - ``pytest-timeout``: the same limits, each test given a ``timeout`` marker that
     pytest-timeout enforces (what testgate does where there is no SIGALRM; the peer).

   It prints the median wall and CPU seconds of each, their ratio to ``plain`` and that
   of ``testgate`` to ``plugin``, the limits alone (goal: under 2 %). With
   ``--instructions``, each also runs once under valgrind's cachegrind, whose count of
   instructions does not depend on the machine's load.
2. ``testgate run`` on a suite whose second test hangs: SIGTERM sent once the hang has
   begun, and the seconds until testgate has written its reports and exited (goal:
   under 3 s), for each of a few runs.

The machine is shared, so single numbers are noisy; the rotation and the medians are
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
CONFIGURATIONS = ("plain", "plugin", "testgate", "pytest-timeout")
CACHEGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")
MARKERS = ("@pytest.mark.unit\n", "@pytest.mark.integration\n", "")
PYPROJECT = '[tool.pytest.ini_options]\nmarkers = ["unit: u", "integration: i"]\n'


def make_suite(root: Path, *, tests: int) -> Path:
    """A project of ``tests`` empty tests in one module, a third ``unit``, a third
    ``integration``."""
    project = root / "empty"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT, "utf-8")
    body = ["import pytest\n"]
    for n in range(tests):
        body.append(f"\n{MARKERS[n % 3]}def test_{n}():\n    pass\n")
    (project / "tests" / "test_many.py").write_text("".join(body), "utf-8")
    return project


REALISTIC_MODULE = """\
import json

import pytest


@pytest.fixture
def records():
    return [{{"id": n, "name": f"item-{{n}}", "tags": ["a", "b"][: n % 3]}} for n in range(40)]


def crunch(n):
    return sum(i * i for i in range(n) if i % 3)


class TestParsing{index}:
{methods}

{functions}
"""


def make_realistic(root: Path, *, tests: int) -> Path:
    """A project of ``tests`` tests over ten modules: half in classes, half parametrized
    functions; each serialises, sorts or sums a little, some through a fixture."""
    project = root / "realistic"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT, "utf-8")
    per_module = tests // 10
    for index in range(10):
        methods = "".join(
            f"    {MARKERS[n % 3].strip()}\n    def test_round_trip_{n}(self, records):\n"
            f'        assert json.loads(json.dumps(records))[{n % 40}]["id"] == {n % 40}\n\n'
            for n in range(per_module // 2)
        )
        params = per_module - per_module // 2
        functions = "".join(
            f'{MARKERS[n % 3]}@pytest.mark.parametrize("size", [{", ".join(str(100 * (k + 1) + n) for k in range(5))}])\n'
            f"def test_crunch_{n}(size):\n    assert crunch(size) >= 0\n    assert sorted(range(size, 0, -1))[0] == 1\n\n"
            for n in range(params // 5)
        )
        (project / "tests" / f"test_module_{index}.py").write_text(
            REALISTIC_MODULE.format(index=index, methods=methods.rstrip(), functions=functions),
            "utf-8",
        )
    return project


def pytest_command(project: Path, *, configuration: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one single-process pytest run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TESTGATE_"))}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    command += ["-p", "no:randomly", "-p", "no:cov"]
    if configuration != "plain":
        env["PYTHONPATH"] = str(PLUGIN_DIR)
        command += ["-p", "_testgate_plugin"]
    if configuration in ("testgate", "pytest-timeout"):
        env["TESTGATE_TIMEOUTS"] = PLAN
    if configuration == "pytest-timeout":  # a limit of pytest-timeout's own: markers
        command += ["--timeout", "900"]
    else:  # on Linux testgate adds no pytest-timeout
        command += ["-p", "no:timeout"]
    return command, env


def pytest_once(project: Path, *, configuration: str) -> tuple[float, float]:
    """Wall and CPU seconds of one single-process pytest run in one configuration.

    CPU time (user + system) is less disturbed than wall time by the machine's other load.
    """
    command, env = pytest_command(project, configuration=configuration)
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return time.perf_counter() - started, cpu


def instructions(project: Path, *, configuration: str) -> int:
    """Instructions one run executes, counted by valgrind's cachegrind: the same on a
    loaded machine as on an idle one (wall and CPU time are not)."""
    command, env = pytest_command(project, configuration=configuration)
    counted = subprocess.run(
        [*CACHEGRIND, *command],
        cwd=project,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    (line,) = [line for line in counted.stderr.splitlines() if "I   refs:" in line]
    return int(line.rsplit(":", 1)[1].replace(",", ""))


def compare(project: Path, *, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Each configuration once per round, the order rotating from round to round."""
    for configuration in CONFIGURATIONS:  # warm the bytecode caches
        pytest_once(project, configuration=configuration)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGURATIONS}
    for index in range(rounds):
        shift = index % len(CONFIGURATIONS)
        order = CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]
        for configuration in order if index % 2 else tuple(reversed(order)):
            runs[configuration].append(pytest_once(project, configuration=configuration))
    return runs


def show(name: str, runs: dict[str, list[tuple[float, float]]], *, rounds: int) -> None:
    print(f"{name}: one pytest process, median of {rounds} rotating runs:")
    for what, index in (("wall", 0), ("CPU", 1)):
        median = {c: statistics.median(run[index] for run in runs[c]) for c in CONFIGURATIONS}
        cells = [f"plain {median['plain']:.3f} s"]
        for configuration in CONFIGURATIONS[1:]:
            cost = median[configuration]
            cells.append(
                f"{configuration} {cost:.3f} s ({(cost / median['plain'] - 1) * 100:+.1f} %)"
            )
        machinery = (median["testgate"] / median["plugin"] - 1) * 100
        print(f"  {what}: " + ", ".join(cells) + f"; the limits alone {machinery:+.1f} %")


def show_instructions(name: str, project: Path) -> None:
    counts = {c: instructions(project, configuration=c) for c in CONFIGURATIONS}
    cells = [f"plain {counts['plain'] / 1e6:.0f} M"] + [
        f"{c} {counts[c] / 1e6:.0f} M ({(counts[c] / counts['plain'] - 1) * 100:+.1f} %)"
        for c in CONFIGURATIONS[1:]
    ]
    machinery = (counts["testgate"] / counts["plugin"] - 1) * 100
    print(f"{name}, instructions: " + ", ".join(cells) + f"; the limits alone {machinery:+.1f} %")


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
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions with valgrind"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        for name, maker in (("empty", make_suite), ("realistic", make_realistic)):
            suite = maker(Path(temp), tests=args.tests)
            show(
                f"{args.tests} {name} tests",
                compare(suite, rounds=args.rounds),
                rounds=args.rounds,
            )
            if args.instructions:
                show_instructions(f"{args.tests} {name} tests", suite)
        print("  (goal: testgate under +2 %)")
        hanging = make_hanging(Path(temp))
        times = [sigterm_to_exit(hanging) for _ in range(args.signals)]
        print("SIGTERM to testgate during a hanging test (2 xdist workers), to its exit:")
        for seconds, code in times:
            print(f"  {seconds:.2f} s, exit {code}")
        print(f"  median {statistics.median(s for s, _ in times):.2f} s (goal under 3 s)")


if __name__ == "__main__":
    main()
