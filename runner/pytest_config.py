"""The file pytest takes its configuration from, found the way pytest finds it.

pytest reads one file, the first that counts, looking in the folder of the paths it is
given (else the working directory: the project) and then in each parent: ``pytest.toml``,
``.pytest.toml``, ``pytest.ini`` and ``.pytest.ini`` always count; ``pyproject.toml``
only with ``[tool.pytest]`` or ``[tool.pytest.ini_options]``; ``tox.ini`` only with
``[pytest]``; ``setup.cfg`` only with ``[tool:pytest]``. ``-c FILE`` / ``--config-file``
names the file instead. (See ``_pytest/config/findpaths.py``, pytest 9.)

Everything testgate reads of pytest's configuration (``addopts``, ``testpaths``) comes
from here, so that testgate never judges a run by a file pytest ignored.
"""

from __future__ import annotations

import configparser
import itertools
import os
import shlex
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

Values: TypeAlias = Mapping[str, object]


@dataclass(frozen=True, kw_only=True)
class PytestConfig:
    """pytest's configuration file (None: it has none) and the options set in it."""

    path: Path | None
    values: Values = field(default_factory=dict)

    def args(self, name: str) -> list[str]:
        """An option of pytest's ``args`` kind (``addopts``, ``testpaths``) as its words:
        a string is split as a shell splits it, a list's items are the words; [] when unset."""
        value = self.values.get(name)
        if isinstance(value, str):
            return _words(value)
        if isinstance(value, list):
            return [str(item) for item in value]
        return []

    def where(self, project: Path) -> str:
        """The file's name for a message: relative to the project when inside it."""
        if self.path is None:
            return "no pytest configuration file"
        try:
            return self.path.relative_to(project).as_posix()
        except ValueError:
            return str(self.path)


ADDOPTS_ENV = "PYTEST_ADDOPTS"


def added_options(
    project: Path, *, pytest_args: Sequence[str], environ: Mapping[str, str]
) -> list[tuple[str, list[str]]]:
    """The options pytest adds before its command line, where each comes from, in pytest's
    order (a later one wins): the config file's ``addopts``, then ``PYTEST_ADDOPTS`` (whose
    ``-c`` may name that file)."""
    from_env = _words(environ.get(ADDOPTS_ENV, ""))
    config = find_config(project, pytest_args=[*from_env, *pytest_args])
    return [(config.where(project), config.args("addopts")), (ADDOPTS_ENV, from_env)]


PLUGIN_NAMES = {  # a plugin testgate relies on, by the names ``-p no:NAME`` blocks it by
    "xdist": ("xdist", "pytest_xdist", "xdist.plugin"),
    "cov": ("cov", "pytest_cov", "pytest_cov.plugin"),
    "randomly": ("randomly", "pytest_randomly"),
}


