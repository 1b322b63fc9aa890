"""The project's own environment: every shape installed, nothing of the project shadowed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from runner import environment, probe_cache
from runner.coverage_data import infer_sources, workspace_members
from runner.crash import crash_problem
from runner.environment import (
    NO_DYNAMIC_CONTEXT_ENV,
    PLUGINS,
    Plugin,
    ProjectEnv,
    check_overlay,
    detect_shape,
    planned_installs,
    project_packages,
    pytest_command,
    read_pyproject,
    sync_arguments,
)
from runner.errors import ConfigError, InfraError
from runner.gates import max_skipped
from runner.pytest_config import find_config
from runner.record import collection_notes, read_record
from runner.results import Attempt, TestResult
from runner.settings import Settings, load_settings
from runner.thresholds import stated_threshold, with_stated_threshold
from tests.conftest import ROOT, Ran, copy_fixture, fresh_plugin, once_per_session, run_in_process
from tests.conftest import environment as shell

PYPROJECT = """\
[project]
name = "shop"
version = "1.0"
optional-dependencies = {postgres = ["psycopg"], fast = ["orjson"]}

[dependency-groups]
dev = ["ruff"]
test = ["pytest"]
docs = ["sphinx"]
"""


def settings_of(project: Path, **flags: str) -> Settings:
    return load_settings(
        project=project, flags={name.replace("_", "-"): v for name, v in flags.items()}, environ={}
    )


def session_cache(root: Path) -> dict[str, str]:
    """testgate's cache for this session's runs (beside every ``once_per_session`` root):
    the overlays of added plugins are built once and reused, and go with the session."""
    return {"XDG_CACHE_HOME": str(root.parent / "testgate-cache")}


def write(project: Path, text: str, name: str = "pyproject.toml") -> Path:
    project.mkdir(parents=True, exist_ok=True)
    (project / name).write_text(text, "utf-8")
    return project


@pytest.fixture(scope="module")
def early_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A library pytest imports before any plugin, at a .dev version, with only pytest; its
    user's uv.lock made before the run (uv sync --locked uses it as it is, and it stays).
    That testgate leaves no lock where the user had none: the workspace run asserts it."""

    def produce(root: Path) -> Ran:
        project = copy_fixture("early", root)
        subprocess.run(["uv", "lock", "-q", "--project", str(project)], check=True)
        return run_in_process(project, extra_env=session_cache(root))

    return once_per_session(tmp_path_factory, "early", produce)


def test_a_library_pytest_depends_on_is_measured_from_its_own_src(early_run: Ran) -> None:
    assert early_run.exit_code == 0, early_run.output
    # only what the environment lacked was added; the project's iniconfig was never replaced
    assert "testgate: added coverage==" in early_run.output
    assert "iniconfig==" not in early_run.output.split("testgate: added", 1)[1].splitlines()[0]
    assert "measured with 'coverage run' from the process start" in early_run.output
    report = json.loads((early_run.reports / "coverage.json").read_text("utf-8"))
    assert list(report["files"]) == ["src/iniconfig/__init__.py"]
    # its module-level lines ran before pytest-cov could start: 100 % only from process start
    assert report["totals"]["percent_covered"] == 100.0
    # the user's lock was used as it is, and stays
    assert "(build backend: hatchling.build): uv sync --locked --all-extras" in early_run.output
    assert (early_run.project / "uv.lock").is_file()


def test_a_project_whose_package_comes_from_elsewhere_is_refused(tmp_path: Path) -> None:
    # the environment has a msgspec of its own, so the project's src/msgspec is not tested
    project = write(tmp_path / "msgspec", '[project]\nname = "msgspec"\nversion = "0.dev0"\n')
    write(project / "src" / "msgspec", "", "__init__.py")
    ran = run_in_process(project, "--python", sys.executable)
    assert ran.exit_code == 2
    assert "the project's package 'msgspec' is imported from" in ran.output
    assert "package = false" in ran.output


README = ROOT / "README.md"


def readme_commands(bullet: str) -> list[list[str]]:
    """The ``testgate run …`` commands of the README's bullet that starts with ``bullet``."""
    text = README.read_text("utf-8")
    start = text.index(f"- **{bullet}")
    end = text.find("\n- ", start + 1)
    return [shlex.split(found) for found in re.findall(r"`(testgate run[^`]*)`", text[start:end])]


@pytest.fixture(scope="module")
def fastapi_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A FastAPI app with only a requirements.txt whose tests write PostgreSQL, run from a
    fresh copy by the README's command for that shape, under two xdist workers. Its
    PostgreSQL is started from the machine's binaries whether or not a Docker engine answers
    (tests/integration/test_docker_engine.py runs the container backend). It is also the
    suite's one run of a requirements-only app (a venv testgate makes, the max-skipped gate
    at 0); an app with only pytest in its requirements.txt proved nothing more."""
    (command,) = [
        words for words in readme_commands("Only `requirements*.txt`") if "--service" in words
    ]
    assert command[:2] == ["testgate", "run"]

    def produce(root: Path) -> Ran:
        project = copy_fixture("fastapi_app", root)
        arguments = [*command[2:], "--workers", "2", "--services-backend", "local",
                     "--max-skipped", "0"]  # fmt: skip
        return run_in_process(project, *arguments, extra_env=session_cache(root))

    return once_per_session(tmp_path_factory, "fastapi", produce)


SETUP_CFG = """\
[metadata]
name = legacy-shop
version = 1.0

[options]
package_dir =
    =src
packages = find:

[options.packages.find]
where = src

