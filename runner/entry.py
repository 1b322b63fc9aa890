"""The ``testgate`` process's first lines: its signals are testgate's from the start.

Python takes a few tenths of a second to import testgate's command line (more on a busy
runner), and GitHub may cancel a job at any moment of it. With the signals' defaults a
SIGTERM then kills the process (exit 143, nothing said) and a SIGINT ends it in a
KeyboardInterrupt traceback: not the exit 3 an interrupted command has. This module
imports nothing heavy, so it takes the signals at once: one that lands before
``cli.main`` handles them is noted, and the command ends at once, before it starts
anything (exit 3). One noted after ``cli.main`` gave them back came as the command ended:
exit 3, as ``cli.ended`` says. Then the signals are ignored for the process's last
milliseconds: Python's finalization puts back the defaults of the signals it handled, and
a signal there killed a process whose work was done.

The console script and ``python -m runner`` start here; in-process callers (tests) call
``cli.main``, which leaves the signals as it found them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

NAMES = ("SIGINT", "SIGTERM", "SIGHUP")  # as runner.interrupts.SIGNALS, without its imports


def main() -> int:
    """Take the signals, then run the command line; returns its exit code."""
    noted: list[int] = []
    taken = take_signals(noted)
    from runner import cli  # noqa: PLC0415 (after the signals: this import is the slow part)

    code = cli.main(sys.argv[1:], noted=noted)
    for number in taken:
        signal.signal(number, signal.SIG_IGN)
    return finish(code, noted)


def take_signals(noted: list[int]) -> list[int]:
    """From now on SIGINT, SIGTERM and SIGHUP (not under nohup, and those the platform has)
    are appended to ``noted`` as they arrive; returns the signals taken."""

    def note(number: int, frame: FrameType | None) -> None:
        noted.append(number)

    taken = []
    for name in NAMES:
        number = getattr(signal, name, None)
        if number is None or (name == "SIGHUP" and signal.getsignal(number) == signal.SIG_IGN):
            continue  # a platform without it, or started under nohup: left as it is
        signal.signal(number, note)
        taken.append(number)
    return taken


def finish(code: int, noted: Sequence[int]) -> int:
    """The command's exit code, ``code``, unless a signal was noted after ``cli.main`` gave
    the signals back (the command had ended): then 3, as ``cli.ended`` says. A command
    that was interrupted (3) has said so already."""
    from runner import cli  # noqa: PLC0415 (imported by main already)
    from runner.errors import InfraError  # noqa: PLC0415 (as cli, which imports it)

    if noted and code != InfraError.exit_code:  # noted as the command ended
        return cli.ended(code, signal.Signals(noted[-1]).name)
    return code
