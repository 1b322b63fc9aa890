"""The project's own environment: find its shape, install it, probe it, add only what is missing.

testgate runs the suite with the project's own Python and packages. It recognises the
common shapes of a Python project (a uv or other PEP 621 project, a uv workspace, a
setuptools project with its metadata in ``setup.cfg``/``setup.py``, a project with only
``requirements*.txt``, an existing environment given with ``--python``;
a Poetry project without a ``[project]`` table gets a clear error), installs the project
with its test dependencies (all extras and the ``dev``/``test``/``tests``/``testing``
dependency groups, unless told otherwise), and probes the environment once per command.

The pytest plugins testgate needs (``PLUGINS``) are added only when missing, into a
testgate-owned directory put on ``PYTHONPATH`` (no ``.pth`` file runs from it): uv
resolves them against every distribution already installed, pinned at its installed
version, and only the distributions the environment lacks go in. So nothing the project
has, and never the project itself, is replaced or shadowed. The probe then checks that
every package of the project is imported from the project. A project that pytest imports
before any plugin (pluggy, a pytest plugin) is measured by ``coverage run`` from the
process start, so its coverage equals ``coverage run -m pytest``.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import coverage_data, probe_cache
from runner.child_env import child_environment
from runner.errors import ConfigError, InfraError
from runner.execute import PLUGIN_NAME, find_uv, pytest_timeout_wanted
from runner.github.commands import on_github
from runner.output import emit
from runner.plugin import _testgate_wire as wire
from runner.pytest_config import warning_filters
from runner.settings import Settings

NO_DYNAMIC_CONTEXT_ENV = wire.NO_DYNAMIC_CONTEXT_ENV  # read by the plugin
DEFAULT_GROUPS = ("dev", "test", "tests", "testing")
SHAPES = ("uv", "workspace", "setuptools", "requirements", "existing")


@dataclass(frozen=True)
class Plugin:
    """A pytest plugin testgate needs: its distribution, its module, when it is needed, and
    the oldest version testgate adds (``>=3.2``)."""

    distribution: str
    module: str
    needed: Callable[[Settings], bool]
    oldest: str = ""


# Adding a plugin testgate relies on is one entry here. The oldest versions keep uv from
# resolving a plugin of 2013 (pytest-cov 1.5, pytest-xdist 1.4: they name no pytest, so no
# conflict) where a newer one cannot be added beside the installed packages (a pluggy of
# setuptools-scm's 0.1.dev1, from a clone without tags, that pytest's own pin refuses):
# then the run stops with uv's reason instead of crashing in pytest's start.
PLUGINS: tuple[Plugin, ...] = (
    Plugin("pytest", "pytest", lambda settings: True, ">=7.4"),
    Plugin("pytest-xdist", "xdist", lambda settings: settings.workers != "0", ">=3.2"),
    Plugin("pytest-cov", "pytest_cov", lambda settings: True, ">=4"),
    Plugin("pytest-timeout", "pytest_timeout", pytest_timeout_wanted, ">=2.1"),
)
PYTEST_DJANGO = "pytest_django"  # then it makes each worker's SQL database itself
PROBED_MODULES = (
    *(plugin.module for plugin in PLUGINS),
    "pytest_randomly",
    "coverage",
    PYTEST_DJANGO,
)

_PROBE = """
import importlib.machinery, importlib.metadata, importlib.util, json, os, platform, re, sys
modules, packages = json.loads(sys.argv[1]), json.loads(sys.argv[2])
own, roots = json.loads(sys.argv[3]), json.loads(sys.argv[4])
needed_modules, filters = json.loads(sys.argv[5]), json.loads(sys.argv[6])
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
def where(spec):
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return spec.origin
    return next(iter(spec.submodule_search_locations or ()), None)
def origin(name, finder=importlib.util.find_spec, *path):
    try:
        return where(finder(name, *path))
    except (ImportError, ValueError):
        return None
origins = {name: origin(name) for name in packages}
# imported from a place of its own (an editable install's .pth or finder, PYTHONPATH,
# which site makes absolute), not from the folder it runs in (python -c's '' entry)
relative = [entry for entry in sys.path if not os.path.isabs(entry)]
PathFinder = importlib.machinery.PathFinder.find_spec
bound = [name for name, place in origins.items()
    if place is not None and place != origin(name, PathFinder, relative)]