[options.extras_require]
fast = msgspec
"""


def test_a_setuptools_project_without_a_project_table_is_installed_and_tested(
    tmp_path: Path,
) -> None:
    """The shape of python-dateutil and freezegun: the metadata in setup.cfg (or setup.py),
    pyproject.toml only a [build-system], the test tools in requirements-dev.txt. The tests
    import the installed project (src layout), with its extras, as tox's run does; testgate
    once installed only the requirements, so the src package was not importable (and
    dateutil's was a registry copy its own requirements pulled in: exit 2)."""
    project = write(tmp_path / "legacy", '[build-system]\nrequires = ["setuptools"]\n'
                    'build-backend = "setuptools.build_meta"\n')  # fmt: skip
    write(project, SETUP_CFG, "setup.cfg")
    write(project, "pytest\n", "requirements-dev.txt")
    # a test tool named only in tox.ini's deps, as pytest-timeout's pexpect is
    write(project, "[testenv]\ndeps =\n    six\n    py27: mock\ncommands = pytest\n", "tox.ini")
    write(project / "src" / "shop", "def price(n):\n    return n * 2 if n else 0\n", "__init__.py")
    write(project / "tests", "import msgspec\nimport shop\nimport six\n\n\ndef test_price():\n"
          "    assert shop.price(2) == 4\n    assert shop.price(0) == 0\n"
          "    assert msgspec and six\n", "test_shop.py")  # fmt: skip
    ran = run_in_process(project, "--workers", "0", extra_env=session_cache(tmp_path))
    assert ran.exit_code == 0, ran.output
    assert (
        "testgate: a setuptools project (setup.cfg, no [project] table): installed it with "
        "every extra, and requirements-dev.txt, tox.ini's deps, with uv into"
    ) in ran.output
    assert "testgate: 1 test: 1 passed in" in ran.output
    report = json.loads((ran.reports / "coverage.json").read_text("utf-8"))
    assert sorted(report["files"]) == ["src/shop/__init__.py"]
    assert ran.results()["coverage"]["line_percent"] == 100.0


def test_tox_ini_deps_for_every_environment_are_what_tox_would_install(tmp_path: Path) -> None:
    """``[testenv] deps``: a requirement, a requirements file, comments; not a factor's line,
    a substitution, the project itself or a constraint. A tox.ini alone makes a project
    whose tests need those; ``--requirements`` names exactly what to install."""
    project = write(tmp_path / "app", "", "README")
    assert environment.tox_deps(project) == ()
    write(project, "[testenv]\ndeps =\n    pexpect>=4  # spawns\n    # a comment\n"
          "    -rrequirements/test.txt\n    -r extra.txt\n    py38: mock\n"
          "    {[base]deps}\n    -e .\n    .\n    -c constraints.txt\n", "tox.ini")  # fmt: skip
    files = [str(project / "requirements/test.txt"), str(project / "extra.txt")]
    assert environment.tox_deps(project) == ("pexpect>=4", "-r", files[0], "-r", files[1])
    shape = detect_shape(settings_of(project), {})
    assert (shape.kind, shape.tox_deps) == ("requirements", environment.tox_deps(project))
    write(project, "", "only.txt")
    assert detect_shape(settings_of(project, requirements="only.txt"), {}).tox_deps == ()
    write(project, "[testenv\ndeps = x\n", "tox.ini")
    assert environment.tox_deps(project) == ()


def test_a_requirements_only_fastapi_app_tests_against_postgres(fastapi_run: Ran) -> None:
    assert fastapi_run.exit_code == 0, fastapi_run.output
    assert "testgate: no [project] table: installed requirements.txt with uv into" in (
        fastapi_run.output
    )
    results = fastapi_run.results()
    assert results["totals"]["passed"] == results["totals"]["tests"] == 6
    assert "testgate: 6 tests: 6 passed in" in fastapi_run.output
    assert [gate for gate in results["gates"] if gate["name"] == "max-skipped"] == [
        {"name": "max-skipped", "threshold": 0, "actual": 0, "passed": True,
         "message": "0 of 6 tests skipped (0); at most 0 allowed", "verdict": "pass"},
    ]  # fmt: skip
    # the tests ran on both workers, each in a database of its own (the test asserts it)
    assert {test["attempts"][0]["worker"] for test in results["tests"]} == {"gw0", "gw1"}
    report = json.loads((fastapi_run.reports / "coverage.json").read_text("utf-8"))
    assert sorted(report["files"]) == ["app/__init__.py", "app/db.py", "app/main.py"]
    assert (results["coverage"]["line_percent"], results["coverage"]["branch_percent"]) == (
        100.0, 100.0,
    )  # fmt: skip
    assert "testgate: stopped 1 service and removed what they left" in fastapi_run.output
    left = sorted(p.name for p in fastapi_run.project.iterdir() if p.name != ".pytest_cache")
    assert left == ["app", "requirements.txt", "testgate-reports", "tests"]


def test_a_requirements_env_is_reused_without_sync(fastapi_run: Ran) -> None:
    cache = session_cache(fastapi_run.project.parent)
    settings = settings_of(fastapi_run.project, sync="false", workers="2")
    found = environment.probe(settings, shell(**cache), sources=("app",))
    assert Path(found.executable).is_file()
    assert found.overlay is not None
    assert (found.overlay / "pytest_cov").is_dir()  # the overlay of the run, reused


def test_a_requirements_file_that_cannot_install_says_so(tmp_path: Path) -> None:
    project = write(tmp_path / "app", "-e /nowhere/at/all\n", "requirements.txt")
    settings = settings_of(project, requirements="requirements.txt")
    with pytest.raises(InfraError, match=r"uv pip install -r failed \(exit 1\)"):
        environment.prepare(settings, shell(XDG_CACHE_HOME=str(tmp_path / "cache")))


def test_a_poetry_project_gets_the_way_to_provide_its_environment(tmp_path: Path) -> None:
    project = copy_fixture("poetry", tmp_path)
    ran = run_in_process(project)
    assert ran.exit_code == 3
    assert "is a Poetry project" in ran.output
    assert '--python "$(poetry env info --executable)"' in ran.output
    assert sorted(path.name for path in project.iterdir()) == [
        "conftest.py",
        "pyproject.toml",
        "tests",
    ]  # fmt: skip  (nothing ran: no reports dir either)


def test_an_existing_environment_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_fixture("passing", tmp_path)
    settings = settings_of(project, python=sys.executable)
    cache = shell(XDG_CACHE_HOME=str(tmp_path / "cache"))
    found = environment.probe(settings, cache, sources=("calc",))
    assert found.executable == sys.executable
    assert found.overlay is None  # this environment has every plugin already
    assert environment.probe(settings, cache, sources=("calc",)) == found  # kept, reused
    environment.probe(settings, cache)  # as testgate flaky asks: without the sources
    kept = sorted((tmp_path / "cache" / "testgate" / "probes").iterdir())
    assert len(kept) == 2  # each command's answer has its own file: neither replaces the other
    assert environment.probe(settings, cache, sources=("calc",)) == found
    assert sorted((tmp_path / "cache" / "testgate" / "probes").iterdir()) == kept
    assert found.found["xdist"]
    assert not (project / ".venv").exists()
    relative = settings_of(project, python=os.path.relpath(sys.executable, project))
    assert environment.prepare(relative, shell())[0] == str(Path(sys.executable).absolute())
    # A path from the current directory (the README's --python .venv/bin/python, typed in
    # the project's root) is probed and run as that file, from wherever they start.
    monkeypatch.chdir(Path(sys.executable).parent.parent)
    from_cwd = settings_of(project, python=os.path.join("bin", Path(sys.executable).name))
    assert environment.probe(from_cwd, cache).executable == sys.executable
    with pytest.raises(ConfigError, match="--python: nowhere/python is not a file"):
        environment.prepare(settings_of(project, python="nowhere/python"), shell())


def test_a_python_that_does_not_answer_the_probe_is_named(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    with pytest.raises(InfraError, match="/bin/true did not answer testgate's probe"):
        environment.probe(settings_of(project, python="/bin/true"), shell())
    (project / "python").write_text("not a program\n", "utf-8")
    with pytest.raises(InfraError, match=r"passing/python could not be started \(\[Errno 13\]"):
        environment.probe(settings_of(project, python="python"), shell())


def test_a_uv_project_reuses_its_environment(early_run: Ran) -> None:
    # its lock used as it is: test_a_library_pytest_depends_on_is_measured_from_its_own_src
    synced = settings_of(early_run.project, sync="false")
    assert environment.prepare(synced, shell()) == (
        str(early_run.project / ".venv" / "bin" / "python"),
        (),
    )


def test_a_failed_sync_is_reported(tmp_path: Path) -> None:
    missing = 'version = "1.0"\ndependencies = ["nowhere @ file:///nowhere/at/all"]'
    project = write(tmp_path / "shop", PYPROJECT.replace('version = "1.0"', missing))
    with pytest.raises(InfraError, match=r"uv sync failed"):
        environment.prepare(settings_of(project), shell())
    assert not (project / "uv.lock").exists()


def test_no_plugin_older_than_testgate_supports_is_added(tmp_path: Path) -> None:
    """pluggy's own clone without tags is pluggy 0.1.dev1 (setuptools-scm), which the
    installed pytest's pin (pluggy>=1.5) refuses: no recent pytest-xdist can be added, and
    uv found pytest-xdist 1.4 and pytest-cov 1.5 of 2013, which name no pytest. Before: they
    were added, and pytest crashed as it started ('PytestPluginManager' object has no
    attribute 'addhooks'), exit 3 "Does 'uv run pytest' work?" (it does). Now uv's reason."""
    project = copy_fixture("passing", tmp_path)
    cache = shell(XDG_CACHE_HOME=str(tmp_path / "cache"))
    xdist = next(plugin for plugin in environment.PLUGINS if plugin.module == "xdist")
    pinned = [("pytest", importlib.metadata.version("pytest")), ("pluggy", "0.1.dev1")]
    with pytest.raises(ConfigError, match=r"^pytest-xdist>=3\.2 cannot be resolved"):
        environment.provide([xdist], python=sys.executable, installed=pinned,
                            settings=settings_of(project), environ=cache)  # fmt: skip


def test_plugins_that_would_replace_a_package_are_refused(tmp_path: Path) -> None:
    project = copy_fixture("passing", tmp_path)
    settings = settings_of(project)
    cache = shell(XDG_CACHE_HOME=str(tmp_path / "cache"))
    older = Plugin("pytest<9", "pytest", lambda settings: True)
    with pytest.raises(ConfigError, match=r"pytest<9 would replace pytest==") as raised:
        environment.provide([older], python=sys.executable, installed=[], settings=settings,
                            environ=cache)  # fmt: skip
    assert "add them to the project's test dependencies" in raised.value.message
    pinned = [("pytest-cov", "7.1.0")]  # no version satisfies both
    older = Plugin("pytest-cov<7", "pytest_cov", lambda settings: True)
    with pytest.raises(ConfigError, match="cannot be resolved"):
        environment.provide([older], python=sys.executable, installed=pinned,
                            settings=settings, environ=cache)  # fmt: skip


def test_an_overlay_that_holds_a_project_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "execnet").mkdir()
    check_overlay(tmp_path, packages=("shop",), wanted=PLUGINS)
    with pytest.raises(ConfigError, match=r"'execnet' would be shadowed .* pytest-xdist"):
        check_overlay(tmp_path, packages=("execnet",), wanted=PLUGINS[1:2])


def test_test_dependencies_are_installed_by_default(tmp_path: Path) -> None:
    project = write(tmp_path / "shop", PYPROJECT)
    pyproject = read_pyproject(project)
    assert sync_arguments(settings_of(project), pyproject) == [
        "--all-extras", "--group", "dev", "--group", "test",
    ]  # fmt: skip
    chosen = settings_of(project, groups="docs, test", extras="postgres")
    assert sync_arguments(chosen, pyproject) == [
        "--extra", "postgres", "--group", "docs", "--group", "test",
    ]  # fmt: skip
    assert sync_arguments(settings_of(project, all_groups="true"), {}) == ["--all-groups"]
    # one the project does not define is a config error (exit 2), before uv fails a sync
    with pytest.raises(ConfigError) as caught:
        sync_arguments(settings_of(project, groups="dev, tset"), pyproject)
    assert caught.value.message == (
        "groups: the project defines no dependency group 'tset' (pyproject.toml's "
        "[dependency-groups] has dev, docs, test): name one it has, or add it there."
    )
    with pytest.raises(ConfigError, match=r"no extra 'pg' \(pyproject.toml has no \[project"):
        sync_arguments(settings_of(project, extras="pg"), {})
    member = settings_of(project, package="api")
    assert sync_arguments(member, {}) == ["--package", "api"]
    workspace = {"tool": {"uv": {"workspace": {"members": ["packages/*"]}}}}
    assert sync_arguments(settings_of(project), workspace) == ["--all-packages"]
    # a member's extras count too (a workspace whose root has none: genai-prices' cli extra)
    root = write(tmp_path / "ws", '[tool.uv.workspace]\nmembers = ["packages/*"]\n')
    write(root / "packages" / "plain", '[project]\nname = "plain"\n')
    write(
        root / "packages" / "cli",
        '[project]\nname = "cli"\noptional-dependencies = {cli = ["rich"]}\n',
    )
    assert sync_arguments(settings_of(root), read_pyproject(root)) == [
        "--all-extras", "--all-packages",
    ]  # fmt: skip
    plain = settings_of(root, package="plain")
    assert sync_arguments(plain, read_pyproject(root)) == ["--package", "plain"]
    # and a member's test groups: its tests' dependencies (before: only the root's groups,
    # the member's tests failed to import hypothesis, exit 3)
    write(
        root / "packages" / "core",
        '[project]\nname = "core"\n[dependency-groups]\ntest = ["hypothesis"]\ndocs = []\n',
    )
    assert sync_arguments(settings_of(root), read_pyproject(root)) == [
        "--all-extras", "--group", "test", "--all-packages",
    ]  # fmt: skip
    assert sync_arguments(plain, read_pyproject(root)) == ["--package", "plain"]


def test_every_shape_is_told_apart(tmp_path: Path) -> None:
    project = write(
        tmp_path / "shop", PYPROJECT + "[build-system]\nbuild-backend = 'flit_core.buildapi'\n"
    )
    shape = detect_shape(settings_of(project), read_pyproject(project))
    assert (shape.kind, shape.description) == (
        "uv",
        "a PEP 621 project (build backend: flit_core.buildapi)",
    )
    assert (
        detect_shape(settings_of(project), {"tool": {"uv": {"workspace": {}}}}).kind == "workspace"
    )
    assert detect_shape(settings_of(project, python="/x/python"), {}).kind == "existing"
    app = write(tmp_path / "app", "pytest\n", "requirements-dev.txt")
    write(app / "requirements", "fastapi\n", "base.txt")
    found = detect_shape(settings_of(app), {"tool": {"black": {}}})
    assert [path.relative_to(app).as_posix() for path in found.requirements] == [
        "requirements-dev.txt", "requirements/base.txt",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"--requirements: .*nope.txt does not exist"):
        detect_shape(settings_of(app, requirements="nope.txt"), {})
    # setuptools metadata outside pyproject.toml: setup.py, or a setup.cfg naming the project
    legacy = write(tmp_path / "legacy", "[metadata]\nname = shop\n", "setup.cfg")
    found = detect_shape(settings_of(legacy), {"build-system": {}})
    assert (found.kind, found.description, found.requirements, found.metadata) == (
        "setuptools", "a setuptools project (setup.cfg, no [project] table)", (),
        legacy / "setup.cfg",
    )  # fmt: skip
    assert environment._own_install(settings_of(legacy, extras="fast,pg"), found) == [
        "-e", str(legacy), "-r", str(legacy / "setup.cfg"), "--extra", "fast", "--extra", "pg",
    ]  # fmt: skip
    assert environment._own_install(settings_of(app), detect_shape(settings_of(app), {})) == []
    # its distribution is the project's own: left out of the environment's fingerprint (a
    # version from git changes every commit), looked for among pytest's early imports
    assert environment.project_distributions(settings_of(legacy)) == ["shop"]
    write(legacy, "from setuptools import setup\nsetup()\n", "setup.py")
    assert detect_shape(settings_of(legacy), {}).metadata == legacy / "setup.py"
    for name, text in (("tools", "[flake8]\nmax-line-length = 88\n"), ("broken", "[metadata\n"),
                       ("binary", "\udcff")):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "setup.cfg").write_bytes(text.encode("utf-8", "surrogateescape"))
        assert environment.setuptools_metadata(tmp_path / name) is None
    empty = settings_of(write(tmp_path / "bare", "[tool.black]\n"))
    active = detect_shape(empty, {}, active=str(Path(sys.executable).parent.parent))
    assert (active.kind, active.python) == ("existing", str(Path(sys.executable).parent / "python"))
    with pytest.raises(ConfigError, match=r"or --python PATH .* \(or activate it\)"):
        detect_shape(empty, {}, active=str(tmp_path / "not-a-venv"))
    with pytest.raises(ConfigError, match=r"pyproject.toml has no \[project\] table and no"):
        detect_shape(settings_of(write(tmp_path / "empty", "[tool.black]\n")), {"tool": {}})
    write(tmp_path / "bad", "[project\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_pyproject(tmp_path / "bad")


def test_the_project_packages_are_its_source_folders(tmp_path: Path) -> None:
    project = tmp_path / "p"
    for folder in ("src/shop", "src/ns/pkg", "src/_private", "src/.hidden", "flat", "notpkg"):
        (project / folder).mkdir(parents=True)
    (project / "src" / "single.py").write_text("", "utf-8")
    (project / "flat" / "__init__.py").write_text("", "utf-8")
    settings = settings_of(write(project, PYPROJECT))
    (project / "tool.py").write_text("", "utf-8")
    assert project_packages(settings, ("src", "flat", "notpkg", "gone/src", "tool", ".")) == (
        "flat", "notpkg", "ns", "shop", "single", "tool",
    )  # fmt: skip


def test_the_pytest_command_runs_the_environments_python(tmp_path: Path) -> None:
    settings = settings_of(write(tmp_path / "p", PYPROJECT), workers="2")
    env = ProjectEnv(python="3.11", platform="linux", executable="/env/bin/python")
    cov = ("--cov=src", "--cov-branch")
    assert pytest_command(settings=settings, env=env, cov_args=cov, extra_args=("-x",)) == [
        "/env/bin/python", "-m", "pytest", "-p", "_testgate_plugin", "-n", "2", "--dist",
        "worksteal", "-W", "default::coverage.exceptions.CoverageWarning", *cov, "-x",
    ]  # fmt: skip
    assert "-W" not in pytest_command(settings=settings, env=env, cov_args=())
    early = ProjectEnv(python="3.11", platform="linux", executable="/e/python", early=("pluggy",))
    assert pytest_command(settings=settings, env=early, cov_args=cov)[:8] == [
        "/e/python", "-m", "coverage", "run", "--parallel-mode", "--branch", "--source=src", "-m",
    ]  # fmt: skip
    assert "--source" not in " ".join(
        pytest_command(settings=settings, env=early, cov_args=("--cov",))
    )
    assert pytest_command(settings=settings, env=early, cov_args=(), workers="0")[2] == "pytest"


def test_pytest_finds_the_environments_scripts_and_the_overlay(tmp_path: Path) -> None:
    env = ProjectEnv(
        python="3.11", platform="linux", executable="/env/bin/python", overlay=tmp_path
    )
    seen = env.environ({"PATH": "/usr/bin", "PYTHONPATH": "/mine"})
    assert seen["PATH"] == "/env/bin:/usr/bin"
    assert seen["PYTHONPATH"] == f"{tmp_path}:/mine"
    assert "PYTHONPATH" not in ProjectEnv(python="3", platform="linux").environ({})
    assert not ProjectEnv(python="3", platform="linux").has_randomly


def test_the_install_plan_is_read_from_uv() -> None:
    plan = (
        "Resolved 9 packages\nWould install 2 packages\n"
        " - pytest==8.0.0\n + pytest==9.0.1\n + execnet==2.1.2\n"
    )
    assert planned_installs(plan) == (["pytest==9.0.1", "execnet==2.1.2"], ["pytest==8.0.0"])


def test_group_extra_and_max_skipped_options_parse(tmp_path: Path) -> None:
    project = write(tmp_path / "p", PYPROJECT)
    settings = settings_of(project, groups="a,b c", max_skipped="5%")
    assert (settings.groups, settings.max_skipped) == (("a", "b", "c"), "5.0%")
    assert settings_of(project, max_skipped="3").max_skipped == "3"
    assert settings_of(project, max_skipped="off").max_skipped is None
    assert shutil.which("uv") is not None


def test_the_max_skipped_gate_takes_a_count_or_a_share() -> None:
    def test(number: int, outcome: Literal["passed", "skipped"]) -> TestResult:
        attempt = Attempt(outcome=outcome, duration_s=0.1)
        return TestResult(id=f"t{number}", file="t", line=1, outcome=outcome, attempts=(attempt,))

    tests = (test(1, "passed"), test(2, "skipped"), test(3, "skipped"), test(4, "passed"))
    assert max_skipped(tests[:1], limit="0").message == (
        "0 of 1 test skipped (0); at most 0 allowed"
    )  # one test, singular
    share = max_skipped(tests, limit="40.0%")
    assert (share.passed, share.actual) == (False, 50.0)
    assert share.message == "2 of 4 tests skipped (50 %); at most 40 % allowed"
    assert max_skipped(tests, limit="2").passed
    assert max_skipped((), limit="0.0%").passed


def test_an_environment_whose_python_says_nothing_is_named(early_run: Ran, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(0)\n", "utf-8")
    settings = settings_of(early_run.project, sync="false")
    with pytest.raises(InfraError, match=r"'uv run python' in .* did not answer testgate's probe"):
        environment.prepare(settings, shell(PYTHONPATH=str(tmp_path)))


def test_the_projects_stated_threshold_applies_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coverage = write(tmp_path / "c", PYPROJECT + "[tool.coverage.report]\nfail_under = 80\n")
    stated = with_stated_threshold(settings_of(coverage), environ={})
    assert (stated.fail_under_line, stated.fail_under_branch, stated.threshold_from) == (
        80, 0, "fail_under in the project's coverage configuration",
    )  # fmt: skip
    said = capsys.readouterr().out
    assert "threshold 80 % from fail_under in the project's coverage" in said
    assert "; no branch threshold of its own (fail-under-branch sets one)\n" in said
    own = with_stated_threshold(settings_of(coverage, fail_under_branch="95"), environ={})
    assert (own.fail_under_line, own.fail_under_branch) == (80, 95)
    assert "no branch threshold" not in capsys.readouterr().out
    assert (
        with_stated_threshold(
            settings_of(coverage, fail_under_line="90"), environ={}
        ).fail_under_line
        == 90
    )
    addopts = PYPROJECT + '[tool.pytest.ini_options]\naddopts = ["-q", "--cov-fail-under", "85"]\n'
    assert stated_threshold(write(tmp_path / "a", addopts)) == (
        85.0, "--cov-fail-under in the addopts of pyproject.toml",
    )  # fmt: skip
    ini = write(
        tmp_path / "i", "[pytest]\naddopts = --cov-fail-under=70.5 --cov-fail-under\n", "pytest.ini"
    )
    write(ini, "[tool:pytest]\naddopts = --cov-fail-under=x\n", "setup.cfg")
    write(ini, "[pytest]\nminversion = 8\n", "tox.ini")
    assert stated_threshold(ini) == (70.5, "--cov-fail-under in the addopts of pytest.ini")
    broken = write(tmp_path / "b", "[pytest\n", "pytest.ini")
    write(broken, "[tool:pytest]\naddopts = --cov-fail-under=x --cov-fail-under\n", "setup.cfg")
    assert stated_threshold(broken) is None
    nothing = settings_of(write(tmp_path / "n", PYPROJECT))
    assert with_stated_threshold(nothing, environ={}) is nothing


def test_the_threshold_comes_from_the_one_file_pytest_reads(tmp_path: Path) -> None:
    """.pytest.ini comes before pyproject.toml (pytest warns that it ignores the latter),
    and ``-c`` names another file; before, pyproject.toml won and .pytest.ini was unread."""
    project = write(tmp_path, "[pytest]\naddopts = --cov=pkg --cov-fail-under=70\n", ".pytest.ini")
    write(project, PYPROJECT + '[tool.pytest.ini_options]\naddopts = "--cov-fail-under=50"\n')
    assert stated_threshold(project) == (70.0, "--cov-fail-under in the addopts of .pytest.ini")
    write(project, "[tool:pytest]\naddopts = --cov-fail-under 60\n", "ci.cfg")
    settings = settings_of(project, pytest_args="-c ci.cfg")
    assert with_stated_threshold(settings, environ={}).fail_under_line == 60
    # PYTEST_ADDOPTS comes after the file's addopts (the last one wins) and may name the file
    environ = {"PYTEST_ADDOPTS": "--cov-fail-under=65 -x"}
    assert stated_threshold(project, environ=environ) == (
        65.0,
        "--cov-fail-under in PYTEST_ADDOPTS",
    )
    environ = {"PYTEST_ADDOPTS": "-c ci.cfg 'unclosed"}  # pytest refuses it: not read
    assert stated_threshold(project, environ=environ)[0] == 70.0  # type: ignore[index]
    environ = {"PYTEST_ADDOPTS": "-c ci.cfg"}
    assert stated_threshold(project, environ=environ) == (
        60.0, "--cov-fail-under in the addopts of ci.cfg",
    )  # fmt: skip


LAYOUTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "dot-ini-before-pyproject": (
        {".pytest.ini": "[pytest]\n", "pyproject.toml": "[tool.pytest.ini_options]\n"}, (),
    ),
    "tox-without-pytest-section": (
        {"tox.ini": "[tox]\n", "setup.cfg": "[tool:pytest]\n", "pyproject.toml": "[x]\n"}, (),
    ),
    "toml-first": ({"pytest.toml": "[pytest]\n", "pytest.ini": "[pytest]\n"}, ()),
    "from-the-paths-given": (
        {"tests/pytest.ini": "[pytest]\n", "tox.ini": "[pytest]\n", "tests/test_a.py": ""},
        ("tests/test_a.py",),
    ),
    "named": ({"ci/gate.toml": "[pytest]\n", "pytest.ini": "[pytest]\n"}, ("-c", "ci/gate.toml")),
}  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_config_file_is_the_one_pytest_reports(pytester: pytest.Pytester, layout: str) -> None:
    # pytest's own session, in this process (pytester runs in its own folder, without
    # PYTEST_ADDOPTS): what it reports is what a `pytest --co` started there reports.
    files, args = LAYOUTS[layout]
    for name, text in files.items():
        write((pytester.path / name).parent, text, Path(name).name)
    shown = pytester.runpytest_inprocess("--co", "-p", "no:cacheprovider", *args).stdout.str()
    reported = re.search(r"^rootdir: (\S+)\nconfigfile: (\S+)", shown, re.MULTILINE)
    assert reported is not None, shown  # configfile: relative to the rootdir
    assert find_config(pytester.path, pytest_args=args).path == Path(*reported.groups())


@pytest.fixture(scope="module")
def asyncio_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ran, Ran]:
    """Async tests with their plugin in a `test` group; and the same with the group renamed
    (so not installed), plus a test that skips itself when a module is missing."""

    def both(root: Path) -> Ran:
        cache = session_cache(root)
        run_in_process(copy_fixture("asyncio", root / "with"), extra_env=cache)
        project = copy_fixture("asyncio", root / "without")
        pyproject = project / "pyproject.toml"
        pyproject.write_text(pyproject.read_text("utf-8").replace("test = [", "lint = ["), "utf-8")
        (project / "tests" / "test_optional.py").write_text(
            "import pytest\n\nyaml = pytest.importorskip('testgate_absent_module')\n\n\n"
            "def test_never() -> None:\n    pass\n",
            "utf-8",
        )
        (project / "tests" / "test_plugin_needed.py").write_text(
            "import pytest\n\n\ndef test_needs() -> None:\n"
            "    pytest.importorskip('testgate_absent_module')\n\n\n"
            "@pytest.mark.skip(reason='not today')\ndef test_chosen() -> None:\n    pass\n",
            "utf-8",
        )
        (project / "tests" / "test_elsewhere.py").write_text(
            "import pytest\n\npytest.skip('windows only', allow_module_level=True)\n", "utf-8"
        )
        github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(root / "summary.md")}
        return run_in_process(project, "--reruns", "1", extra_env={**cache, **github})

    without = once_per_session(tmp_path_factory, "asyncio", both)
    with_group = without.project.parent.parent / "with" / "asyncio"
    output = (with_group.parent / "asyncio-run-output.txt").read_text("utf-8")
    return Ran(0, output, with_group, with_group / "testgate-reports"), without


