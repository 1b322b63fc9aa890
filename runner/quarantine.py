"""Quarantine: tests whose failures and flakes are reported but do not fail the gate.

The quarantine file lists one pytest node id per line; ``#`` starts a comment. An entry
names one test, or every case of a parametrized test or every test of a class or module
when it is a prefix of their ids (``tests/test_a.py::test_b`` covers ``test_b[1]``).

An entry may say who owns it, which issue tracks it and when it expires, as ``key: value``
pairs in its comment, so files of plain ids keep working and old readers still see one id
a line::

    tests/test_a.py::test_b  # owner: @alice, issue: https://example.org/1, expires: 2026-12-31

An entry past its expiry date fails the ``quarantine-expiry`` gate, which names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from runner.errors import ConfigError
from runner.results import GateResult

LIMIT_BYTES = 4 * 1024 * 1024
FIELDS = ("owner", "issue", "expires")


@dataclass(frozen=True)
class Details:
    """What an entry's comment says about it: owner, issue link, expiry date."""

    owner: str | None = None
    issue: str | None = None
    expires: date | None = None


@dataclass(frozen=True)
class Quarantine:
    """The entries of a quarantine file, and the details their comments give."""

    entries: tuple[str, ...] = ()
    details: tuple[Details, ...] = ()

    def expired(self, *, today: date) -> tuple[tuple[str, Details], ...]:
        """Entries whose expiry date has passed (an entry is good through its date)."""
        return tuple(
            (entry, info)
            for entry, info in zip(self.entries, self.details, strict=False)
            if info.expires is not None and info.expires < today
        )

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
    entries, details = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        entry, _, comment = line.partition(" #")
        entry = entry.strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
            details.append(_details(comment, where=f"{path}, line {number}"))
    return Quarantine(tuple(entries), tuple(details))


def _details(comment: str, *, where: str) -> Details:
    """``owner: @a, issue: URL, expires: YYYY-MM-DD`` from a comment; other words are kept out."""
    found: dict[str, str] = {}
    for part in comment.split(","):
        key, colon, value = part.partition(":")
        if colon and key.strip().lower() in FIELDS:
            found[key.strip().lower()] = value.strip()
    expires = None
    if "expires" in found:
        try:
            expires = date.fromisoformat(found["expires"])
        except ValueError:
            raise ConfigError(
                f"{where}: expires {found['expires']!r} is not a date; write it as YYYY-MM-DD."
            ) from None
    return Details(owner=found.get("owner"), issue=found.get("issue"), expires=expires)


def expiry_gate(quarantine: Quarantine, *, today: date) -> GateResult | None:
    """The ``quarantine-expiry`` gate, when any entry carries an expiry date."""
    if not any(info.expires is not None for info in quarantine.details):
        return None
    expired = quarantine.expired(today=today)
    named = "; ".join(
        f"{entry} (expired {info.expires}"
        + (f", owner {info.owner}" if info.owner else "")
        + (f", {info.issue}" if info.issue else "")
        + ")"
        for entry, info in expired
    )
    return GateResult.judged(
        name="quarantine-expiry",
        threshold=0,
        actual=len(expired),
        passed=not expired,
        message=f"{len(expired)} quarantine entries expired: {named}; fix the tests and remove the "
        "entries, or set a later expires date"
        if expired
        else "no quarantine entry has expired",
    )
