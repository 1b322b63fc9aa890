"""Coverage through coverage.py's own API: which sources to measure, combine, report.

The numbers testgate gates on are the numbers coverage.py reports for the same data:
the combined data file is written as ``.coverage``, ``coverage.xml`` and ``coverage.json``
are written by coverage.py itself, and the totals are read back from that JSON. The
user's coverage configuration (exclusions, omit, paths, precision) applies throughout.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import owned_dir
from runner.errors import ConfigError, InfraError
from runner.parallelism import SKIPPED_DIRS
from runner.results import CoverageSummary, FileCoverage

JSON_LIMIT_BYTES = 512 * 1024 * 1024
WORST_FILES = 5
NOT_SOURCE = frozenset({"tests", "test", "testing", "docs", "doc", "examples", "benchmarks"})

# coverage.py is imported where it is used: a merge of JUnit files alone, or a run of
# the services commands, does not pay its import (about 35 ms).
if TYPE_CHECKING:
    import coverage


@contextlib.contextmanager
def in_directory(path: Path) -> Iterator[None]:
    """coverage.py resolves its config and relative paths from the working directory."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


WHOLE_FOLDER = "--cov=."  # infer_sources found no code of the project's own


def whole_folder_warning(cov_args: tuple[str, ...], *, gated: bool) -> str | None:
    """What to tell a user whose coverage gates (``gated``: a line or branch threshold
    above 0) would judge the whole project folder, tests and all, because neither its
    config names its code nor a package, module or ``src/`` was found beside its tests
    (``infer_sources``): its percentages say how much of the tests ran."""
    if WHOLE_FOLDER not in cov_args or not gated:
        return None
    return (
        "coverage measures the whole project folder, its tests too: no code of its own was "
        "found outside them (no src/, package or module, and no [tool.coverage.run] source); "
        "name the code with [tool.coverage.run] source"
    )


def _configured(project: Path) -> coverage.Coverage:
    import coverage  # noqa: PLC0415 (lazy, see top)
    from coverage.exceptions import CoverageException  # noqa: PLC0415 (lazy, see top)

    with in_directory(project):
        try:
            return coverage.Coverage(data_file=None, config_file=True)
        except CoverageException as error:
            raise ConfigError(f"the project's coverage configuration is invalid: {error}") from None


def project_data_files(project: Path) -> dict[Path, int]:
    """The parallel data files beside the data file the project's coverage configuration
    names (``[run] data_file``, default ``.coverage``: ``.coverage.*``, where ``coverage
    combine`` finds them), each with its modification time in nanoseconds.

    testgate's pytest writes its data where ``COVERAGE_FILE`` says; a process a test starts
    with an environment of its own (``env={"COVERAGE_PROCESS_START": "pyproject.toml"}``)
    keeps none of it, and coverage.py, started there by the project's configuration, writes
    its data here: ``coverage run -m pytest`` and ``coverage combine`` count it, so the run
    counts it too (``runner.attempts`` takes the files that appear during an attempt). The
    configuration is read as such a process reads it, without this process's
    ``COVERAGE_FILE``. Only a configuration that names what to measure (``source``,
    ``source_pkgs``, ``include``: what testgate's pytest measures too) has such files counted;
    one coverage.py cannot read names none.
    """
    from coverage.config import CoverageConfig, config_files_to_try  # noqa: PLC0415 (lazy)
    from coverage.exceptions import CoverageException  # noqa: PLC0415 (lazy, see top)

    config = CoverageConfig()
    with in_directory(project):
        try:
            for name, ours, _ in config_files_to_try(True):
                if config.from_file(name, warn=lambda _message: None, our_file=ours):
                    break
        except CoverageException:
            return {}
    if not (config.source or config.source_pkgs or config.run_include):
        return {}  # the process measured all it ran, not what testgate measures
    data_file = project / config.data_file
    found: dict[Path, int] = {}
    for path in data_file.parent.glob(f"{glob.escape(data_file.name)}.*"):  # none: no folder
        status = path.lstat()
        if stat.S_ISREG(status.st_mode):  # a link is no data file a process wrote
            found[path] = status.st_mtime_ns
    return found


