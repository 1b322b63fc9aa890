"""The project's own stated coverage threshold, for when testgate's settings do not state one.

A project that says ``fail_under = 80`` in its coverage configuration, or
``--cov-fail-under=80`` in pytest's ``addopts``, is gated at that threshold, with a notice
saying where the number came from, on the number coverage.py and pytest-cov judge it
against: coverage.py's total, statements and branches together (the ``line-coverage``
gate says so). As coverage.py judges no branch figure of its own, the branch gate then has
no threshold unless ``fail-under-branch`` sets one; an explicit testgate setting wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from runner.coverage_data import fail_under_of
from runner.output import emit
from runner.pytest_config import ADDOPTS_ENV, added_options
from runner.settings import Settings

_COV_FAIL_UNDER = re.compile(r"^--cov-fail-under(?:=(.+))?$")


def with_stated_threshold(settings: Settings, *, environ: Mapping[str, str]) -> Settings:
    """``settings`` with the project's stated threshold, unless testgate was told one."""
    if "fail-under-line" in settings.explicit:
        return settings
    stated = stated_threshold(settings.project, pytest_args=settings.pytest_args, environ=environ)
    if stated is None:
        return settings
    value, where = stated
    # coverage.py's total counts the branches: no branch threshold of its own, unless set
    own_branch = "fail-under-branch" in settings.explicit
    emit(
        f"testgate: coverage threshold {value:g} % from {where}, on coverage.py's total "
        "(statements and branches), as coverage.py judges it"
        + ("" if own_branch else "; no branch threshold of its own (fail-under-branch sets one)")
        + "\n"
    )
    branch = settings.fail_under_branch if own_branch else 0.0
    return replace(settings, fail_under_line=value, fail_under_branch=branch, threshold_from=where)


def stated_threshold(
    project: Path, *, pytest_args: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> tuple[float, str] | None:
    """The threshold the project states, and where; ``None`` when it states none.

    ``--cov-fail-under`` is read as pytest-cov would take it: the last of the ``addopts``
    of the one file pytest takes its configuration from (``runner.pytest_config``) and of
    ``PYTEST_ADDOPTS``; never from a file pytest ignores.
    """
    fail_under = fail_under_of(project)  # first: a bad coverage config is a clear error
    added = added_options(project, pytest_args=pytest_args, environ=environ or {})
    for where, words in reversed(added):
        for index in reversed(range(len(words))):
            found = _COV_FAIL_UNDER.match(words[index])
            if found is None:
                continue
            value = found.group(1) or (words[index + 1] if index + 1 < len(words) else "")
            try:
                return float(value), f"--cov-fail-under in {_addopts_of(where)}"
            except ValueError:
                continue
    if fail_under:
        return fail_under, "fail_under in the project's coverage configuration"
    return None


def _addopts_of(where: str) -> str:
    return where if where == ADDOPTS_ENV else f"the addopts of {where}"
