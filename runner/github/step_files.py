"""The step's files: ``GITHUB_STEP_SUMMARY`` (appended Markdown) and ``GITHUB_OUTPUT``.

Outputs use the ``name<<DELIMITER`` form with a random delimiter, so any value is safe.
A variable that is not set (off a runner) writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append outputs in the ``name<<DELIMITER`` form, safe for any value."""
    with path.open("a", encoding="utf-8") as out:
        for name, value in values.items():
            delimiter = f"testgate_{secrets.token_hex(8)}"
            out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


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