found = {name: origin(name) is not None for name in modules}
early = []
needed, todo = set(), [norm(name) for name in roots]
while todo:  # what pytest and the plugins depend on: imported before coverage starts
    name = todo.pop()
    if name in needed:
        continue
    needed.add(name)
    try:
        requires = importlib.metadata.distribution(name).requires or []
    except importlib.metadata.PackageNotFoundError:
        continue
    todo += [norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requires if "extra ==" not in r]
plugins = {norm(d.metadata["Name"] or "") for d in importlib.metadata.distributions()
    if any(point.group == "pytest11" for point in d.entry_points)}
early = [name for name in own if norm(name) in needed | plugins]
try:  # what pytest imports before it loads any plugin (asked again once plugins are added)
    if all(found.get(name) for name in needed_modules):
        import pytest, _pytest.config
        for arg in filters:  # as pytest configures: each filter's category is imported
            try:
                _pytest.config.parse_warning_filter(arg, escape=False)
            except Exception:  # pytest itself says what is wrong with it
                pass
        early += [name for name in packages if name in sys.modules]
except Exception:  # pytest itself will say what is wrong
    pass
print(json.dumps({"python": platform.python_version(), "platform": sys.platform,
    "executable": sys.executable, "found": found,
    "abi": f"{sys.implementation.cache_tag}-{sys.platform}-{platform.machine()}",
    "distributions": sorted({(d.metadata["Name"] or "", d.version)
        for d in importlib.metadata.distributions() if d.metadata["Name"]}),
    "packages": origins, "early": early, "bound": bound}))
"""


_ANSWER = (
    "python", "platform", "executable", "abi", "found", "distributions", "packages", "early",
    "bound",
)  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """How the project says what it needs: one of SHAPES, and the files that say it."""

    kind: str
    description: str
    requirements: tuple[Path, ...] = ()
    python: str | None = None  # an existing environment's
    metadata: Path | None = None  # a setuptools project's setup.py or setup.cfg
    tox_deps: tuple[str, ...] = ()  # tox.ini's [testenv] deps, as uv pip install takes them


@dataclass(frozen=True)
class ProjectEnv:
    """The project's environment, probed once per command; every attempt reuses it."""

    python: str
    platform: str
    executable: str = sys.executable
    found: Mapping[str, bool] = field(default_factory=dict)
    overlay: Path | None = None
    early: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None  # runner.probe_cache: what evidence across runs needs

    @property
    def has_randomly(self) -> bool:
        return bool(self.found.get("pytest_randomly"))

    @property
    def has_pytest_django(self) -> bool:
        return bool(self.found.get(PYTEST_DJANGO))

    def environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The variables pytest runs with: the environment's scripts first on PATH, the
        overlay of added plugins on PYTHONPATH."""
        scripts = str(Path(self.executable).parent)
        path = os.pathsep.join(part for part in (scripts, environ.get("PATH", "")) if part)
        python_path = os.pathsep.join(
            part for part in (str(self.overlay or ""), environ.get("PYTHONPATH", "")) if part
        )
        python_paths = {"PYTHONPATH": python_path} if python_path else {}
        return {**environ, "PATH": path, **python_paths, **self.variables}


def read_pyproject(project: Path) -> dict[str, Any]:
    """The project's pyproject.toml as a table, or an empty one when there is none."""
    path = project / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}. Fix the file.") from None


def find_requirements(project: Path) -> tuple[Path, ...]:
    """``requirements*.txt`` at the root and ``requirements/*.txt``, in name order."""
    found = sorted(project.glob("requirements*.txt")) + sorted(project.glob("requirements/*.txt"))
    return tuple(path for path in found if path.is_file())


# A tox deps line testgate cannot take as it stands: a factor's (``py38: mock``), one
# with a substitution (``{[base]deps}``), the project itself (``-e .``), a constraint.
_TOX_CONDITIONAL = re.compile(r"^[\w.,!{}-]+:\s|\{|^(-e|--editable|-c|--constraint)\b|^\.$")


