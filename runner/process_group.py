"""A child process in a process group of its own, so that it can be stopped as a whole.

pytest runs under ``uv run`` with xdist's workers below it, and a test may start
processes of its own. Started in a new session (POSIX) or a new process group (Windows),
the whole tree shares one group id that testgate can signal at once: a polite interrupt
first (pytest then ends its session and records it), a kill after a short grace, and a
final sweep of whatever the tests left behind in the group once pytest has ended.

Portable by construction: POSIX-only names (``os.killpg``, ``signal.SIGKILL``) are
looked up when called, never imported, so the module imports on every platform.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

WINDOWS = sys.platform == "win32"


def start(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], piped: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new process group.

    ``piped``: its stdout and stderr together in one pipe (``child.stdout``) for the caller
    to read, rather than ours.
    """
    stdout = subprocess.PIPE if piped else None
    stderr = subprocess.STDOUT if piped else None
    if WINDOWS:  # pragma: no cover - Windows only; this machine is Linux
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        return subprocess.Popen(
            command, cwd=cwd, env=dict(env), creationflags=flags, stdout=stdout, stderr=stderr
        )
    return subprocess.Popen(
        command, cwd=cwd, env=dict(env), start_new_session=True, stdout=stdout, stderr=stderr
    )


def interrupt(child: subprocess.Popen[bytes]) -> None:
    """Ask the whole group to stop, as Ctrl-C would: pytest ends and records its session."""
    if WINDOWS:  # pragma: no cover - Windows only; this machine is Linux
        with contextlib.suppress(OSError):
            child.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))
        return
    _signal_group(child.pid, signal.SIGINT)


def kill(child: subprocess.Popen[bytes]) -> None:
    """Kill every process of the group at once."""
    if WINDOWS:  # pragma: no cover - Windows only; this machine is Linux
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(child.pid)], capture_output=True, check=False
        )
        return
    _signal_group(child.pid, getattr(signal, "SIGKILL", signal.SIGTERM))


def sweep(child: subprocess.Popen[bytes]) -> tuple[str, ...]:
    """Kill what is left in the ended child's group; name each process that was there.

    A test that starts a daemon and never stops it leaves it in the group; it would
    outlive the run (and, on a runner, hold the job open). Processes that left the group
    (``setsid``) cannot be found this way.
    """
    if WINDOWS:  # pragma: no cover - Windows only; taskkill /T ended the tree already
        return ()
    left = members(child.pid)
    if left:
        _signal_group(child.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    return left


def members(group: int) -> tuple[str, ...]:
    """``pid command`` of every live process in the group (Linux's /proc; else none named)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):  # a process that ended as we looked
            fields = (entry / "stat").read_text("utf-8", "replace").rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":  # state, ppid, process group
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                found.append(f"{entry.name} {command.decode('utf-8', 'replace')[:200]}")
    return tuple(sorted(found))


def _signal_group(group: int, number: int) -> None:
    killpg = getattr(os, "killpg", None)
    if killpg is None:  # pragma: no cover - every POSIX system has killpg
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        killpg(group, number)