def switched_off(
    project: Path, *, pytest_args: Sequence[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """The plugins testgate relies on that pytest's options switch off (``-p no:xdist``,
    ``-pno:cov``), each with where the first such option is (``pyproject.toml's
    addopts``, ``PYTEST_ADDOPTS``, ``pytest-args``): pytest then refuses the options that
    plugin adds (``-n``, ``--cov``, ``--randomly-seed``)."""
    sources = [*added_options(project, pytest_args=pytest_args, environ=environ)]
    found: dict[str, str] = {}
    for where, words in [*sources, ("pytest-args", list(pytest_args))]:
        said = where if where in (ADDOPTS_ENV, "pytest-args") else f"{where}'s addopts"
        for name in _blocked(words):
            for plugin, names in PLUGIN_NAMES.items():
                if name in names:
                    found.setdefault(plugin, said)
    return found


def _blocked(words: Sequence[str]) -> Iterator[str]:
    """The plugin names ``-p no:NAME`` (or ``-pno:NAME``) blocks in ``words``."""
    for index, word in enumerate(words):
        if word == "-p":
            value = words[index + 1] if index + 1 < len(words) else ""
        elif word.startswith("-p"):
            value = word[2:]
        else:
            continue
        if value.startswith("no:"):
            yield value[3:]


def warning_filters(
    project: Path, *, pytest_args: Sequence[str], environ: Mapping[str, str]
) -> list[str]:
    """The warning filters pytest applies while it configures, before any plugin's
    ``pytest_load_initial_conftests`` (where pytest-cov starts): the configuration's
    ``filterwarnings`` and each ``-W``/``--pythonwarnings`` of ``addopts``,
    ``PYTEST_ADDOPTS`` and the command line. A filter's category
    (``ignore::mypkg.errors.MyWarning``) is imported then, its module before coverage."""
    from_env = _words(environ.get(ADDOPTS_ENV, ""))
    config = find_config(project, pytest_args=[*from_env, *pytest_args])
    value = config.values.get("filterwarnings")
    if isinstance(value, str):
        filters = value.splitlines()
    else:
        filters = [str(item) for item in value] if isinstance(value, list) else []
    words = [*config.args("addopts"), *from_env, *pytest_args]
    for word, following in itertools.pairwise([*words, ""]):
        if word in ("-W", "--pythonwarnings"):
            filters.append(following)
        elif word.startswith(("-W", "--pythonwarnings=")):
            filters.append(word.removeprefix("--pythonwarnings=").removeprefix("-W"))
    return [line.strip() for line in filters if line.strip()]


def _words(text: str) -> list[str]:
    """``text`` split as a shell would, as pytest splits it; [] where pytest would refuse it
    (an unclosed quote)."""
    try:
        return shlex.split(text)
    except ValueError:
        return []


def find_config(project: Path, *, pytest_args: Sequence[str] = ()) -> PytestConfig:
    """The configuration pytest, run in ``project`` with ``pytest_args``, would read."""
    named = _named_config(pytest_args)
    if named is not None:
        path = project / named
        if not path.is_file():  # pytest refuses a missing one; /dev/null asks for none
            return PytestConfig(path=path)
        loader = _BY_NAME.get(path.name) or _BY_SUFFIX.get(path.suffix)
        values = _load(loader, path) if loader is not None else None
        return PytestConfig(path=path, values=values or {})
    start = _common_ancestor(project, pytest_args)
    for folder in (start, *start.parents):
        for name, loader in _BY_NAME.items():
            path = folder / name
            if path.is_file():
                values = _load(loader, path)
                if values is not None:
                    return PytestConfig(path=path, values=values)
    return PytestConfig(path=None)


def _named_config(pytest_args: Sequence[str]) -> str | None:
    """The file of the last ``-c FILE`` / ``--config-file FILE`` in the arguments."""
    named: str | None = None
    for index, arg in enumerate(pytest_args):
        following = pytest_args[index + 1] if index + 1 < len(pytest_args) else None
        if arg in ("-c", "--config-file"):
            named = following
        elif arg.startswith("--config-file="):
            named = arg.partition("=")[2]
        elif arg.startswith("-c") and not arg.startswith("--"):
            named = arg[2:]
    return named


def _common_ancestor(project: Path, pytest_args: Sequence[str]) -> Path:
    """Where pytest starts looking: the deepest folder holding every existing path given
    (a file stands for its folder), else the project."""
    folders = []
    for arg in pytest_args:
        path = Path(os.path.abspath(project / arg.partition("::")[0]))
        if not arg.startswith("-") and path.exists():
            folders.append(path if path.is_dir() else path.parent)
    return Path(os.path.commonpath(folders)) if folders else Path(os.path.abspath(project))


class _Unreadable(Exception):
    """A configuration file pytest would stop at with a usage error."""


def _load(loader: Callable[[Path], Values | None], path: Path) -> Values | None:
    """The options of ``path``; None when it does not count. A file that cannot be read
    counts, with no options: pytest stops there with an error, never reads the next."""
    try:
        return loader(path)
    except _Unreadable:
        return {}


def _ini_sections(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8").removeprefix("\ufeff"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        raise _Unreadable from None
    return parser


def _toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise _Unreadable from None


def _section(path: Path, name: str) -> Values | None:
    parser = _ini_sections(path)
    return dict(parser[name]) if parser.has_section(name) else None


def _pytest_ini(path: Path) -> Values:
    return _section(path, "pytest") or {}


def _tox_ini(path: Path) -> Values | None:
    return _section(path, "pytest")


def _setup_cfg(path: Path) -> Values | None:
    found = _section(path, "tool:pytest")
    if found is None and _ini_sections(path).has_section("pytest"):
        return {}  # pytest fails: "[pytest] section in setup.cfg files is no longer supported"
    return found


def _pytest_table(document: Mapping[str, object]) -> Values | None:
    table = document.get("pytest")
    return table if isinstance(table, dict) else None


def _tool_pytest(document: Mapping[str, object]) -> Values | None:
    tool = document.get("tool")
    table = tool.get("pytest") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        return None
    native = {name: value for name, value in table.items() if name != "ini_options"}
    ini_options = table.get("ini_options")
    if native and ini_options is not None:
        return {}  # pytest fails: both [tool.pytest] and [tool.pytest.ini_options]
    if native:
        return native
    return ini_options if isinstance(ini_options, dict) else None


def _pytest_toml(path: Path) -> Values:
    return _pytest_table(_toml(path)) or {}


def _pyproject(path: Path) -> Values | None:
    return _tool_pytest(_toml(path))


def _other_toml(path: Path) -> Values | None:
    """A TOML file named by ``-c``: ``[tool.pytest]`` as in pyproject.toml, else ``[pytest]``."""
    document = _toml(path)
    tool = _tool_pytest(document)
    return tool if tool is not None else _pytest_table(document)


#: The files pytest looks for in each folder, in its order, and how each counts.
_BY_NAME: Mapping[str, Callable[[Path], Values | None]] = {
    "pytest.toml": _pytest_toml,
    ".pytest.toml": _pytest_toml,
    "pytest.ini": _pytest_ini,
    ".pytest.ini": _pytest_ini,
    "pyproject.toml": _pyproject,
    "tox.ini": _tox_ini,
    "setup.cfg": _setup_cfg,
}

#: How a file named by ``-c`` counts when its name is none of the above.
_BY_SUFFIX: Mapping[str, Callable[[Path], Values | None]] = {
    ".ini": _tox_ini,
    ".cfg": _setup_cfg,
    ".toml": _other_toml,
}


SELECTING = (
    "-k",
    "-m",
    "--deselect",
    "--ignore",
    "--ignore-glob",
    "--lf",
    "--last-failed",
    "--sw",
    "--stepwise",
)


def selects_tests(project: Path, pytest_args: Sequence[str]) -> bool:
    """Whether pytest's arguments choose some of the suite's tests: a path or node id that
    exists under ``project`` (``tests/test_a.py::test_b``), or an option that selects
    (``-k``, ``-m``, ``--deselect``, ``--ignore``, ``--lf``, ``--sw``; also as ``-kEXPR``
    or ``--opt=...``)."""
    if named_paths(project, pytest_args):
        return True
    names = [arg.split("=", 1)[0] for arg in pytest_args if arg.startswith("-")]
    return any(
        name in SELECTING or (name[:2] in ("-k", "-m") and not name.startswith("--"))
        for name in names
    )


def named_paths(project: Path, pytest_args: Sequence[str]) -> list[str]:
    """The paths and node ids among pytest's arguments that name something under
    ``project`` (``tests/unit``, ``tests/test_a.py::TestB``), as given; an argument that
    names nothing there (an option's value such as ``short``) is not one."""
    return [
        arg
        for arg in pytest_args
        if not arg.startswith("-") and (project / arg.partition("::")[0]).exists()
    ]