def tox_deps(project: Path) -> tuple[str, ...]:
    """What tox.ini's ``[testenv]`` installs for every environment (its ``deps``), as
    ``uv pip install`` arguments: each requirement, and ``-r FILE`` for a requirements file
    (relative to the project). Lines for some environments only (a factor's), with a
    substitution, the project itself and constraints are left out; no tox.ini, none.

    pytest-timeout's test tools (pexpect) are in its tox.ini's deps and nowhere else."""
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string((project / "tox.ini").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return ()
    found: list[str] = []
    for text in config.get("testenv", "deps", fallback="").splitlines():
        line = text.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or _TOX_CONDITIONAL.search(line):
            continue
        if line.startswith("-r"):
            found += ["-r", str(project / line[2:].strip())]
        else:
            found.append(line)
    return tuple(found)


def setuptools_metadata(project: Path) -> Path | None:
    """The file that holds a setuptools project's metadata outside pyproject.toml: its
    ``setup.py``, else a ``setup.cfg`` that names the distribution (``[metadata] name``);
    None when the project has neither (a ``setup.cfg`` of tool settings only, an app)."""
    setup_py = project / "setup.py"
    if setup_py.is_file():
        return setup_py
    return project / "setup.cfg" if coverage_data.setup_cfg_name(project) else None


def venv_python(venv: Path, *, windows: bool = sys.platform == "win32") -> Path:
    """A virtual environment's Python: ``Scripts\\python.exe`` on Windows, else ``bin/python``."""
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def detect_shape(
    settings: Settings, pyproject: Mapping[str, Any], *, active: str | None = None
) -> Shape:
    """Which kind of project this is, or a ConfigError/InfraError saying what to do.

    ``active`` is an activated virtual environment (``VIRTUAL_ENV``): used as it is when
    the project names nothing to install.
    """
    project = settings.project
    if settings.python is not None:
        return Shape(
            "existing", f"the existing environment of {settings.python}", python=settings.python
        )
    tool = pyproject.get("tool", {})
    if "workspace" in tool.get("uv", {}):
        return Shape("workspace", "a uv workspace")
    if "project" in pyproject:
        backend = str(pyproject.get("build-system", {}).get("build-backend", "none"))
        return Shape("uv", f"a PEP 621 project (build backend: {backend})")
    if "poetry" in tool:
        raise InfraError(
            f"{project / 'pyproject.toml'} is a Poetry project ([tool.poetry] and no [project] "
            "table): uv cannot install its dependencies. Create its environment with "
            "'poetry install --all-extras --with dev' and pass that environment's Python: "
            '--python "$(poetry env info --executable)".'
        )
    files = tuple(project / name for name in settings.requirements) or find_requirements(project)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise ConfigError(f"--requirements: {missing[0]} does not exist. Name an existing file.")
    tox = () if settings.requirements else tox_deps(project)  # named files: those alone
    metadata = setuptools_metadata(project)
    if metadata is not None:
        return Shape(
            "setuptools",
            f"a setuptools project ({metadata.name}, no [project] table)",
            requirements=files,
            metadata=metadata,
            tox_deps=tox,
        )
    if files or tox:
        return Shape(
            "requirements", "a project with requirements files", requirements=files, tox_deps=tox
        )
    if active and venv_python(Path(active)).is_file():
        python = str(venv_python(Path(active)))
        return Shape("existing", f"the active virtual environment {active}", python=python)
    where = "pyproject.toml has no [project] table" if pyproject else "no pyproject.toml"
    raise ConfigError(
        f"{project}: {where} and no requirements*.txt, so testgate cannot tell what the tests "
        "need. Pass --project DIR with the project's root, --requirements FILE, or --python "
        "PATH of an environment that has the project installed (or activate it)."
    )


def sync_arguments(settings: Settings, pyproject: Mapping[str, Any]) -> list[str]:
    """``uv sync`` arguments for a test run: extras and test dependency groups.

    Without ``--extra``/``--group``/``--all-groups`` that is every extra (the workspace
    members' too) and each of the groups dev, test, tests, testing that the project (or a
    member of its workspace) has.
    """
    _check_named(settings, pyproject)
    arguments: list[str] = []
    if settings.extras:
        for extra in settings.extras:
            arguments += ["--extra", extra]
    elif _has_extras(settings, pyproject):
        arguments.append("--all-extras")
    if settings.all_groups:
        arguments.append("--all-groups")
    else:
        present = _group_names(settings, pyproject)
        names = settings.groups or tuple(name for name in DEFAULT_GROUPS if name in present)
        for name in names:
            arguments += ["--group", name]
    if settings.package is not None:
        arguments += ["--package", settings.package]
    elif "workspace" in pyproject.get("tool", {}).get("uv", {}):
        arguments.append("--all-packages")
    return arguments


def _check_named(settings: Settings, pyproject: Mapping[str, Any]) -> None:
    """A ConfigError for a group or extra the project does not define, before uv says so
    as a failed sync (exit 3). A workspace's members define their own: uv judges those."""
    if settings.package is not None or "workspace" in pyproject.get("tool", {}).get("uv", {}):
        return
    tables = {
        "groups": ("dependency group", "[dependency-groups]", pyproject.get("dependency-groups")),
        "extras": (
            "extra",
            "[project.optional-dependencies]",
            pyproject.get("project", {}).get("optional-dependencies"),
        ),
    }
    for option, (kind, table, defined) in tables.items():
        names = defined if isinstance(defined, dict) else {}
        for name in getattr(settings, option):
            if name not in names:
                has = (
                    f"pyproject.toml's {table} has {', '.join(sorted(names))}"
                    if names
                    else f"pyproject.toml has no {table}"
                )
                raise ConfigError(
                    f"{option}: the project defines no {kind} {name!r} ({has}): name one it "
                    "has, or add it there."
                )


def _group_names(settings: Settings, pyproject: Mapping[str, Any]) -> set[str]:
    """The dependency groups of the project and of the workspace members this run installs:
    ``uv sync --all-packages --group test`` installs a member's ``test`` group, which holds
    the test dependencies of that member's tests (pytest collects them from the root)."""
    members = coverage_data.workspace_members(settings.project, package=settings.package)
    tables = [pyproject, *(read_pyproject(member) for member in members)]
    return {name for table in tables for name in table.get("dependency-groups", {})}


def _has_extras(settings: Settings, pyproject: Mapping[str, Any]) -> bool:
    """Whether the project, or a member of its workspace that this run installs, has extras."""
    if pyproject.get("project", {}).get("optional-dependencies"):
        return True
    members = coverage_data.workspace_members(settings.project, package=settings.package)
    return any(
        read_pyproject(member).get("project", {}).get("optional-dependencies") for member in members
    )


def cache_dir(environ: Mapping[str, str]) -> Path:
    """testgate's own cache: requirements environments and plugin overlays."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "testgate"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _run(
    command: Sequence[str],
    *,
    cwd: Path,
    environ: Mapping[str, str],
    what: str,
    unknown: Sequence[str] = (),
) -> str:
    """Run one uv command; its output is returned, and shown (made inert) when it fails.

    ``unknown`` ends ``command``: options an older uv does not know, left out when it says
    so. A build backend is the project's code, so what uv passes on from it is untrusted.
    """
    completed = subprocess.run(
        command,
        cwd=cwd,
        env=child_environment(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    out = completed.stdout.decode("utf-8", "replace")
    if unknown and completed.returncode != 0 and f"unexpected argument '{unknown[0]}'" in out:
        return _run(command[: -len(unknown)], cwd=cwd, environ=environ, what=what)
    if completed.returncode != 0:
        emit(out)
        said = first_error(out)
        raise InfraError(
            f"{what} failed (exit {completed.returncode}){f': {said}' if said else ''}; its "
            f"message is above. testgate ran: {shlex.join(command)}. A project installed "
            "another way (tox, nox, pip) runs with --python PATH of its environment."
        )
    return out


SYNC_REPORT = ("--output-format", "json")  # uv 0.8 on: what it synced, and the Python


def _sync(command: Sequence[str], *, cwd: Path, environ: Mapping[str, str]) -> str | None:
    """Run ``uv sync``; the environment's Python it reports, or None when it says none.

    uv reports the environment it synced (``--output-format json``), which spares asking
    ``uv run`` where it is (a uv start, 0.05 s). A uv too old for the option is asked
    again without it.
    """
    out = _run([*command, *SYNC_REPORT], cwd=cwd, environ=environ, what="uv sync",
               unknown=SYNC_REPORT)  # fmt: skip
    try:
        report, _ = json.JSONDecoder().raw_decode(out, max(out.find("{"), 0))
        python = report["sync"]["environment"]["python"]["path"]
    except (ValueError, KeyError, TypeError):
        return None
    return python if isinstance(python, str) else None


UV_CROSS = "\u00d7"  # the multiplication sign uv's resolver opens its failures with


def first_error(output: str) -> str:
    """uv's first line of complaint (``error: …``, or its resolver's ``\u00d7 …``), else
    its first line, cut to 300 characters: what the error annotation can show of a failed uv."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = next(
        (line for line in lines if line.startswith(("error:", UV_CROSS))), lines[0] if lines else ""
    )
    return said if len(said) <= 300 else f"{said[:299]}…"


