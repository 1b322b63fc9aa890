"""Duration-balanced partitions: tests into matrix shards, or into xdist's first queues.

Standard library only: the injected pytest plugin imports this module in the project's
environment, and testgate's runner imports it as ``runner.plugin._testgate_schedule``.

Longest processing time first: tests go, longest first, to the bin with the least total
time so far, so the slowest bin ends as close as possible to total / bins. Tests without
a recorded duration count as the median of the recorded ones. Ties break on the test id
and the bin number, so the same inputs always give the same partition.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

DEFAULT_SECONDS = 1.0


def weights(ids: Sequence[str], durations: Mapping[str, float]) -> dict[str, float]:
    """Each test's expected seconds: its recorded duration, else the median of the record."""
    known = [float(durations[test_id]) for test_id in ids if test_id in durations]
    fallback = _median(known) if known else DEFAULT_SECONDS
    return {test_id: float(durations.get(test_id, fallback)) for test_id in ids}


def _median(values: list[float]) -> float:
    """The median, as ``statistics.median`` gives it; that module (with ``fractions`` and
    ``decimal``) would cost every pytest process a few milliseconds to import."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def partition(
    ids: Sequence[str], durations: Mapping[str, float], bins: int, *, capacity: int | None = None
) -> list[list[str]]:
    """Split ``ids`` into ``bins`` lists of near-equal total duration, each longest first.

    ``capacity`` caps how many tests a bin takes (xdist's worksteal first hands each
    worker an equal count of tests, so its queues must be balanced by count too); it
    must leave room for every test (capacity * bins >= len(ids)).
    """
    weight = weights(ids, durations)
    loads = [(0.0, index) for index in range(bins)]
    parts: list[list[str]] = [[] for _ in range(bins)]
    for test_id in sorted(weight, key=lambda item: (-weight[item], item)):
        load, index = heapq.heappop(loads)
        parts[index].append(test_id)
        if capacity is None or len(parts[index]) < capacity:  # a full bin leaves the heap
            heapq.heappush(loads, (load + weight[test_id], index))
    return parts


def queue_sizes(count: int, queues: int) -> list[int]:
    """How xdist's worksteal first splits ``count`` tests: one contiguous chunk per worker,
    each ``remaining // workers left`` long."""
    sizes = []
    for index in range(queues):
        size = count // (queues - index)
        sizes.append(size)
        count -= size
    return sizes


def into_queues(units: Mapping[str, tuple[int, float]], queues: int) -> list[list[str]]:
    """Units of work (key: tests, seconds) into worksteal's first queues, each longest first.

    The queues get near-equal seconds (longest processing time first) and, as far as the
    units allow, exactly the number of tests xdist will hand each worker, so that every
    worker starts on long work and what is left to steal at the end is short.
    """
    room = queue_sizes(sum(count for count, _ in units.values()), queues)
    loads = [0.0] * queues
    parts: list[list[str]] = [[] for _ in range(queues)]
    for key in sorted(units, key=lambda item: (-units[item][1], item)):
        count, seconds = units[key]
        fitting = [index for index in range(queues) if room[index] >= count]
        chosen = min(fitting or range(queues), key=lambda index: (loads[index], -room[index]))
        parts[chosen].append(key)
        loads[chosen] += seconds
        room[chosen] -= count
    return parts
