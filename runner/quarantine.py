"""Quarantine: tests whose failures and flakes are reported but do not fail the gate.

The quarantine file lists one pytest node id per line; ``#`` starts a comment. An entry
names one test, or every case of a parametrized test or every test of a class or module
when it is a prefix of their ids (``tests/test_a.py::test_b`` covers ``test_b[1]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

LIMIT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Quarantine:
    """The entries of a quarantine file."""

    entries: tuple[str, ...] = ()

    def matches(self, test_id: str) -> bool:
        return any(_covers(entry, test_id) for entry in self.entries)

    def unmatched(self, test_ids: Iterable[str]) -> tuple[str, ...]:
        """Entries that name no test of this run: stale, or mistyped."""
        ids = list(test_ids)
        return tuple(entry for entry in self.entries if not any(_covers(entry, i) for i in ids))


def _covers(entry: str, test_id: str) -> bool:
    return test_id == entry or test_id.startswith((entry + "::", entry + "["))


def read_quarantine(path: Path | None) -> Quarantine:
    """Read a quarantine file; a missing or unreadable one is a configuration error."""
    if path is None:
        return Quarantine()
    try:
        if path.stat().st_size > LIMIT_BYTES:
            raise ConfigError(f"quarantine file {path} is over {LIMIT_BYTES} bytes.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read the quarantine file {path} ({error}); set quarantine to a file "
            "that lists one test id per line."
        ) from None
    entries = []
    for line in text.splitlines():
        entry = line.split(" #", 1)[0].strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
    return Quarantine(tuple(entries))