def prepare(settings: Settings, environ: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """Install the project's environment; return its Python and the notices to print."""
    pyproject = read_pyproject(settings.project)
    shape = detect_shape(settings, pyproject, active=environ.get("VIRTUAL_ENV"))
    if shape.kind == "existing":
        chosen = Path(str(shape.python))
        if not chosen.is_file() and not chosen.is_absolute():
            chosen = settings.project / chosen
        if not chosen.is_file():
            raise ConfigError(f"--python: {settings.python} is not a file. Name a Python binary.")
        # Absolute, as every process started later runs elsewhere (the probe in testgate's
        # cache); not resolved, since a venv's python is a link out of the venv.
        return os.path.abspath(chosen), (f"testgate: using {shape.description} as it is",)
    uv = find_uv(environ)
    if shape.kind in ("requirements", "setuptools"):
        return _requirements_env(settings, shape, uv=uv, environ=environ)
    return _uv_env(settings, pyproject, shape, uv=uv, environ=environ)


def _requirements_env(
    settings: Settings, shape: Shape, *, uv: str, environ: Mapping[str, str]
) -> tuple[str, tuple[str, ...]]:
    """A venv in testgate's cache with the requirement files installed, and a setuptools
    project itself (editable, as tox's develop mode and ``pip install -e .`` do, with its
    extras from its metadata file, as a PEP 621 project gets them): the tests import the
    project's own code, never a copy a requirement pulled in from the registry."""
    venv = cache_dir(environ) / "envs" / f"{settings.project.name}-{_digest(str(settings.project))}"
    python = venv_python(venv)
    own = _own_install(settings, shape)
    if settings.sync or not python.is_file():
        version = ["--python", settings.python_version] if settings.python_version else []
        quiet = [uv, "venv", "-q", "--allow-existing", *version, str(venv)]
        _run(quiet, cwd=settings.project, environ=environ, what="uv venv")
        files = [arg for path in shape.requirements for arg in ("-r", str(path))]
        tox = list(shape.tox_deps)
        install = [uv, "pip", "install", "-q", "--python", str(python), *own, *files, *tox]
        _run(install, cwd=settings.project, environ=environ, what="uv pip install -r")
    names = ", ".join(
        [str(path.relative_to(settings.project)) for path in shape.requirements]
        + (["tox.ini's deps"] if shape.tox_deps else [])
    )
    if shape.metadata is None:
        said = f"no [project] table: installed {names}"
    else:
        extras = "with every extra" if not settings.extras else f"with {', '.join(settings.extras)}"
        said = f"{shape.description}: installed it {extras}{f', and {names},' if names else ''}"
    return str(python), (f"testgate: {said} with uv into {venv}",)


def _own_install(settings: Settings, shape: Shape) -> list[str]:
    """``uv pip install`` arguments for a setuptools project itself: editable, with the
    extras its metadata file declares (all, unless ``--extras`` names them)."""
    if shape.metadata is None:
        return []
    extras = [arg for name in settings.extras for arg in ("--extra", name)] or ["--all-extras"]
    return ["-e", str(settings.project), "-r", str(shape.metadata), *extras]


def _uv_env(
    settings: Settings,
    pyproject: Mapping[str, Any],
    shape: Shape,
    *,
    uv: str,
    environ: Mapping[str, str],
) -> tuple[str, tuple[str, ...]]:
    project = settings.project
    notices: list[str] = []
    version = ["--python", settings.python_version] if settings.python_version else []
    if settings.sync:
        locks = [folder / "uv.lock" for folder in (project, *project.parents)]
        had = {lock for lock in locks if lock.is_file()}
        lock_flag = ["--locked"] if had else []
        arguments = sync_arguments(settings, pyproject)
        command = [uv, "sync", "-q", "--project", str(project), *lock_flag, *version, *arguments]
        try:
            synced = _sync(command, cwd=project, environ=environ)
        finally:
            for lock in locks:  # a lock file uv wrote is testgate's doing: take it away
                if lock not in had and lock.is_file():
                    lock.unlink()
        said = " ".join([*lock_flag, *arguments])
        notices.append(f"testgate: {shape.description}: uv sync {said}".rstrip())
        if synced is not None:
            return synced, tuple(notices)
    find = [uv, "run", "--no-sync", "--project", str(project), *version, "python", "-c"]
    out = _run(
        [*find, "import sys; print('\\ntestgate-python:' + sys.executable)"],
        cwd=project,
        environ=environ,
        what="uv run python",
    )
    found = re.search(r"^testgate-python:(.+)$", out, flags=re.MULTILINE)
    if found is None:
        raise InfraError(f"'uv run python' in {project} did not answer testgate's probe: {out!r}")
    return found.group(1), tuple(notices)


def project_distributions(settings: Settings) -> list[str]:
    """The names of the distributions the project provides: its own (``[project] name``,
    else a setuptools project's, ``coverage_data.project_name``), its members'."""
    names = [coverage_data.project_name(settings.project)]
    names += [
        coverage_data.project_name(member)
        for member in coverage_data.workspace_members(settings.project)
    ]
    return [name for name in names if name]


def project_packages(settings: Settings, sources: Sequence[str]) -> tuple[str, ...]:
    """The top-level import names of the project's own code, from its source directories."""
    names: set[str] = set()
    for source in sources:
        folder = settings.project / source
        if folder.name == "src":
            names.update(_importable(folder))
        elif source != "." and (folder.is_dir() or folder.with_suffix(".py").is_file()):
            names.add(folder.name)  # a package, a namespace package, or a module
    return tuple(sorted(names))


def _importable(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {
        entry.stem if entry.is_file() else entry.name
        for entry in folder.iterdir()
        if not entry.name.startswith((".", "_"))
        and (entry.suffix == ".py" or (entry.is_dir() and re.fullmatch(r"\w+", entry.name)))
    }


def probe(
    settings: Settings, environ: Mapping[str, str], *, sources: Sequence[str] = ()
) -> ProjectEnv:
    """Install and probe the project's environment, and add the plugins it lacks.

    The probe's answer is kept per environment (runner.probe_cache): a later command in
    the same, unchanged environment reuses it. Raises a ConfigError when one of the
    project's packages would be imported from somewhere else than the project.
    """
    python, prepared = prepare(settings, environ)
    packages = project_packages(settings, sources)
    # pytest's early imports are probed once: here, or with the overlay once plugins are added
    needed = [plugin.module for plugin in PLUGINS if plugin.needed(settings)]
    base = cache_dir(environ)
    requirements = [settings.project / name for name in settings.requirements]
    filters = warning_filters(settings.project, pytest_args=settings.pytest_args, environ=environ)
    parts = [*packages, "|", *needed, "|", *filters]  # a filter's category may be the project's
    keys = probe_cache.probe_key(
        python,
        base=base,
        project=settings.project,
        environ=environ,
        parts=parts,
        files=requirements or find_requirements(settings.project),
        own=project_distributions(settings),
    )
    answer = probe_cache.cached(base, keys.slot, keys.probe, project=settings.project)
    if answer is None:
        answer = _inspect(python, settings=settings, environ=environ, packages=packages,
                          needed=needed)  # fmt: skip
        probe_cache.keep(base, keys.slot, keys.probe, answer)
    notices = list(prepared)
    if answer["added"]:
        notices.append(
            f"testgate: added {', '.join(answer['added'])} (missing from the project's "
            "environment; resolved against its installed packages, none replaced)"
        )
    early = tuple(dict.fromkeys(answer["early"]))
    if early:
        notices.append(
            f"testgate: pytest needs the project's {', '.join(early)} before any plugin starts: "
            "measured with 'coverage run' from the process start, without xdist"
        )
    variables = {}
    if settings.workers != "0" and coverage_data.dynamic_context_of(settings.project):
        variables[NO_DYNAMIC_CONTEXT_ENV] = "1"
        notices.append(
            "testgate: [run] dynamic_context makes pytest-cov refuse xdist (DistCovError): "
            "switched off for this run; --cov-context=test records the per-test contexts"
        )
    emit("".join(f"{notice}\n" for notice in notices))
    overlay = answer["overlay"]
    return ProjectEnv(
        python=str(answer["python"]),
        platform=str(answer["platform"]),
        executable=python,
        found={name: bool(value) for name, value in answer["found"].items()},
        overlay=None if overlay is None else Path(overlay),
        early=early,
        variables=variables,
        # the plugins testgate added run the tests too: their versions join the fingerprint
        fingerprint=hashlib.sha256(
            "\0".join([keys.fingerprint, *answer["added"]]).encode()
        ).hexdigest()[:16],
    )


def _inspect(
    python: str,
    *,
    settings: Settings,
    environ: Mapping[str, str],
    packages: Sequence[str],
    needed: Sequence[str],
) -> dict[str, Any]:
    """Ask the environment what it has, add the plugins it lacks, and ask again what pytest
    imports early; the answer has ``probe_cache.ANSWER_FIELDS``."""
    found = _ask(python, settings=settings, environ=environ, packages=packages, needed=needed)
    for name, origin in found["packages"].items():
        if origin is not None and not _inside(Path(origin), settings.project):
            raise ConfigError(
                f"the project's package {name!r} is imported from {origin}, not from the "
                f"project in {settings.project}: the tests would test another copy. Install "
                "the project into its environment (remove '[tool.uv] package = false', or "
                "'uv pip install -e .'), or pass --python with an environment that has it."
            )
    wanted = [
        plugin
        for plugin in PLUGINS
        if plugin.module in needed and not found["found"].get(plugin.module)
    ]
    overlay: Path | None = None
    added: list[str] = []
    if wanted:
        overlay, added = provide(
            wanted,
            python=python,
            installed=found["distributions"],
            settings=settings,
            environ=environ,
            abi=found["abi"],
        )
        check_overlay(overlay, packages=packages, wanted=wanted)
        # the added plugins may depend on, or import, the project: asked as pytest runs
        with_overlay = ProjectEnv(
            python="", platform="", executable=python, overlay=overlay
        ).environ(environ)
        found["early"] = _ask(
            python, settings=settings, environ=with_overlay, packages=packages, needed=()
        )["early"]
    return {
        "python": found["python"],
        "platform": found["platform"],
        "found": found["found"],
        "early": list(found["early"]),
        "overlay": None if overlay is None else str(overlay),
        "added": added,
        # where the project's packages come from depends on where the project is: the
        # answer holds for this project only (runner.probe_cache)
        "project": str(settings.project.resolve()) if found["bound"] else None,
    }


def check_overlay(overlay: Path, *, packages: Sequence[str], wanted: Sequence[Plugin]) -> None:
    """A ConfigError when a package of the project is in the overlay of added plugins."""
    clash = sorted(set(packages) & _importable(overlay))
    if clash:
        raise ConfigError(
            f"the project's package {clash[0]!r} would be shadowed by a copy testgate "
            f"needs for {', '.join(plugin.distribution for plugin in wanted)}: add "
            "those to the project's test dependencies, so they resolve against it."
        )


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _ask(
    python: str,
    *,
    settings: Settings,
    environ: Mapping[str, str],
    packages: Sequence[str],
    needed: Sequence[str],
) -> dict[str, Any]:
    """What the project's Python has. pytest's early imports (``early``) are probed only
    when every ``needed`` plugin module is there: otherwise the overlay that adds them is
    asked again, and importing pytest here (most of the probe's time) would be wasted."""
    roots = [plugin.distribution for plugin in PLUGINS] + ["coverage"]
    own = project_distributions(settings)
    filters = warning_filters(settings.project, pytest_args=settings.pytest_args, environ=environ)
    command = [python, "-c", _PROBE, json.dumps(PROBED_MODULES), json.dumps(list(packages)),
               json.dumps(own), json.dumps(roots), json.dumps(list(needed)),
               json.dumps(filters)]  # fmt: skip
    # The project's Python runs its dependencies' .pth files, outside pytest's guard: on
    # GitHub what it says is shown through the one writer, inert.
    github = on_github(environ)
    completed = subprocess.run(
        command,
        cwd=settings.project,
        env=child_environment(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if github else None,
        check=False,
    )
    if completed.stderr:
        emit(completed.stderr.decode("utf-8", "replace"), stream=sys.stderr, colours=True)
    try:
        answer = json.loads(completed.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        return {key: answer[key] for key in _ANSWER}
    except (ValueError, KeyError, IndexError, TypeError):
        raise InfraError(
            f"the project's Python {python} did not answer testgate's probe (exit "
            f"{completed.returncode}): {completed.stdout[-500:]!r}; see the output above."
        ) from None


def planned_installs(output: str) -> tuple[list[str], list[str]]:
    """From ``uv pip install --dry-run``'s plan: what it would add, and what it would remove."""
    added = re.findall(r"^\s*\+\s*(\S+==\S+)", output, flags=re.MULTILINE)
    removed = re.findall(r"^\s*-\s*(\S+==\S+)", output, flags=re.MULTILINE)
    return added, removed


def provide(
    plugins: Sequence[Plugin],
    *,
    python: str,
    installed: Sequence[Sequence[str]],
    settings: Settings,
    environ: Mapping[str, str],
    abi: str = "",
) -> tuple[Path, list[str]]:
    """Install ``plugins``, and only the distributions the environment lacks, in an overlay.

    The overlay is keyed by the plan and the interpreter's ``abi`` (any environment of the
    same Python reuses it), else by the interpreter's path.

    uv resolves them with every installed distribution pinned at its version; the plan's
    additions (never a replacement) go into a directory keyed by that plan, reused later.
    """
    uv = find_uv(environ)
    base = cache_dir(environ)
    base.mkdir(parents=True, exist_ok=True)
    pins = "".join(f"{name}=={version}\n" for name, version in installed)
    constraints = base / f"constraints-{_digest(pins)}.txt"
    constraints.write_text(pins, "utf-8")
    names = [f"{plugin.distribution}{plugin.oldest}" for plugin in plugins]
    plan = [uv, "pip", "install", "--dry-run", "--python", python, "-c", str(constraints), *names]
    completed = subprocess.run(
        plan,
        cwd=settings.project,
        env=child_environment(environ),
        capture_output=True,
        check=False,
    )
    output = (completed.stdout + completed.stderr).decode("utf-8", "replace")
    added, removed = planned_installs(output)
    if completed.returncode != 0 or removed:
        emit(output)
        reason = f"would replace {', '.join(removed)}" if removed else "cannot be resolved"
        raise ConfigError(
            f"{', '.join(names)} {reason} against the project's installed packages (uv's "
            "message is above): add them to the project's test dependencies (a 'test' "
            "dependency group or extra), so the project's own resolver picks their versions."
        )
    overlay = base / "overlays" / _digest(abi or python, *added)
    if not (overlay / ".complete").is_file():
        # Built beside, then renamed into place: another testgate may be building it too.
        building = overlay.with_name(f"{overlay.name}.{os.getpid()}")
        target = [uv, "pip", "install", "-q", "--no-deps", "--python", python, "--target"]
        _run(
            [*target, str(building), *added],
            cwd=settings.project,
            environ=environ,
            what="uv pip install --target",
        )
        (building / ".complete").write_text("\n".join(added), "utf-8")
        place(building, overlay)
    return overlay, added


def place(building: Path, overlay: Path) -> None:
    """Rename a finished overlay into place, unless another testgate placed it first."""
    if overlay.is_dir() and not (overlay / ".complete").is_file():
        shutil.rmtree(overlay)  # left half-built by a testgate that was killed
    try:
        building.rename(overlay)
    except OSError:  # the other one was first: its overlay is the same
        shutil.rmtree(building, ignore_errors=True)


# pytest-cov starts coverage.py inside pytest, under the project's filterwarnings: with
# ``error`` there, a warning coverage.py gives at its start (``core = "sysmon"`` where
# sys.monitoring cannot measure branches) would stop pytest before any test. The project's
# own ``coverage run -m pytest`` starts it before pytest's filters, and only warns; so does
# testgate. A ``-W`` on the command line comes after the ini's filters, and wins.
COVERAGE_WARNINGS = ("-W", "default::coverage.exceptions.CoverageWarning")


def pytest_command(
    *,
    settings: Settings,
    env: ProjectEnv,
    cov_args: Sequence[str],
    workers: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The full command: the environment's ``python -m pytest`` with testgate's flags.

    ``workers`` overrides the setting (reruns use fewer); ``extra_args`` come last. A
    project pytest imports early runs under ``coverage run``, serially.
    """
    workers = settings.workers if workers is None else workers
    if env.early and cov_args:
        sources = [arg.removeprefix("--cov=") for arg in cov_args if arg.startswith("--cov=")]
        source = [f"--source={','.join(sources)}"] if sources else []
        command = [env.executable, "-m", "coverage", "run", "--parallel-mode", "--branch"]
        command += [*source, "-m", "pytest", "-p", PLUGIN_NAME]
        return [*command, *settings.pytest_args, *extra_args]
    command = [env.executable, "-m", "pytest", "-p", PLUGIN_NAME]
    if workers != "0":
        command += ["-n", workers, "--dist", settings.dist]
    if env.variables.get(NO_DYNAMIC_CONTEXT_ENV) and cov_args:
        command.append("--cov-context=test")
    if cov_args:  # coverage.py's own warnings are shown, never raised (COVERAGE_WARNINGS)
        command += COVERAGE_WARNINGS
    return [*command, *cov_args, *settings.pytest_args, *extra_args]
