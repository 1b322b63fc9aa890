"""Counts read as pytest's own words do: one test, two tests, never "1 errors"."""

from __future__ import annotations

from runner.plural import counted, these


def test_a_count_of_one_is_singular_and_every_other_plural() -> None:
    assert [counted(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert counted(1, "service") == "1 service"
    assert counted(3, "entry") == "3 entries"
    assert counted(2, "branch") == "2 branches"


def test_a_reference_to_counted_things_agrees_with_the_count() -> None:
    """The rerun's reason said "the first run of these 1 tests" (attrs: one failed test)."""
    assert [these(n, "test") for n in (1, 2)] == ["this test", "these 2 tests"]
