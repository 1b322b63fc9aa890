"""How well testgate tells flaky from broken, measured on a labelled suite.

The suite (generated): random flakes failing with known probabilities drawn from the OS
entropy pool, an order-dependent pair, a shared-file race that only bites under xdist,
a broken test and stable tests. The benchmark prints:

1. over many ``testgate run`` trials (2 xdist workers, 2 reruns), for each labelled test
   whose first attempt failed: how often it was classified right, against the chance
   bound (a random flake with failure rate p survives R reruns all failing with
   probability p**R, and fails both order-check replays with probability p**2);
2. the test runs ``testgate flaky`` used to reach its verdicts (c = 0.95, p = 0.05)
   against pytest-flakefinder's fixed 50 runs per test, run on the same tests;
3. the wall time the reruns added to each ``testgate run`` against its first attempt.

Run: ``.venv/bin/python benchmarks/flaky.py [--trials 20]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

TESTGATE = Path(sys.executable).parent / "testgate"
RERUNS = 2
ORDER_CHECKS = 2
RATES = {"test_p50": 0.5, "test_p30": 0.3, "test_p10": 0.1}
LABELS = {
    **{f"tests/test_random.py::{name}": "nondeterministic" for name in RATES},
    "tests/test_order.py::test_victim": "order-dependent",
    **{f"tests/test_m_race.py::test_writer_{n}": "nondeterministic" for n in range(6)},
    "tests/test_broken.py::test_broken": "failed",
    "tests/test_stable.py::test_stable_0": "passed",
}


def make_suite(root: Path) -> Path:
    project = root / "labelled"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "labelled"
            version = "0"
            requires-python = ">=3.11"
            dependencies = []
            [dependency-groups]
            dev = ["pytest", "pytest-xdist", "pytest-cov", "pytest-flakefinder"]
            [tool.uv]
            package = false
            [tool.testgate]
            fail-under-line = 0
            fail-under-branch = 0
            """
        ),
        "utf-8",
    )
    random_tests = "".join(
        f"def {name}():\n    assert os.urandom(1)[0] >= {round(256 * rate)}\n\n\n"
        for name, rate in RATES.items()
    )
    files = {
        "test_random.py": "import os\n\n\n" + random_tests,
        "test_order.py": "STATE = {'dirty': False}\n\n\ndef test_polluter():\n"
        "    STATE['dirty'] = True\n\n\ndef test_victim():\n    assert not STATE['dirty']\n",
        # Between the fast tests, so that worksteal hands the writers to both workers.
        "test_m_race.py": textwrap.dedent(
            """\
            import time
            from pathlib import Path

            SHARED = Path(__file__).parent / "shared.txt"


            def write_and_read(value):
                for _ in range(5):
                    SHARED.write_text(value)
                    time.sleep(0.02)
                    assert SHARED.read_text() == value
            """
        )
        + "".join(f"\n\ndef test_writer_{n}():\n    write_and_read('{n}')\n" for n in range(6)),
        "test_broken.py": "def test_broken():\n    assert 1 == 2\n",
        "test_stable.py": "".join(
            f"def test_stable_{n}():\n    assert sum(range({n + 100})) > 0\n\n\n" for n in range(20)
        ),
    }
    for name, text in files.items():
        (project / "tests" / name).write_text(text, "utf-8")
    return project


