"""The project's own stated coverage threshold, for when testgate's settings do not state one.

A project that says ``fail_under = 80`` in its coverage configuration, or
``--cov-fail-under=80`` in pytest's ``addopts``, is gated at that line coverage, with a
notice saying where the number came from; an explicit testgate setting still wins.
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import replace
from pathlib import Path

from runner.coverage_data import fail_under_of
from runner.environment import read_pyproject
from runner.output import emit
from runner.settings import Settings

_COV_FAIL_UNDER = re.compile(r"^--cov-fail-under(?:=(.+))?$")


def with_stated_threshold(settings: Settings) -> Settings:
    """``settings`` with the project's stated line threshold, unless testgate was told one."""
    if "fail-under-line" in settings.explicit:
        return settings
    stated = stated_threshold(settings.project)
    if stated is None:
        return settings
    value, where = stated
    emit(f"testgate: line coverage threshold {value:g} % from {where}\n")
    return replace(settings, fail_under_line=value)


def stated_threshold(project: Path) -> tuple[float, str] | None:
    """The line threshold the project states, and where; ``None`` when it states none."""
    fail_under = fail_under_of(project)  # first: a bad coverage config is a clear error
    for where, addopts in _addopts(project):
        words = shlex.split(addopts)
        for index, word in enumerate(words):
            found = _COV_FAIL_UNDER.match(word)
            if found is None:
                continue
            value = found.group(1) or (words[index + 1] if index + 1 < len(words) else "")
            try:
                return float(value), f"--cov-fail-under in the addopts of {where}"
            except ValueError:
                continue
    if fail_under:
        return fail_under, "fail_under in the project's coverage configuration"
    return None


def _addopts(project: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    tool = read_pyproject(project).get("tool", {})
    if tool:
        for table in (tool.get("pytest", {}), tool.get("pytest", {}).get("ini_options", {})):
            value = table.get("addopts") if isinstance(table, dict) else None
            if isinstance(value, list):
                value = shlex.join(str(item) for item in value)
            if isinstance(value, str):
                found.append(("pyproject.toml", value))
    for name, section in (
        ("pytest.ini", "pytest"),
        ("tox.ini", "pytest"),
        ("setup.cfg", "tool:pytest"),
    ):
        path = project / name
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_option(section, "addopts"):
            found.append((name, parser.get(section, "addopts")))
    return found
