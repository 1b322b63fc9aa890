"""SIGTERM while services run: unwind, so what testgate started is removed.

Python's default SIGTERM ends the process at once, skipping every ``finally``: the
containers and servers of ``services up`` or ``testgate run --service`` would outlive
it (a CI runner cancelling a job sends SIGTERM). While services run, SIGTERM instead
raises SystemExit(143) (128 + the signal, as a shell reports it), so the clean-up
code runs; a second SIGTERM during that clean-up is ignored (SIGKILL still ends it).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def _unwind(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def unwind_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit (only the main thread has signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
