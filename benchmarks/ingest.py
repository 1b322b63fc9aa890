"""P4, large-report ingest: ``testgate merge`` of one JUnit file shaped like a real suite.

The file is what pytest writes (xunit2) for a large project: 2,000 test modules in 50
packages whose module basenames repeat (``pkg07/tests/test_models.py`` and
``pkg31/tests/test_models.py``), a quarter of the tests in classes, half parametrized
with ids such as ``a/b``, ``[]``, spaces and non-ASCII text, 1 % failures with 20-line
tracebacks, 0.1 % setup errors, 2 % skips (some of them xfail), 3 % with captured
stdout/stderr. The project's test files exist on disk, as in the checkout a merge runs in.

Prints, per size (10k, 100k, 1M cases; each ``testgate merge`` a fresh process, imports
included, median of 3): wall time, CPU time (user + system: on a loaded machine the wall
time is mostly waiting for a core), peak memory, CPU seconds per 100k cases (linear when
that stays put), and for 100k the ratio to the goal (0.6 s, 100 MB) and to the reporting
actions (dorny/test-reporter 1.2 s, action-junit-report 1.4 s, EnricoMi's 3.0 s;
260-290 MB).

Run: ``.venv/bin/python benchmarks/ingest.py [CASES ...]``. The machine is shared: the
numbers are noisy; compare ratios from one run.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
PACKAGES = 50
MODULES = 2000
BASENAMES = [f"test_{word}" for word in (
    "models", "views", "api", "forms", "utils", "admin", "tasks", "signals", "serializers",
    "permissions", "commands", "migrations", "cache", "auth", "search", "export", "import_",
    "billing", "email", "storage", "pagination", "filters", "settings", "urls", "middleware",
    "templates", "widgets", "validators", "fields", "managers", "queries", "reports",
    "schedule", "webhooks", "notifications", "locale", "media", "sessions", "throttling",
    "versioning",
)]  # fmt: skip
PARAMETERS = ("a/b", "[]", "with space", "naïve-café", "日本語", "x::y", "0-1", "None", "", "ü/ß")
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # 1: failed tests
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - started, used.ru_utime + used.ru_stime, used.ru_maxrss)
"""


def modules() -> list[str]:
    """The 2,000 module paths: 40 per package, the same basenames in every package."""
    per = MODULES // PACKAGES
    return [
        f"pkg{package:02d}/tests/{BASENAMES[index % len(BASENAMES)]}.py"
        for package in range(PACKAGES)
        for index in range(per)
    ]


def escape(text: str, *, attribute: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;").replace("\n", "&#10;") if attribute else text


def traceback(module: str, line: int, number: int) -> str:
    """A 20-line pytest traceback ending at ``module:line``."""
    frames = [
        f"    def helper_{k}(value):\n>       return call_{k}(value)\n"
        f"src/app/helpers.py:{10 + k}: in helper_{k}"
        for k in range(5)
    ]
    return (
        f"{module}:{line - 3}: in test\n"
        + "\n".join(frames)
        + f"\n    assert compute({number}) == {number + 1}\nE   AssertionError: assert {number}"
        f" == {number + 1}\nE    +  where {number} = compute({number})\n\n{module}:{line}: "
        "AssertionError"
    )


def write_junit(path: Path, *, cases: int, seed: int = 18) -> None:
    """A realistic pytest JUnit file of ``cases`` test cases (see the module doc)."""
    rng = random.Random(seed)
    paths = modules()
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" ')
        out.write(f'errors="0" failures="0" skipped="0" tests="{cases}" time="1.0">')
        for number in range(cases):
            module = paths[number % len(paths)]
            dotted = module.removesuffix(".py").replace("/", ".")
            in_class = rng.random() < 0.25
            classname = f"{dotted}.Test{rng.randrange(3)}" if in_class else dotted
            name = f"test_case_{number // len(paths)}"
            if rng.random() < 0.5:
                name += f"[{rng.choice(PARAMETERS)}-{number % 7}]"
            seconds = f"{rng.lognormvariate(-5, 1.2):.3f}"
            out.write(
                f'<testcase classname="{classname}" name="{escape(name, attribute=True)}" '
                f'time="{seconds}"'
            )
            roll = rng.random()
            body = ""
            if roll < 0.01:
                line = 20 + number % 300
                body = (
                    f'<failure message="AssertionError: assert {number} == {number + 1}">'
                    f"{escape(traceback(module, line, number))}</failure>"
                )
            elif roll < 0.011:
                body = (
                    '<error message="failed on setup with &quot;OperationalError: could not '
                    f'connect&quot;">{escape(traceback(module, 12, number))}</error>'
                )
            elif roll < 0.031:
                if rng.random() < 0.3:
                    body = '<skipped type="pytest.xfail" message="known bug #12" />'
                else:
                    body = (
                        '<skipped type="pytest.skip" message="needs the network">'
                        f"{module}:{number % 90 + 5}: needs the network</skipped>"
                    )
            if rng.random() < 0.03:
                body += (
                    f"<system-out>--- Captured stdout call ---\nrow {number}: ok\n</system-out>"
                    f"<system-err>--- Captured stderr call ---\nwarning: slow {number}\n"
                    "</system-err>"
                )
            out.write(f">{body}</testcase>" if body else " />")
        out.write("</testsuite></testsuites>\n")


def project(root: Path) -> None:
    """The project the file came from: its pyproject.toml and its test files."""
    (root / "pyproject.toml").write_text('[project]\nname = "big"\nversion = "0"\n', "utf-8")
    for module in modules():
        path = root / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def test_case_0():\n    pass\n", "utf-8")


def merge_once(root: Path, reports: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak MB of one ``testgate merge`` in a fresh process."""
    command = [str(BIN / "testgate"), "merge", "--project", str(root), "--reports-dir",
               str(reports), "--min-tests", "0", str(root / "foreign")]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]) / 1024


def main(sizes: list[int]) -> None:
    print("P4: testgate merge of one realistic JUnit file, fresh process, median of 3")
    print(
        f"{'cases':>9} {'MB file':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'CPU s / 100k':>13}"
    )
    at_100k: tuple[float, float, float] | None = None
    for cases in sizes:
        with tempfile.TemporaryDirectory() as temporary:
            root = Path(temporary)
            project(root)
            (root / "foreign").mkdir()
            junit = root / "foreign" / "junit.xml"
            write_junit(junit, cases=cases)
            runs = [merge_once(root, root / f"merged-{n}") for n in range(3)]
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            peak = statistics.median(run[2] for run in runs)
            size = junit.stat().st_size / 1e6
            print(
                f"{cases:>9} {size:>8.1f} {wall:>8.2f} {cpu:>8.2f} {peak:>8.0f} "
                f"{cpu / cases * 1e5:>13.2f}"
            )
            if cases == 100_000:
                at_100k = (wall, cpu, peak)
    if at_100k is not None:
        wall, cpu, peak = at_100k
        print(
            f"100k: CPU / goal 0.6 s = {cpu / 0.6:.2f} (wall {wall / 0.6:.2f}; a loaded machine's "
            f"wall time is mostly waiting), memory / goal 100 MB = {peak / 100:.2f}"
        )
        print(
            f"100k: CPU / dorny 1.2 s = {cpu / 1.2:.2f}, / action-junit-report 1.4 s = "
            f"{cpu / 1.4:.2f}, / EnricoMi 3.0 s = {cpu / 3.0:.2f}; memory / 260 MB = "
            f"{peak / 260:.2f}"
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000, 1_000_000])
