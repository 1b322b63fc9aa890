"""How a count reads: ``1 test``, ``2 tests``, ``1 error``, ``1 entry``.

Every count testgate prints (terminal, summary, annotations, gate messages) goes through
``counted``, so none reads "1 errors" or "1 service(s)". pytest's own summary words are the
model: "1 passed, 1 error", "2 errors".
"""

from __future__ import annotations

_IRREGULAR = {"entry": "entries", "branch": "branches", "process": "processes"}


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless the count is one: ``counted(2, "test")`` is
    ``2 tests``. ``noun`` is the singular; a few irregular plurals are known."""
    return f"{count} {noun if count == 1 else plural(noun)}"


def plural(noun: str) -> str:
    """The plural of a singular English noun testgate uses (``test`` → ``tests``)."""
    return _IRREGULAR.get(noun, f"{noun}s")


def these(count: int, noun: str) -> str:
    """A reference to ``count`` things already named: ``this test``, ``these 2 tests``."""
    return f"this {noun}" if count == 1 else f"these {count} {plural(noun)}"
