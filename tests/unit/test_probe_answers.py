"""The probe's kept answers (runner.probe_cache): what a cache file must hold to be reused.

tests/integration/test_environment.py shows a real probe reusing its answer and probing
again after a damaged file; here every other damage, on the files alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import probe_cache


def answer(**fields: Any) -> dict[str, Any]:
    """A probe's answer, as ``environment.probe`` keeps it."""
    return {
        "python": "/env/bin/python", "platform": "linux", "found": {"pytest": "9.0"},
        "early": [], "overlay": None, "added": [], "project": None, **fields,
    }  # fmt: skip


def test_a_kept_answer_is_reused_for_its_key_only(tmp_path: Path) -> None:
    probe_cache.keep(tmp_path, "slot", "key-1", answer())
    assert probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path) == answer()
    assert probe_cache.cached(tmp_path, "slot", "key-2", project=tmp_path) is None
    assert probe_cache.cached(tmp_path, "other", "key-1", project=tmp_path) is None


@pytest.mark.parametrize(
    "damage",
    ["{not json", "[1]", '{"answers": {}}', {"answers": [1, {"key": "key-1", "python": 3}]}],
    ids=["not json", "a list", "answers not a list", "fields of another type"],
)
def test_a_damaged_cache_file_is_no_answer(tmp_path: Path, damage: str | dict[str, Any]) -> None:
    probe_cache.keep(tmp_path, "slot", "key-1", answer())
    kept = tmp_path / "probes" / "slot.json"
    kept.write_text(damage if isinstance(damage, str) else json.dumps(damage), "utf-8")
    assert probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path) is None


def test_an_answer_whose_overlay_is_gone_or_unfinished_is_no_answer(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    probe_cache.keep(tmp_path, "slot", "key-1", answer(overlay=str(overlay)))
    assert probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path) is None  # gone
    overlay.mkdir()
    assert probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path) is None  # unfinished
    (overlay / ".complete").touch()
    found = probe_cache.cached(tmp_path, "slot", "key-1", project=tmp_path)
    assert found is not None
    assert found["overlay"] == str(overlay)