def trials(project: Path, count: int) -> None:
    observed: Counter[str] = Counter()
    right_class: Counter[str] = Counter()
    right_kind: Counter[str] = Counter()
    first_s: list[float] = []
    rerun_s: list[float] = []
    for _ in range(count):
        subprocess.run(
            [str(TESTGATE), "run", "--project", str(project), "--workers", "2"],
            capture_output=True,
            check=False,
        )
        data = json.loads((project / "testgate-reports" / "results.json").read_text("utf-8"))
        first_s.append(data["run"]["suite_duration_s"])
        rerun_s.append(data["run"]["rerun_duration_s"])
        for test in data["tests"]:
            label = LABELS.get(test["id"])
            if label is None:
                continue
            failed_first = test["attempts"][0]["outcome"] in ("failed", "error")
            if label in ("failed", "passed"):
                observed[test["id"]] += 1
                right_class[test["id"]] += test["outcome"] == label
                right_kind[test["id"]] += test["outcome"] == label
            elif failed_first:
                observed[test["id"]] += 1
                right_class[test["id"]] += test["outcome"] == "flaky"
                right_kind[test["id"]] += test["outcome"] == "flaky" and test["flaky_kind"] == label
    print(f"\n1. classification over {count} testgate run trials (2 workers, reruns=2)")
    print("seen: trials whose first attempt failed (every trial for broken and stable tests);")
    print("class ok: share classified flaky (failed / passed for broken / stable);")
    print("kind ok: share of those classified flaky whose kind is right.")
    header = ("test", "label", "seen", "class ok", "bound", "kind ok", "bound")
    print("{:40} {:17} {:>4} {:>9} {:>6} {:>8} {:>6}".format(*header))
    for test_id, label in LABELS.items():
        seen = observed[test_id]
        name = test_id.split("::")[1]
        rate = RATES.get(name)
        class_bound = f"{1 - rate**RERUNS:.2f}" if rate else "1.00"
        kind_bound = f"{1 - rate**ORDER_CHECKS:.2f}" if rate else "1.00"
        if seen:
            flaky = right_class[test_id] if label not in ("failed", "passed") else seen
            kind = f"{right_kind[test_id] / flaky:.2f}" if flaky else "-"
            print(
                f"{test_id:40} {label:17} {seen:>4} {right_class[test_id] / seen:>9.2f} "
                f"{class_bound:>6} {kind:>8} {kind_bound:>6}"
            )
        else:
            print(f"{test_id:40} {label:17} {0:>4}  (its first attempt never failed)")
    print(
        f"\n3. reruns: first attempt median {statistics.median(first_s):.2f} s, reruns and order "
        f"checks median {statistics.median(rerun_s):.2f} s; ratio rerun/first "
        f"{statistics.median(rerun_s) / statistics.median(first_s):.2f}"
    )


def detection(project: Path, uv: str) -> None:
    chosen = [test_id for test_id in LABELS if "race" not in test_id] + [
        "tests/test_order.py::test_polluter"
    ]
    started = time.perf_counter()
    subprocess.run(
        [str(TESTGATE), "flaky", "--project", str(project), "--workers", "0", "--only", *chosen],
        capture_output=True,
        check=False,
    )
    ours_s = time.perf_counter() - started
    data = json.loads((project / "testgate-reports" / "flaky.json").read_text("utf-8"))
    ours_runs = sum(test["runs"] for test in data["tests"])
    verdicts = {test["id"]: test["verdict"] for test in data["tests"]}
    started = time.perf_counter()
    finder = subprocess.run(
        [uv, "run", "--project", str(project), "python", "-m", "pytest", "-q", "-p",
         "no:randomly", "--flake-finder", "--flake-runs=50", "-rA", *chosen],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
    )  # fmt: skip
    finder_s = time.perf_counter() - started
    outcomes: dict[str, set[str]] = {}
    for line in finder.stdout.splitlines():
        parts = line.split(" ")
        if len(parts) >= 2 and parts[0] in ("PASSED", "FAILED"):
            test_id = parts[1].split("[")[0]
            outcomes.setdefault(test_id, set()).add(parts[0])
    finder_flaky = sorted(t for t, seen in outcomes.items() if seen == {"PASSED", "FAILED"})
    print("\n2. flaky detection: testgate flaky (c=0.95, p=0.05) against pytest-flakefinder x50")
    print(f"testgate flaky: {ours_runs} test runs in {data['rounds']} rounds, {ours_s:.1f} s")
    for test_id in chosen:
        print(f"  {test_id:40} {verdicts.get(test_id, '?')}")
    print(
        f"flakefinder:    {50 * len(chosen)} test runs, {finder_s:.1f} s; flaky: "
        f"{', '.join(name.split('::')[1] for name in finder_flaky) or 'none'}"
    )
    print(
        f"ratio of test runs testgate/flakefinder: {ours_runs / (50 * len(chosen)):.2f}; "
        "testgate's stable verdicts say 'fails < 5 % at 95 %'; 50 clean runs say only < 6 %"
    )


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--trials", type=int, default=20)
    options = arguments.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    with tempfile.TemporaryDirectory() as temporary:
        project = make_suite(Path(temporary))
        subprocess.run([uv, "sync", "-q", "--project", str(project)], check=True)
        trials(project, options.trials)
        detection(project, uv)


if __name__ == "__main__":
    main()
