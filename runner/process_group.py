"""A child process in a process group of its own, so that it can be stopped as a whole.

pytest runs under ``uv run`` with xdist's workers below it, and a test may start
processes of its own. Started in a new session (POSIX) or a new process group (Windows),
the whole tree shares one group id that testgate can signal at once: a polite interrupt
first (pytest then ends its session and records it), a kill after a short grace, and a
final sweep of whatever the tests left behind in the group once pytest has ended.

A daemon that calls ``setsid`` (or ``start_new_session``) leaves the group; it still
carries the run's marker (``MARKER_ENV``, one value per pytest process) in the
environment it inherited, which the sweep finds on Linux in ``/proc/<pid>/environ``
and kills too. Elsewhere only the group is swept; a daemon that clears its environment
escapes both.

Portable by construction: POSIX-only names (``os.killpg``, ``signal.SIGKILL``) are
looked up when called, never imported, so the module imports on every platform.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

WINDOWS = sys.platform == "win32"
MARKER_ENV = "TESTGATE_RUN_MARKER"
PROC = Path("/proc")
STARTED = "pytest-started.json"  # beside a pytest's record: who started it, its marker


def marker() -> str:
    """A new value for ``MARKER_ENV``: unique to one pytest process and everything it starts."""
    return secrets.token_hex(12)


@dataclass(frozen=True)
class Leftovers:
    """What a pytest process left running when it ended, as ``pid command`` each: in its
    process group, and outside it (``escaped``: it left the group, but carries the marker)."""

    in_group: tuple[str, ...] = ()
    escaped: tuple[str, ...] = ()


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


def sweep(child: subprocess.Popen[bytes], *, marker: str | None = None) -> Leftovers:
    """Kill what is left in the ended child's group, and every process carrying its
    ``marker`` that left the group; name each.

    A test that starts a daemon and never stops it leaves it behind; it would outlive the
    run (and, on a runner, hold the job open).
    """
    if WINDOWS:  # pragma: no cover - Windows only; taskkill /T ended the tree already
        return Leftovers()
    in_group, escaped = _scan(child.pid, marker)
    kill_signal = getattr(signal, "SIGKILL", signal.SIGTERM)
    if in_group:
        _signal_group(child.pid, kill_signal)
    for pid, _ in escaped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, kill_signal)
    return Leftovers(_names(in_group), _names(escaped))


def note_started(path: Path, *, marker: str) -> None:
    """Record that this testgate started a pytest carrying ``marker`` (``orphans``)."""
    with contextlib.suppress(OSError):  # a full disk: only the clean-up after a kill is lost
        path.write_text(json.dumps({"testgate": os.getpid(), "marker": marker}), "utf-8")


def orphans(work_dirs: Sequence[Path]) -> tuple[str, ...]:
    """Kill what the pytest processes noted in ``work_dirs`` (an earlier run's, left
    behind) still run, when the testgate that started them is gone (killed: SIGKILL, an
    OOM kill); name each. Only processes carrying that run's marker are touched, so a
    forged or stale note can kill nothing else."""
    found: list[tuple[int, str]] = []
    for note in (path for work in work_dirs for path in work.glob(f"*/{STARTED}")):
        try:
            started = json.loads(note.read_text("utf-8"))
            testgate, marker = int(started["testgate"]), str(started["marker"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (testgate != os.getpid() and _alive(testgate)) or not marker:
            continue  # its testgate still runs
        found += _scan(-1, marker)[1]
    kill_signal = getattr(signal, "SIGKILL", signal.SIGTERM)
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, kill_signal)
    return _names(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process: alive
        return True
    return True


def members(group: int) -> tuple[str, ...]:
    """``pid command`` of every live process in the group (Linux's /proc; else none named)."""
    return _names(_scan(group, None)[0])


def _scan(group: int, marker: str | None) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The live processes of the group, and those outside it whose environment holds the
    marker, each as (pid, command); none where there is no /proc."""
    wanted = f"{MARKER_ENV}={marker}".encode() if marker else None
    in_group: list[tuple[int, str]] = []
    escaped: list[tuple[int, str]] = []
    for entry in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):  # a process that ended as we looked
            fields = (entry / "stat").read_text("utf-8", "replace").rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(entry.name) == os.getpid():  # state
                continue
            if int(fields[2]) == group:  # process group
                in_group.append((int(entry.name), _command(entry)))
            elif wanted is not None and wanted in (entry / "environ").read_bytes().split(b"\0"):
                escaped.append((int(entry.name), _command(entry)))
    return in_group, escaped


def _command(entry: Path) -> str:
    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
    return command.decode("utf-8", "replace")[:200]


def _names(found: list[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(sorted(f"{pid} {command}" for pid, command in found))


def _signal_group(group: int, number: int) -> None:
    killpg = getattr(os, "killpg", None)
    if killpg is None:  # pragma: no cover - every POSIX system has killpg
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        killpg(group, number)
