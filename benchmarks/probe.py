"""The time the kept environment probe saves per command.

``testgate run`` probes the project's environment (what it has, which plugins to add,
what pytest imports early) before pytest starts. runner.probe_cache keeps the answer per
environment, so a later command in the same environment only computes its key. This
script copies the example project (it lacks pytest-xdist and pytest-cov, so testgate adds
them in an overlay: the probe's full path), syncs it once, then alternates (ABBA) a cold
command, whose kept probe is removed first, with a warm one that reuses it:

* probe:   runner.environment.probe alone, in this process
* command: the whole ``testgate run --sync false --workers 0`` as a user runs it

Prints the median of each, the time saved and the ratio. The overlays of added plugins
stay built in both (they were kept before this change too). Run:
``.venv/bin/python benchmarks/probe.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner import environment
from runner.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TESTGATE = Path(sys.executable).parent / "testgate"


def alternate(run: Callable[..., float], rounds: int) -> tuple[float, float]:
    """Medians of ``run(keep=False)`` and ``run(keep=True)``, in ABBA order, ``rounds`` each."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for index in range(rounds):
        for keep in (False, True) if index % 2 == 0 else (True, False):
            times[keep].append(run(keep=keep))
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "inventory"
        shutil.copytree(ROOT / "examples" / "inventory", project)
        environ = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        probes = Path(tmp) / "cache" / "testgate" / "probes"
        settings = load_settings(project=project, flags={"sync": "false"}, environ=environ)
        subprocess.run([TESTGATE, "run", "--project", project, "--workers", "0"],
                       env=environ, capture_output=True, check=False)  # fmt: skip

        def probe(*, keep: bool) -> float:
            if not keep:
                shutil.rmtree(probes, ignore_errors=True)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                environment.probe(settings, environ, sources=("inventory",))
            return time.perf_counter() - started

        def command(*, keep: bool) -> float:
            if not keep:
                shutil.rmtree(probes, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(
                [TESTGATE, "run", "--project", project, "--sync", "false", "--workers", "0"],
                env=environ, capture_output=True, check=False,
            )  # fmt: skip
            return time.perf_counter() - started

        for name, run in (("probe", probe), ("command", command)):
            cold, warm = alternate(run, rounds)
            print(
                f"{name:8} cold {cold:.3f} s  warm {warm:.3f} s  saved {cold - warm:.3f} s "
                f"per command  (warm/cold {warm / cold:.2f}, medians of {rounds})"
            )


if __name__ == "__main__":
    main()
