"""Helpers shared by testgate's own tests: fixture projects and runs of the real CLI."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner import process_group
from runner.cli import main
from runner.plugin import _testgate_wire as wire

# Without bytecode caching every Python process the tests start (hundreds of pytest runs)
# compiles pytest, coverage and testgate from source again: 0.40 s against 0.15 s each.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The tests start testgate as a user's shell would, but a TESTGATE_* variable of the shell
# that runs them (an option such as TESTGATE_TIMEOUT, the action's inputs, any other name)
# would reach every run they start and change what it does: those are dropped. What the
# testgate run of this suite hands its pytest stays, and the switch of the README's act test.
_HANDED = {
    *wire.ATTEMPT_VARIABLES,
    wire.WORKER_ENV,
    wire.DJANGO_ENV,
    wire.NO_DYNAMIC_CONTEXT_ENV,
    process_group.MARKER_ENV,
    "TESTGATE_README_ACT",
}
for _name in [name for name in os.environ if name.startswith("TESTGATE_")]:
    if _name not in _HANDED:
        del os.environ[_name]

ROOT = Path(__file__).parent.parent  # the repository's root
FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = ROOT / "runner" / "schema" / "results.schema.json"


@functools.cache
def results_schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text("utf-8")))


@dataclass(frozen=True)
class Ran:
    """One finished testgate command: its exit code, what it printed, its reports."""

    exit_code: int
    output: str
    project: Path
    reports: Path

    def results(self) -> dict[str, Any]:
        """results.json, checked against the published schema every time a test reads it."""
        data: dict[str, Any] = json.loads((self.reports / "results.json").read_text("utf-8"))
        results_schema().validate(data)
        return data

    def test(self, test_id: str) -> dict[str, Any]:
        tests: list[dict[str, Any]] = self.results()["tests"]
        matches = [test for test in tests if test["id"] == test_id]
        assert len(matches) == 1, f"{test_id} appears {len(matches)} times"
        return matches[0]

    def gate(self, name: str) -> dict[str, Any]:
        gates: list[dict[str, Any]] = self.results()["gates"]
        (gate,) = [gate for gate in gates if gate["name"] == name]
        return gate


def fresh_plugin(monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """A fresh copy of the plugin, loaded by file as the project's pytest loads it."""
    from runner import execute  # noqa: PLC0415  (conftest stays light to import)

    monkeypatch.syspath_prepend(str(execute.PLUGIN_DIR))  # as PYTHONPATH does in a real run
    path = execute.PLUGIN_DIR / f"{execute.PLUGIN_NAME}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NPM = Path(__file__).parent / "npm"


@pytest.fixture(scope="session")
def npm_tools() -> Path:
    """tests/npm with its node modules installed from the lock (once, whichever worker asks)."""
    with (NPM / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = NPM / "node_modules" / ".package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < (
            (NPM / "package-lock.json").stat().st_mtime
        ):  # none yet, or from an older lock
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NPM, check=True
            )
    return NPM


def copy_fixture(name: str, destination: Path) -> Path:
    """A private copy of a fixture project, so runs never share reports or venvs."""
    target = destination / name
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns(".venv", "*-reports"))
    return target


def marker_line(path: Path, marker: str) -> int:
    """The 1-based line of ``# marker: NAME`` in a fixture file."""
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if f"# marker: {marker}" in line:
            return number
    raise AssertionError(f"no marker {marker} in {path}")


def summary_counts(output: str, *, attempt: int = 1) -> dict[str, int]:
    """The counts of pytest's ``== 1 failed, 2 passed in 0.1s ==`` line of one attempt."""
    lines = [line for line in output.splitlines() if re.match(r"^=+ .* in [\d.]+s", line)]
    assert len(lines) >= attempt, "no pytest summary line for that attempt in the output"
    found = re.findall(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)", lines[attempt - 1])
    return {("errors" if word.startswith("error") else word): int(n) for n, word in found}


