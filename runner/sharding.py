"""Durations and shards: what the runner needs to plan a run and to merge shards.

The partition itself lives in ``runner.plugin._testgate_schedule`` because the injected
pytest plugin computes it inside every xdist worker from the same inputs; this module
reads and writes the durations record that feeds it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

from runner.plugin._testgate_schedule import partition, weights

__all__ = ["partition", "plan_of", "read_durations", "weights"]

LIMIT_BYTES = 256 * 1024 * 1024


def read_durations(path: Path) -> tuple[dict[str, float], str | None]:
    """A durations.json record, or nothing and a warning when it cannot be used.

    A missing record is normal (the first run); a malformed one is ignored, since a
    plan without durations is still a correct plan, only a less balanced one.
    """
    if not path.is_file():
        return {}, None
    try:
        if path.stat().st_size > LIMIT_BYTES:
            raise ValueError(f"over {LIMIT_BYTES} bytes")
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object of test ids and seconds")
        durations = {str(key): float(value) for key, value in data.items()}
        for test_id, seconds in durations.items():
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"{test_id!r}: {seconds} is not a duration in seconds")
        return durations, None
    except (OSError, ValueError, TypeError) as error:
        return {}, f"ignored {path}: {error}; tests are planned without durations"


def plan_of(durations: Mapping[str, float]) -> str:
    """A fingerprint of the durations a shard was planned from.

    Every shard computes the partition itself, from the same collection and these
    durations; shards planned from different durations (one job restored another
    durations.json, or none) split the suite differently, so that some tests run in two
    shards and others in none. ``testgate merge`` compares the fingerprints to say so.
    """
    canonical = json.dumps(sorted(durations.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