def test_async_tests_run_with_the_plugin_of_their_test_group(asyncio_runs: tuple[Ran, Ran]) -> None:
    ran = asyncio_runs[0]
    results = json.loads((ran.reports / "results.json").read_text("utf-8"))
    assert results["totals"]["passed"] == 2, ran.output
    assert "uv sync --group test" in ran.output
    assert results["run"]["warnings"] == []  # a plugin's deprecation changes no outcome


def test_without_their_plugin_async_tests_never_pass_and_pytest_warnings_show(
    asyncio_runs: tuple[Ran, Ran],
) -> None:
    ran = asyncio_runs[1]
    assert ran.exit_code == 1
    results = json.loads((ran.reports / "results.json").read_text("utf-8"))
    warned = "pytest warned: PytestConfigWarning: Unknown config option: asyncio_mode"
    assert results["run"]["warnings"] == [warned]
    assert f"warning: {warned}" in ran.output
    assert "::warning title=pytest warned 1 time::PytestConfigWarning: Unknown config" in (
        ran.output
    )
    assert "- pytest warned: PytestConfigWarning" in (ran.reports / "summary.md").read_text("utf-8")
    outcomes = {
        test["id"]: (test["outcome"], test["attempts"][0]["message"]) for test in results["tests"]
    }
    assert outcomes["tests/test_waiter.py::test_soup"][0] == "failed"
    # a test skipped for want of a module is an error, not a skip; the same environment
    # would skip it again, so it is not rerun, where a failure is
    assert outcomes["tests/test_plugin_needed.py::test_needs"][0] == "error"
    attempts = {test["id"]: len(test["attempts"]) for test in results["tests"]}
    assert attempts["tests/test_plugin_needed.py::test_needs"] == 1
    assert attempts["tests/test_waiter.py::test_soup"] == 2
    # a module that skips itself is its own choice: one skipped test, as pytest counts it
    assert outcomes["tests/test_elsewhere.py"] == ("skipped", "windows only")
    assert outcomes["tests/test_plugin_needed.py::test_chosen"] == ("skipped", "not today")
    assert outcomes["tests/test_optional.py"] == (
        "error",
        "skipped because a plugin or dependency is missing: could not import "
        "'testgate_absent_module': No module named 'testgate_absent_module'",
    )