def measures_branches(data_file: Path) -> bool:
    """Whether a data file holds branch data (testgate's run measures branches: a file of
    lines only cannot be combined with its data); False for one coverage.py cannot read."""
    from coverage import CoverageData  # noqa: PLC0415 (lazy, see top)
    from coverage.exceptions import CoverageException  # noqa: PLC0415 (lazy, see top)

    data = CoverageData(str(data_file))
    try:
        data.read()
    except CoverageException:
        return False
    return data.has_arcs()


def cov_arguments(project: Path, *, package: str | None = None) -> tuple[str, ...]:
    """pytest-cov arguments that measure the project's sources, with branches.

    The user's ``[run] source``/``source_pkgs``/``include`` win; without them testgate
    measures ``src/`` in a src layout, else the top-level packages that are not tests.
    """
    config = _configured(project).config
    base = ("--cov-branch", "--cov-report=", "--cov-fail-under=0")
    if config.source or config.source_pkgs or config.run_include:
        return ("--cov", *base)
    return (*(f"--cov={source}" for source in infer_sources(project, package=package)), *base)


def infer_sources(project: Path, *, package: str | None = None) -> tuple[str, ...]:
    """Where a project's code lives, when its config does not say; never its tests.

    A uv workspace: each member's sources. Else ``src/`` in a src layout; else the
    top-level packages, namespace packages included (a folder without ``__init__.py``
    that holds packages); else the top-level modules that are not tests; else ``.``.
    """
    members = workspace_members(project, package=package)
    if members:
        return tuple(
            (member / source).relative_to(project).as_posix()
            for member in members
            for source in infer_sources(member)
        )
    if (project / "src").is_dir():
        return ("src",)
    candidates = sorted(
        entry
        for entry in project.iterdir()
        if entry.name not in NOT_SOURCE | NOT_NAMESPACE
        and entry.name.isidentifier()
        and not entry.name.startswith(("test_", "_"))
    )
    packages = tuple(
        entry.name
        for entry in candidates
        if entry.is_dir()
        and (
            (entry / "__init__.py").is_file()
            or (entry.name not in NOT_NAMESPACE and _holds_packages(entry))
        )
    )
    modules = tuple(
        entry.stem
        for entry in project.glob("*.py")
        if entry.stem.isidentifier()
        and entry.stem not in NOT_MODULES
        and not entry.stem.startswith(("test_", "_"))
        and not entry.stem.endswith("_test")
    )
    return packages + tuple(sorted(modules)) or (".",)


NOT_NAMESPACE = frozenset({"build", "dist", "venv", "env", "node_modules", "htmlcov"})
NOT_MODULES = frozenset({"conftest", "setup", "noxfile", "fabfile", "manage", "tasks"})


def _holds_packages(folder: Path) -> bool:
    """A namespace package: no ``__init__.py`` of its own, a package inside (at any depth)."""
    return any(
        init.parent != folder
        and all(part.isidentifier() for part in init.relative_to(folder).parts[:-1])
        for init in folder.rglob("__init__.py")
    )


def workspace_members(project: Path, *, package: str | None = None) -> tuple[Path, ...]:
    """The member folders of a uv workspace rooted at ``project`` (none when it is not one);
    with ``package``, only the member of that name."""
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ()
    workspace = data.get("tool", {}).get("uv", {}).get("workspace", {})
    excluded = {path for pattern in workspace.get("exclude", []) for path in project.glob(pattern)}
    return tuple(
        path
        for pattern in workspace.get("members", [])
        for path in sorted(project.glob(pattern))
        if path not in excluded
        and (path / "pyproject.toml").is_file()
        and path != project
        and (package is None or project_name(path) == package)
    )


