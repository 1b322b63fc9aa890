"""The project's schema in every worker database: its own setup command, run by testgate.

Apps that build their schema with a migration tool (``alembic upgrade head``, Django's
``migrate`` outside pytest-django, a ``schema.sql``) would otherwise get empty worker
databases. ``service-setup`` names a command per service; testgate runs it in the
project's environment with the service's variables pointing at one database, as the app
itself would read them. For PostgreSQL it runs once, against a template database, and
every worker database is created from it (``CREATE DATABASE … TEMPLATE``); for the
other kinds it runs once per worker database. A command that fails is exit 3 naming it,
with the end of its output.

A project that tests with pytest-django needs none of this: pytest-django creates and
migrates each worker's database itself, so when the environment's probe finds it,
testgate hands it the server instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InfraError

OUTPUT_LINES = 40


@dataclass(frozen=True)
class Setup:
    """How to run one service's setup command: in the project, in its environment.

    ``environ`` is the environment of the project's processes, its installed
    environment's scripts first on ``PATH`` (as ``uv run`` would have them).
    """

    command: str
    project: Path
    environ: Mapping[str, str]


def run_setup(setup: Setup, *, service: str, database: str, variables: Mapping[str, str]) -> None:
    """Run the command with ``variables`` set; an InfraError with its output when it fails."""
    completed = subprocess.run(
        ["sh", "-c", setup.command],
        cwd=setup.project,
        env={**setup.environ, **variables},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if completed.returncode != 0:
        said = completed.stdout.decode("utf-8", "replace").rstrip().splitlines()[-OUTPUT_LINES:]
        raise InfraError(
            f"{service}: the setup command {setup.command!r} failed (exit "
            f"{completed.returncode}) against database {database!r}; its output ends:\n"
            + ("\n".join("    " + line for line in said) or "    (no output)")
            + f"\nFix the command (service-setup of {service}), or run it by hand to see why."
        )