def test_dynamic_context_under_xdist_is_switched_off_with_a_notice(workspace_run: Ran) -> None:
    assert "[run] dynamic_context makes pytest-cov refuse xdist" in workspace_run.output
    import coverage  # noqa: PLC0415 (only this test reads a data file)

    data = coverage.CoverageData(str(workspace_run.reports / ".coverage"))
    data.read()
    assert "packages/alpha/tests/test_alpha.py::test_first|run" in data.measured_contexts()


def test_the_plugin_switches_dynamic_context_off_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import coverage.control  # noqa: PLC0415 (the module the plugin patches)

    write(tmp_path, '[tool.coverage.run]\ndynamic_context = "test_function"\n')
    monkeypatch.chdir(tmp_path)
    original = vars(coverage.control)["read_coverage_config"]
    monkeypatch.setattr(coverage.control, "read_coverage_config", original)
    fresh_plugin(monkeypatch, "plugin_with_contexts")
    assert coverage.Coverage().config.dynamic_context == "test_function"
    monkeypatch.setenv(NO_DYNAMIC_CONTEXT_ENV, "1")
    fresh_plugin(monkeypatch, "plugin_without_contexts")
    assert coverage.Coverage().config.dynamic_context is None


def test_an_internal_error_is_said_first_with_its_fix_and_no_gate_advice(
    tmp_path: Path,
) -> None:
    ran = run_in_process(copy_fixture("crash", tmp_path), "--workers", "2")
    assert ran.exit_code == 3
    summary = ran.output[ran.output.index("\ntestgate: pytest crashed") :].splitlines()
    assert summary[1] == (
        "testgate: pytest crashed with an internal error: conftest.BenchmarkWarning: Benchmarks "
        "are automatically disabled because xdist plugin is active. pytest-benchmark warns "
        "under xdist and the project's filterwarnings turns that into an error: pass "
        "--pytest-args='-p no:benchmark', or --workers 0 to run the benchmarks"
    )
    results = json.loads((ran.reports / "results.json").read_text("utf-8"))
    assert {gate["message"] for gate in results["gates"]} == {
        "not evaluated: pytest crashed (see the problem above)"
    }
    assert "Set [tool.coverage.run] source" not in ran.output