def project_name(member: Path) -> str | None:
    """The distribution name a folder's project declares: ``[project] name`` in its
    pyproject.toml, else setuptools' ``[metadata] name`` in setup.cfg, else a literal
    ``name="..."`` in setup.py's ``setup()`` call; None when none of them says it.

    A pytest plugin's own project (pytest-timeout's has setup.cfg metadata) is imported by
    pytest before any plugin starts: its name is how testgate knows to measure it from the
    process start (``coverage run``).
    """
    try:
        data = tomllib.loads((member / "pyproject.toml").read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        data = {}
    name = data.get("project", {}).get("name")
    if name is not None:
        return str(name)
    return setup_cfg_name(member) or _setup_py_name(member / "setup.py")


def setup_cfg_name(project: Path) -> str | None:
    """``[metadata] name`` from the project's setup.cfg, when it has one (None for a
    setup.cfg of tool settings only, or one setuptools would refuse too)."""
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string((project / "setup.cfg").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    return config.get("metadata", "name", fallback="").strip() or None


def _setup_py_name(path: Path) -> str | None:
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    names = [
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "setup"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
    ]
    return next((name for name in names if isinstance(name, str) and name), None)


class CoverageNotReported(InfraError):
    """coverage.py could not combine or report the data (a plugin it could not load, a data
    file it cannot read, a measured file that is gone): the run's tests still stand, and its
    reports say why coverage is missing."""


# Asked of the project's Python: the folders its packages come from, not its standard
# library (-I: neither PYTHONPATH nor the user's site-packages, only what is installed).
_PACKAGE_PATHS = (
    "import json, sys, sysconfig; std = {sysconfig.get_path(n) for n in ('stdlib', "
    "'platstdlib')}; print(json.dumps([p for p in sys.path if p and p not in std and not "
    "p.endswith(('.zip', 'lib-dynload'))]))"
)


def package_paths(python: str) -> list[str]:
    """Where the project's environment (its ``python``) imports installed packages from."""
    try:
        completed = subprocess.run(
            [python, "-I", "-c", _PACKAGE_PATHS], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return []  # then the plugin is looked for in testgate's own environment alone
    return [str(path) for path in json.loads(completed.stdout)]


@contextlib.contextmanager
def project_plugins(plugins: Sequence[str], *, python: str | None) -> Iterator[None]:
    """Let coverage.py import the coverage plugins the project's config names (``[run]
    plugins``, such as covdefaults) from the project's environment, where pytest-cov found
    them: its package folders are appended to ``sys.path`` while coverage.py loads them, and
    taken off again. Appended, never prepended: a package testgate has (coverage.py itself
    above all) stays testgate's own; only a module testgate lacks comes from the project.
    """
    added = [
        path
        for path in (package_paths(python) if plugins and python else [])
        if path not in sys.path
    ]
    sys.path.extend(added)
    try:
        yield
    except ImportError as error:
        fix = (
            "It is not installed in the project's environment: add it to the project's test "
            "dependencies"
            if python
            else "It is not installed beside testgate, which combines without the project's "
            "environment here: install it with testgate"
        )
        raise CoverageNotReported(
            f"coverage.py could not load the coverage plugin {error.name or error} that the "
            f"project's coverage configuration names ([run] plugins = {', '.join(plugins)}): "
            f"{error}. {fix}, or remove it from [run] plugins."
        ) from None
    finally:
        for path in added:
            sys.path.remove(path)


def combine_and_report(
    *,
    project: Path,
    data_files: Sequence[Path],
    reports_dir: Path,
    other_roots: Sequence[str] = (),
    python: str | None = None,
) -> CoverageSummary | None:
    """Combine data files into ``.coverage`` and write the XML and JSON reports.

    ``other_roots`` are the project roots the data files were measured in on other
    machines (matrix shards, other OSes): they are remapped onto this project, as a
    ``[paths]`` entry would, next to the project's own ``[paths]``. The data keeps the
    absolute paths coverage.py records, so coverage.py's own commands read it as is.
    Returns None when nothing was measured (no data file, or no measured file ran).
    ``python`` is the project's environment, where the coverage plugins its config names
    are found (``project_plugins``); raises ``CoverageNotReported`` when one is not.
    """
    names = (".coverage", "coverage.xml", "coverage.json")
    for name in names:
        (reports_dir / name).unlink(missing_ok=True)
    present = [str(path) for path in data_files if path.is_file()]
    if not present:
        return None
    # coverage.py writes into a fresh dir of testgate's, then each file is renamed into
    # place: a link at a report's name is replaced, never followed (see runner.owned_dir).
    try:
        work = owned_dir.scratch(reports_dir)
    except OSError as error:
        raise _unwritten(reports_dir, error) from None
    try:
        precision = _combine_and_report(
            project=project, present=present, work=work, other_roots=other_roots, python=python
        )
        for name in names:
            if (work / name).is_file():
                os.replace(work / name, reports_dir / name)  # a link there is replaced
    except OSError as error:  # a full disk: the tests' results still stand
        raise _unwritten(reports_dir, error) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if precision is None:
        return None
    return read_summary(reports_dir / "coverage.json", precision=precision)


def _unwritten(reports_dir: Path, error: OSError) -> CoverageNotReported:
    return CoverageNotReported(
        f"coverage.py could not write the combined data or its reports in {reports_dir}: "
        f"{owned_dir.describe(error)}"
    )


def _combine_and_report(
    *,
    project: Path,
    present: Sequence[str],
    work: Path,
    other_roots: Sequence[str],
    python: str | None,
) -> int | None:
    """Combine into ``work/.coverage``, report XML and JSON there; the precision, or None."""
    target = work / ".coverage"
    import coverage  # noqa: PLC0415 (lazy, see top)
    from coverage.exceptions import (  # noqa: PLC0415 (lazy, see top)
        CoverageException,
        NoDataError,
        NoSource,
    )

    with in_directory(project):
        cov = coverage.Coverage(data_file=str(target), config_file=True)
        # Combining measures nothing: coverage.py would warn here that [run] source was
        # never imported (unmeasured_sources says so, where users look) or nothing collected
        disabled = cov.get_option("run:disable_warnings")
        quiet = ["module-not-imported", "module-not-measured", "no-data-collected"]
        cov.set_option(
            "run:disable_warnings", (disabled if isinstance(disabled, list) else []) + quiet
        )
        _parse_each_file_once(cov)
        elsewhere = sorted(set(other_roots) - {str(project)})
        if elsewhere:
            cov.set_option(
                "paths", {**cov.config.paths, "testgate-runs": [str(project), *elsewhere]}
            )
        # combine loads the plugins; a plugin's file reporter may import more as it reports
        with project_plugins(cov.config.plugins, python=python):
            try:
                cov.combine(present, strict=True, keep=True)
            except CoverageException as error:
                raise CoverageNotReported(
                    f"coverage.py could not read the data files {', '.join(present)}: {error}"
                ) from None
            cov.save()
            try:
                cov.xml_report(outfile=str(work / "coverage.xml"))
                cov.json_report(outfile=str(work / "coverage.json"))
            except NoDataError:
                return None
            except NoSource as error:  # a file the tests measured, then removed
                raise CoverageNotReported(
                    f"coverage.py could not report the data: {str(error).rstrip('.')}. A file "
                    "measured during "
                    "the run is gone: keep it, leave it out with [run] omit, or let coverage.py "
                    "skip it with [report] ignore_errors = true."
                ) from None
            except CoverageException as error:
                raise CoverageNotReported(
                    f"coverage.py could not report the data: {error}"
                ) from None
        precision: int = cov.config.precision
    return precision


def _parse_each_file_once(cov: coverage.Coverage) -> None:
    """Let the XML and the JSON report share each file's parse.

    coverage.py makes a new FileReporter for every file in every report, and each one
    parses the source again; the two reports of one combined data file need one per file.
    That halves the JSON report's time (testgate's own 9,000 statements: 2.09 s of CPU for
    both reports, 1.38 s so), and the reports are the same bytes. Only Python files share
    theirs: coverage.py reports no other file, and one it failed to parse is not reusable.
    A coverage.py without ``_get_file_reporter`` (a private method) reports as before.
    """
    make = getattr(cov, "_get_file_reporter", None)
    if make is None:  # pragma: no cover - coverage.py has had it since 4.0
        return
    made: dict[object, object] = {}

    def once(morf: object) -> object:
        # A measured file that is not Python (a template compiled under its own name) fails
        # to parse in the first report and leaves its reporter half-built: a fresh one each.
        if not str(morf).endswith((".py", ".pyw")):
            return make(morf)
        if morf not in made:
            made[morf] = make(morf)
        return made[morf]

    cov._get_file_reporter = once  # type: ignore[method-assign,assignment]


def read_report(path: Path) -> dict[str, Any]:
    """A coverage.py JSON report, read as untrusted input (bounded, checked)."""
    try:
        if path.stat().st_size > JSON_LIMIT_BYTES:
            raise InfraError(f"{path} is larger than {JSON_LIMIT_BYTES} bytes; not read.")
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report.get("totals"), dict) or not isinstance(report.get("files"), dict):
            raise ValueError("no 'totals' and 'files' tables")
        return report
    except (OSError, ValueError) as error:
        raise InfraError(f"{path} is not a readable coverage.py JSON report ({error}).") from None


def read_summary(path: Path, *, precision: int) -> CoverageSummary:
    """The totals of a coverage.py JSON report (format 3, coverage 7.12 or later)."""
    report = read_report(path)
    totals: dict[str, Any] = report["totals"]
    try:
        return CoverageSummary(
            worst_files=worst_files(report["files"]),
            line_percent=float(totals["percent_statements_covered"]),
            branch_percent=float(totals.get("percent_branches_covered", 100.0)),
            covered_lines=int(totals["covered_lines"]),
            num_statements=int(totals["num_statements"]),
            covered_branches=int(totals.get("covered_branches", 0)),
            num_branches=int(totals.get("num_branches", 0)),
            precision=precision,
            branch_data="num_branches" in totals,  # coverage.py gives none without arcs
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InfraError(f"{path} is not a readable coverage.py JSON report ({error}).") from None


def worst_files(files: dict[str, Any], count: int = WORST_FILES) -> tuple[FileCoverage, ...]:
    """The least covered files (line and branch percent), those below 100 % only.

    Ordered by the numbers the summary shows: line coverage, then branch coverage.
    """
    scored = []
    for path, entry in files.items():
        summary = entry["summary"]
        line = float(summary["percent_statements_covered"])
        branch = float(summary.get("percent_branches_covered", 100.0))
        if min(line, branch) < 100:
            scored.append((line, branch, path))
    return tuple(
        FileCoverage(path=path, line_percent=line, branch_percent=branch)
        for line, branch, path in sorted(scored)[:count]
    )


def unmeasured_sources(project: Path, data_file: Path) -> tuple[tuple[str, str], ...]:
    """The packages the project's coverage configuration names (``[run] source`` entries
    that name no directory, which coverage.py takes for packages, and ``source_pkgs``)
    under which the combined data holds no file, each with its key (``source``,
    ``source_pkgs``): coverage.py's ``module-not-imported`` and ``module-not-measured``,
    said in each measuring process's output, or in none (xdist's workers and controller do
    not say it).

    A file belongs to ``a.b`` when ``a/b`` is a folder on its path, or ``a/b.py`` the file;
    paths inside the project are read from the project down.
    """
    from coverage import CoverageData  # noqa: PLC0415 (lazy, see top)

    config = _configured(project).config
    named = [("source", e) for e in config.source or () if not (project / e).is_dir()]
    packages = [*named, *(("source_pkgs", entry) for entry in config.source_pkgs or ())]
    if not packages or not data_file.is_file():
        return ()
    data = CoverageData(str(data_file))
    data.read()
    measured = []
    for name in data.measured_files():
        path = Path(name)
        if path.is_relative_to(project):
            path = path.relative_to(project)
        measured.append([*path.parent.parts, path.stem])
    return tuple(
        dict.fromkeys(
            (key, package)
            for key, package in packages
            if not any(_holds(parts, package.split(".")) for parts in measured)
        )
    )


def _holds(parts: Sequence[str], package: Sequence[str]) -> bool:
    """Whether ``package``'s names are a run of ``parts`` (a measured file's folders and stem)."""
    width = len(package)
    return any(list(parts[at : at + width]) == list(package) for at in range(len(parts)))


def in_project(project: Path, package: str, *, depth: int = 4) -> bool:
    """Whether the project holds a package or module of that dotted name: ``a/b/`` or
    ``a/b.py`` in the project's folder or a folder under it (``src/``), ``depth`` levels
    down at most, outside environments, hidden folders and caches."""
    *folders, last = package.split(".")
    relative = Path(*folders) if folders else Path()
    level = [project]
    for _ in range(depth):
        for folder in level:
            if (folder / relative / last).is_dir() or (folder / relative / f"{last}.py").is_file():
                return True
        level = [
            child
            for folder in level
            for child in sorted(folder.iterdir())
            if child.is_dir() and not child.name.startswith(".") and child.name not in SKIPPED_DIRS
            and not (child / "pyvenv.cfg").exists()
        ]  # fmt: skip
    return False


def misconfigured(project: Path, data_file: Path, *, chosen: bool) -> tuple[str | None, bool]:
    """What to tell a user whose coverage configuration names packages that measured
    nothing, and whether that makes the coverage untrue (its gates are then not judged).

    A name the project holds nowhere (a typo, a copy-paste from another project) is wrong
    whatever ran. A package of the project that no test imported leaves its code out of
    every figure: untrue too, unless pytest's arguments ``chosen`` some of the tests, when
    it is a warning.
    """
    unmeasured = unmeasured_sources(project, data_file)
    if not unmeasured:
        return None, False
    absent = [(key, name) for key, name in unmeasured if not in_project(project, name)]
    if absent:
        return _entries(absent) + (
            " names nothing in the project: no folder or module of that name is in it, and "
            "nothing of that name was measured (coverage.py: module-not-imported). Name the "
            "package as the tests import it, or its directory, or remove the entry"
        ), True
    message = _entries(unmeasured) + (
        " measured nothing: no test imported it, so none of its code counts in any "
        "coverage figure (coverage.py: module-not-imported)"
    )
    if chosen:
        return f"{message}; pytest's arguments chose some of the tests: run them all", False
    return f"{message}. Test it, or remove the entry", True


def _entries(found: Sequence[tuple[str, str]]) -> str:
    """``[tool.coverage.run] source 'a', source_pkgs 'b'``."""
    return "[tool.coverage.run] " + ", ".join(f"{key} {name!r}" for key, name in found)


def below(actual: float, threshold: float, *, precision: int) -> bool:
    """coverage.py's own ``fail_under`` rule: 100 means exactly 100, else compare rounded."""
    from coverage.results import should_fail_under  # noqa: PLC0415 (lazy, see top)

    return bool(should_fail_under(actual, threshold, precision))


def fail_under_of(project: Path) -> float:
    """``[report] fail_under`` from the project's coverage configuration (0 when unset)."""
    return float(_configured(project).config.fail_under)


def dynamic_context_of(project: Path) -> str | None:
    """``[run] dynamic_context`` from the project's coverage configuration."""
    return _configured(project).config.dynamic_context
