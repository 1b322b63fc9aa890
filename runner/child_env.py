"""The environment of every process that runs the project's code: the one cleaner.

pytest, its reruns, the flaky-detection rounds, the environment probe and a service's
``cmd:`` readiness check all run code the project controls. Their environment is the
caller's without:

* secrets (the runner's and the action's tokens);
* the runner's file commands (``GITHUB_ENV``, ``GITHUB_PATH``, ``GITHUB_OUTPUT``,
  ``GITHUB_STATE``, ``GITHUB_STEP_SUMMARY``): a test that could append to ``GITHUB_ENV``
  would set, say, ``LD_PRELOAD`` for every later step, the SonarQube upload with its token
  among them. The files' folder stays guessable on a runner, so README's "Security
  promises" tells users to keep secrets out of the job that runs a fork's tests;
* the variables of an outer pytest, coverage or virtualenv, which would confuse the inner run.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.plugin._testgate_wire import (
    ATTEMPT_VARIABLES,
    RECORD_ENV,
    SCHEDULE_ENV,
    SELECT_ENV,
    TIMEOUTS_ENV,
)

__all__ = ["RECORD_ENV", "SCHEDULE_ENV", "SELECT_ENV", "TIMEOUTS_ENV", "child_environment"]

SECRET_NAMES = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "SONAR_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "INPUT_GITHUB-TOKEN",
        "INPUT_SONAR-TOKEN",
        "TESTGATE_GITHUB_TOKEN",
        "TESTGATE_SONAR_TOKEN",
        "TESTGATE_INPUTS",  # the action's inputs as JSON, github-token and sonar-token included
    }
)
FILE_COMMANDS = frozenset(
    {"GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"}
)
LEAKY_PREFIXES = ("PYTEST_XDIST_", "COV_CORE_", "COVERAGE_")
LEAKY_NAMES = frozenset(
    {
        "VIRTUAL_ENV",
        "PYTEST_CURRENT_TEST",
        "PYTEST_VERSION",
        *ATTEMPT_VARIABLES,
    }
)


def child_environment(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment for the project's processes: no secrets, no file commands, no leftovers."""
    clean = {
        name: value
        for name, value in environ.items()
        if name not in SECRET_NAMES
        and name not in FILE_COMMANDS
        and name not in LEAKY_NAMES
        and not name.startswith(LEAKY_PREFIXES)
    }
    clean.update(extra)
    return clean