@pytest.mark.parametrize(
    ("text", "parallel", "fix"),
    [
        ("Traceback\nValueError: bad\n", True, "it may happen only under xdist: try --workers 0"),
        ("Traceback\nUserWarning: odd\n", True, "a warning became an error (filterwarnings)"),
        ("Traceback\nValueError: bad\n", False, "see pytest's INTERNALERROR traceback above"),
        ("\n", False, "(no message)"),
    ],
)
def test_a_crash_gets_the_fix_that_fits(text: str, *, parallel: bool, fix: str) -> None:
    problem = crash_problem([text], parallel=parallel)
    assert problem is not None
    assert problem.startswith("pytest crashed with an internal error: ")
    assert fix in problem
    assert crash_problem([], parallel=True) is None


@pytest.fixture(scope="module")
def workspace_run(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """A uv workspace of three members, one a namespace package, with coverage contexts per
    test (``dynamic_context``), under two xdist workers."""
    return once_per_session(
        tmp_path_factory,
        "workspace",
        lambda root: run_in_process(
            copy_fixture("workspace", root), "--workers", "2", extra_env=session_cache(root)
        ),
    )


def test_a_workspace_runs_whole_with_each_members_sources(workspace_run: Ran) -> None:
    assert workspace_run.exit_code == 0, workspace_run.output
    assert "testgate: a uv workspace: uv sync --group dev --all-packages" in workspace_run.output
    files = json.loads((workspace_run.reports / "coverage.json").read_text("utf-8"))["files"]
    assert sorted(files) == [
        "packages/alpha/src/alpha/__init__.py",
        "packages/beta/src/acme/beta/__init__.py",
        "packages/gamma/gamma/__init__.py",
    ]
    assert not (workspace_run.project / "uv.lock").exists()


def test_sources_are_the_code_never_the_tests(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for name in ("ns/pkg/__init__.py", "build/lib/x/__init__.py", "tests/__init__.py",
                 "app.py", "conftest.py", "test_app.py", "app_test.py", "setup.py", "_x.py",
                 "data/readme.txt", "bad-name/y/__init__.py"):  # fmt: skip
        (flat / name).parent.mkdir(parents=True, exist_ok=True)
        (flat / name).write_text("", "utf-8")
    assert infer_sources(flat) == ("ns", "app")
    workspace = write(
        tmp_path / "ws", '[tool.uv.workspace]\nmembers = ["libs/*"]\nexclude = ["libs/old"]\n'
    )
    write(workspace / "libs" / "one", '[project]\nname = "one"\n')
    write(workspace / "libs" / "one" / "src" / "one", "", "__init__.py")
    write(workspace / "libs" / "two", "[tool.black]\n")
    write(workspace / "libs" / "two" / "two", "", "__init__.py")
    write(workspace / "libs" / "bad", "[project\n")
    write(workspace / "libs" / "old", '[project]\nname = "old"\n')
    (workspace / "libs" / "notes").mkdir()
    assert infer_sources(workspace) == ("libs/bad", "libs/one/src", "libs/two/two")
    assert infer_sources(workspace, package="one") == ("libs/one/src",)
    write(tmp_path / "broken", "[tool\n")
    assert workspace_members(tmp_path / "broken") == ()


def test_pytests_own_count_of_collection_errors_is_explained(tmp_path: Path) -> None:
    error = {"kind": "collect-error", "id": "t.py", "message": "E   OSError", "text": "E   OSError"}
    lines = [{"kind": "start"}, error, error, {"kind": "finish", "exitstatus": 1}]
    path = tmp_path / "record.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    assert collection_notes(read_record(path)) == (
        "pytest counts 2 collection errors where testgate counts 1: each xdist worker "
        "reported the same ones (pytest without xdist counts them once)",
    )


def test_an_overlay_is_placed_whole_once(tmp_path: Path) -> None:
    building, overlay = tmp_path / "o.1", tmp_path / "o"
    (building / "pkg").mkdir(parents=True)
    (overlay / "half").mkdir(parents=True)  # a killed run's leftover, never completed
    environment.place(building, overlay)
    assert sorted(path.name for path in overlay.iterdir()) == ["pkg"]
    (overlay / ".complete").write_text("", "utf-8")
    (tmp_path / "o.2" / "pkg").mkdir(parents=True)
    environment.place(tmp_path / "o.2", overlay)  # another was first: its copy stays
    assert not (tmp_path / "o.2").exists()
    assert (overlay / ".complete").is_file()


def test_the_fingerprint_follows_what_is_installed_not_when_nor_the_projects_own(
    tmp_path: Path,
) -> None:
    """The fingerprint runs record: the same installs in a new environment at the same
    place have the same one (a re-run job on a fresh runner); a distribution removed, or
    a start-up file changed, makes another; the project's own files (a version from git
    changes with every commit) leave it alone."""
    venv, project = tmp_path / "venv", write(tmp_path / "p", '[project]\nname = "p"\n')
    python = str(venv / "bin" / "python")
    install = ["uv", "pip", "install", "-q", "--offline", "--python", python]

    def made() -> Path:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
        subprocess.run([*install, "iniconfig"], check=True)
        (site,) = venv.glob("lib/python*/site-packages")
        (site / "extra.pth").write_text("import sys\n", "utf-8")
        return site

    def keys() -> probe_cache.Keys:
        return probe_cache.probe_key(
            python, base=tmp_path / "cache", project=project, environ=shell(PYTHONPATH=""),
            parts=[], own=["P"],
        )  # fmt: skip

    site = made()
    first = keys()
    os.utime(site / "extra.pth", ns=(1, 1))  # the same files, made at another time
    assert keys() == first
    site = made()
    assert keys().fingerprint == first.fingerprint
    (site / "p-1.0.dev3+g1a2b.dist-info").mkdir()
    for own in ("__editable__.p-1.0.dev3.pth", "_p.pth", "__editable___p_1_0_finder.py"):
        (site / own).write_text("import sys\n", "utf-8")
    assert keys().fingerprint == first.fingerprint  # the project's own: another commit's
    (site / "other-1.dist-info").mkdir()
    (site / "other_finder.py").write_text("", "utf-8")
    added = keys().fingerprint
    assert added != first.fingerprint
    (site / "extra.pth").write_text("import os  # changed\n", "utf-8")
    assert keys().fingerprint != added
    subprocess.run(["uv", "pip", "uninstall", "-q", "--python", python, "iniconfig"], check=True)
    assert keys().fingerprint not in (first.fingerprint, added)


def test_the_probe_is_kept_per_environment_and_asked_again_when_it_changes(
    tmp_path: Path,
) -> None:
    """A second command in the same environment starts none of the probe's Pythons; a
    distribution installed, a changed pyproject.toml or a damaged cache file probe again."""
    venv, log = tmp_path / "venv", tmp_path / "started.log"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        f"open({str(log)!r}, 'a').write('started\\n')\n", "utf-8"
    )  # every start of the project's Python that runs its site hooks, as the probe's do
    project = write(tmp_path / "p", '[project]\nname = "p"\nversion = "1"\n')
    cache = session_cache(tmp_path / "root")
    environ = shell(**cache, PYTHONPATH=str(tmp_path / "site"))
    settings = settings_of(project, python=str(venv / "bin" / "python"))

    def starts() -> int:
        found = environment.probe(settings, environ, sources=())
        assert found.overlay is not None  # the bare venv lacks pytest: an overlay adds it
        count = len(log.read_text("utf-8").splitlines()) if log.exists() else 0
        log.unlink(missing_ok=True)
        return count

    assert starts() == 2  # asked, then asked again with the overlay of added plugins
    assert starts() == 0  # the same environment: its answer is reused
    probes = Path(cache["XDG_CACHE_HOME"]) / "testgate" / "probes"
    (kept,) = probes.iterdir()  # one file for this environment and command
    assert sorted(path.name for path in project.iterdir()) == ["pyproject.toml"]
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "--offline", "iniconfig"], check=True)  # fmt: skip
    assert starts() == 2  # what is installed changed
    assert starts() == 0
    write(project, '[project]\nname = "p"\nversion = "2"\n')
    assert starts() == 2
    assert list(probes.iterdir()) == [kept]  # replaced, not one more
    site = tmp_path / "site" / "sitecustomize.py"
    site.write_text(site.read_text("utf-8") + "# changed: it runs at every start\n", "utf-8")
    assert starts() == 2
    kept.write_text("{not json", "utf-8")  # every other damage: tests/unit/test_probe_answers.py
    assert starts() == 2
