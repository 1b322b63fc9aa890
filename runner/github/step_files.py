"""The step's files: ``GITHUB_STEP_SUMMARY`` (appended Markdown), ``GITHUB_OUTPUT`` and
``GITHUB_ENV``.

Outputs and variables use the ``name<<DELIMITER`` form with a random delimiter found in
neither name nor value, so any value is safe (``write_file_command``). A variable that is
not set (off a runner) writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from runner.errors import ConfigError


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT`` (see ``write_file_command``)."""
    write_file_command(path, values)


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """Append variables for the job's later steps to ``$GITHUB_ENV`` (``write_file_command``)."""
    write_file_command(path, values)


def write_file_command(path: Path, values: Mapping[str, str]) -> None:
    """Append ``values`` (name -> value) to a runner's ``NAME=VALUE`` file, safe for any value.

    Each value goes in the ``name<<DELIMITER`` form with a random delimiter that is in
    neither the name nor the value, as ``@actions/core`` writes it: a line break in a
    value (``\\n``; ``\\r\\n`` on Windows runners) can never end it early and start a
    variable of its own, such as ``LD_PRELOAD``. Raises ConfigError, before writing
    anything, for a name the runner would read as something else (empty, or holding a
    line break, ``=`` or ``<<``).
    """
    for name in values:
        if not name or any(text in name for text in ("\n", "\r", "=", "<<")):
            raise ConfigError(
                f"{name!r} cannot be written to {path.name} as a name: the runner would read "
                "a line break, '=' or '<<' in it as the start of another entry; use letters, "
                "digits and underscores."
            )
    text = ""
    for name, value in values.items():
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        while delimiter in name or delimiter in value:  # drawn again, as @actions/core fails
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        text += f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
    with path.open("a", encoding="utf-8", newline="") as out:  # each line end as it is
        out.write(text)


def append_summary(environ: Mapping[str, str], markdown: str) -> None:
    """Add to the job summary, when the step has one (``GITHUB_STEP_SUMMARY``)."""
    summary_file = environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with Path(summary_file).open("a", encoding="utf-8") as out:
            out.write(markdown)


def set_outputs(environ: Mapping[str, str], values: Mapping[str, str]) -> None:
    """Set step outputs, when the step has them (``GITHUB_OUTPUT``)."""
    output_file = environ.get("GITHUB_OUTPUT")
    if output_file:
        write_outputs(Path(output_file), values)