@pytest.fixture(autouse=True, scope="session")
def _child_pytest_without_our_tools() -> Iterator[None]:
    """The pytest runs the tests start load every plugin installed here; two are this suite's
    own tools, never the fixture projects' (pytest-httpserver imports werkzeug): 0.06 s a
    run, over hundreds of runs. Set where tests run (an xdist worker, or the only process),
    after this process loaded its own plugins, never in xdist's controller."""
    extra = "-p no:pytest_httpserver -p no:pytest-split"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS", f"{os.environ.get('PYTEST_ADDOPTS', '')} {extra}".strip())
        yield


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie no one reaped yet has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text("utf-8").rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(autouse=True, scope="session")
def _uv_without_a_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """testgate finds uv on PATH; for this suite that is the uv its lock pins (a dev
    dependency, beside this Python), first on PATH in a folder of its own. A version
    manager's shim on PATH (pyenv's is a shell script) costs 55 ms of CPU a call, three calls
    a run, over hundreds of runs. The same folder names this Python's own interpreter as
    ``python3``: uv finds a Python for each environment it makes on PATH, and asks a shim it
    finds there to describe its interpreter (20 shell processes) every time."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():  # an environment installed without the dev group
        yield
        return
    folder = tmp_path_factory.mktemp("uv-on-path")
    (folder / "uv").symlink_to(uv)
    interpreter = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    for name in ("python3", "python", interpreter.name):
        (folder / name).symlink_to(interpreter)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
        yield


# The options that change what testgate installs into a project's environment.
SYNC_OPTIONS = frozenset(
    ("--python-version", "--sync", "--python", "--groups", "--extras", "--all-groups",
     "--requirements", "--package")
)  # fmt: skip
_SHARED_ENVIRONMENTS: list[Path] = []


@pytest.fixture(autouse=True, scope="session")
def _shared_environments(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where projects of this session keep the environments they share (every xdist worker's)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    _SHARED_ENVIRONMENTS[:] = [shared / "environments"]
    _SHARED_ENVIRONMENTS[0].mkdir(exist_ok=True)


@contextlib.contextmanager
def shared_environment(
    project: Path, args: Sequence[str], environ: Mapping[str, str]
) -> Iterator[dict[str, str]]:
    """Around a run: a project with no package of its own to install gets a ``.venv`` link to
    the session's environment for what it installs (its ``[project]``, dependency groups,
    ``[tool.uv]``, uv.lock and install options, never how it tests: pytest's, coverage's
    or the gates' settings), so its run neither builds an environment nor compiles pytest's
    bytecode again: 0.4 s of CPU a run. testgate still syncs it, as a user's run would.

    The first run of each environment makes it, holding its lock; later runs only link it.
    In a git repository the link is ignored (``.git/info/exclude``) as the ``.venv/`` folder
    would be. Packages keep their own (an editable install points at one copy of the
    project), as do projects in a linked git worktree.

    Yields the variables the run adds to its environment: once an environment was synced
    this session, ``UV_OFFLINE=1``, so uv resolves the project from what it fetched then. A
    project without uv.lock is resolved again on every sync, and the registry here answers
    every revalidation with a changed page: about 0.5 s of waiting for each run.
    """
    pyproject = project / "pyproject.toml"
    if not _SHARED_ENVIRONMENTS or not pyproject.is_file() or os.path.lexists(project / ".venv"):
        yield {}
        return
    try:
        config = tomllib.loads(pyproject.read_text("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        config = {}
    tool = config.get("tool", {})
    uv_table = tool.get("uv", {})
    package = uv_table.get("package", "build-system" in config)
    repository = next(
        (f / ".git" for f in (project, *project.parents) if (f / ".git").exists()), None
    )
    in_worktree = repository is not None and not repository.is_dir()
    if "project" not in config or package is not False or "workspace" in uv_table or in_worktree:
        yield {}
        return
    lock = project / "uv.lock"
    options = [pair for pair in itertools.pairwise([*args, ""]) if pair[0] in SYNC_OPTIONS]
    testgate = {k: v for k, v in tool.get("testgate", {}).items() if f"--{k}" in SYNC_OPTIONS}
    python = [arg for arg, _ in options if arg.startswith("--python")] + [
        key for key in testgate if key.startswith("python")
    ]
    uv = shutil.which("uv", path=environ.get("PATH"))
    if uv is None or python or (project / ".python-version").exists():
        yield {}  # no uv, or another Python: testgate makes (or refuses) another environment
        return
    named = {f"TESTGATE_{option[2:].upper()}".replace("-", "_") for option in SYNC_OPTIONS}
    named.add("TESTGATE_INPUTS")  # the action's inputs, as JSON
    variables = sorted(item for item in environ.items() if item[0] in named or "UV_" in item[0])
    installs = {  # what the environment holds follows from these alone, not pytest's settings
        "tables": {name: config.get(name) for name in ("project", "dependency-groups")},
        "uv": uv_table,
        "testgate": testgate,
        "lock": lock.read_text("utf-8") if lock.is_file() else None,
    }
    key = hashlib.sha256(
        json.dumps([installs, options, variables], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    target = _SHARED_ENVIRONMENTS[0] / key
    if repository is not None:  # git ignores a '.venv/' folder, but not a link: this one too
        exclude = repository / "info" / "exclude"
        exclude.parent.mkdir(exist_ok=True)
        with exclude.open("a", encoding="utf-8") as patterns:
            patterns.write("\n.venv\n")
    (project / ".venv").symlink_to(target, target_is_directory=True)
    with (_SHARED_ENVIRONMENTS[0] / f"{key}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        synced = _SHARED_ENVIRONMENTS[0] / f"{key}.synced"
        if (target / "pyvenv.cfg").is_file():
            fcntl.flock(held, fcntl.LOCK_UN)  # made: runs on it only read it
        else:  # uv makes no environment behind a link: it gets one to sync
            subprocess.run([uv, "venv", "-q", str(target)], cwd=project, check=True)
        yield {"UV_OFFLINE": "1"} if synced.exists() else {}
        if not synced.exists() and any(target.glob("lib/*/site-packages/*.dist-info")):
            synced.touch()  # a sync installed into it: every package it needs is cached


def environment(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, as a user's shell would have it."""
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.fixture
def run_cli(capfd: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run ``testgate`` in this process (so coverage sees it), capturing all output."""

    def run(
        project: Path, *args: str, env: dict[str, str] | None = None, command: str = "run"
    ) -> Ran:
        environ = env or environment()
        with shared_environment(project, args, environ) as added:
            code = main([command, "--project", str(project), *args], environ={**environ, **added})
        captured = capfd.readouterr()
        return Ran(code, captured.out + captured.err, project, project / "testgate-reports")

    return run


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, and its children's, to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("w", encoding="utf-8") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_in_process(
    project: Path,
    *args: str,
    extra_env: dict[str, str] | None = None,
    command: str = "run",
    reports: str = "testgate-reports",
) -> Ran:
    """Run a ``testgate`` command in this process outside any pytest capture fixture."""
    log = project.parent / f"{project.name}-{command}-output.txt"
    environ = environment(**(extra_env or {}))
    with shared_environment(project, args, environ) as added, captured_output(log):
        code = main(
            [command, "--project", str(project), "--reports-dir", reports, *args],
            environ={**environ, **added},
        )
    return Ran(code, log.read_text("utf-8"), project, project / reports)


def once_per_session(
    factory: pytest.TempPathFactory, name: str, produce: Callable[[Path], Ran]
) -> Ran:
    """Produce a run once for the whole session, even when xdist workers all ask for it.

    The first worker to take the lock runs ``produce`` in a directory every worker of
    this session shares; the others wait and read what it recorded.
    """
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = shared / f"shared-{name}"
    with (shared / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = target / "ran.json"
        if record.exists():
            data = json.loads(record.read_text("utf-8"))
            return Ran(
                data["exit_code"], data["output"], Path(data["project"]), Path(data["reports"])
            )
        target.mkdir()
        ran = produce(target)
        record.write_text(
            json.dumps({"exit_code": ran.exit_code, "output": ran.output,
                        "project": str(ran.project), "reports": str(ran.reports)}),
            "utf-8",
        )  # fmt: skip
        return ran


def run_subprocess(project: Path, *args: str) -> Ran:
    """Run the installed ``testgate`` console script as a user would."""
    script = Path(sys.executable).parent / "testgate"
    with shared_environment(project, args, os.environ) as added:
        completed = subprocess.run(
            [str(script), "run", "--project", str(project), *args],
            env={**os.environ, **added},
            capture_output=True,
            text=True,
            check=False,
        )
    return Ran(
        completed.returncode,
        completed.stdout + completed.stderr,
        project,
        project / "testgate-reports",
    )


def flaky_run(root: Path, *args: str, quarantine: str | None = None) -> Ran:
    """testgate run on the flaky fixture, attempt 1 under PYTHONHASHSEED=0 as its tests expect."""
    project = copy_fixture("flaky", root)
    if quarantine is not None:
        (project / "quarantine.txt").write_text(quarantine, "utf-8")
        args = (*args, "--quarantine", "quarantine.txt")
    return run_in_process(project, *args, extra_env={"PYTHONHASHSEED": "0"})


@pytest.fixture(scope="session")
def outcomes_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The outcomes fixture run once for the session, under two xdist workers."""
    return once_per_session(
        tmp_path_factory,
        "outcomes",
        lambda root: run_in_process(copy_fixture("outcomes", root), "--workers", "2"),
    )


@pytest.fixture(scope="session")
def flaky_fixture_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The flaky fixture run once for the session."""
    return once_per_session(tmp_path_factory, "flaky", flaky_run)


NESTED_CONFTEST = '''
import pytest
from pathlib import Path


class Check(pytest.Item):
    """An item a plugin names below another, as pytest-ruff names ``ruff::format``."""

    def runtest(self):
        runs = Path(__file__).parent / "runs.txt"
        with runs.open("a") as out:
            out.write(self.name + "\\n")
        assert self.name != "ruff", "lint failed"


class Checked(pytest.File):
    def collect(self):
        yield Check.from_parent(self, name="ruff")
        yield Check.from_parent(self, name="ruff::format")


def pytest_collect_file(file_path, parent):
    if file_path.name == "module.py":
        return Checked.from_parent(parent, path=file_path)
'''


@pytest.fixture(scope="session")
def hangs_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The hangs fixture run once for the session: two xdist workers, ``dist = loadfile``
    (each file on a worker of its own), then its reruns (1) alone. Beside its tests is an
    independent scenario of test_flaky_run's: a ``conftest.py`` whose collector names
    ``module.py::ruff::format`` below ``module.py::ruff``, which fails every time; each
    test asserts on its own test ids only. pytest's arguments name what it runs, as a
    user's ``testgate run -- module.py tests`` does."""

    def produce(root: Path) -> Ran:
        project = copy_fixture("hangs", root)
        (project / "conftest.py").write_text(NESTED_CONFTEST, "utf-8")
        (project / "module.py").write_text("VALUE = 1\n", "utf-8")
        return run_in_process(project, "--", "module.py", "tests")

    return once_per_session(tmp_path_factory, "hangs", produce)
