"""The reports dir is testgate's own: claimed with a marker, every file in it written by rename.

A pull request controls the tree testgate runs in: it may commit a symbolic link named
like a report, make the reports dir itself a link, or a user may point ``--reports-dir``
at a folder of theirs (``.``, a package). testgate replaces and removes files in its
reports dir, so it must only ever touch files it wrote:

* ``claim`` makes a dir testgate's before anything is written: a symbolic link is refused,
  and so is a dir that holds files testgate did not write (exit 2, naming the dir and the
  fix), marker or not: a pull request can commit the marker beside a user's files. A dir
  gets the marker file ``.testgate-reports`` (for people, and for a reports dir nested in
  another, such as a shard's, which the outer one then accepts). A dir written by an
  older testgate (no marker, only the file names testgate writes) is accepted and marked,
  so upgrading needs no clean-up.
* ``open_text``/``open_binary`` write a report into a new temporary file beside its final
  name and ``os.replace`` it into place: a link at that name is replaced, never followed,
  and a reader never sees half a file. A write that fails (a full disk) names the error, say
  ``ENOSPC``, and the path; the reports written before it stay.
* ``claim(..., fresh=NAMES)`` removes an earlier run's reports of those names, and what an
  interrupted run left, only ever inside a dir it claimed.
* ``scratch`` makes a fresh work dir with a name no user file has (``.testgate-work-…``),
  so testgate's scratch files never collide with a user's and removing it removes only
  what testgate made.

Reading needs no claim: ``merge`` reads its shards' dirs as they are, marked or not; only
the dir a command writes into is claimed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from runner import interrupts
from runner.errors import ConfigError, InfraError

MARKER = ".testgate-reports"
MARKER_TEXT = (
    "testgate's reports dir: testgate replaces and removes the files in it. Do not keep "
    "your own files here, and do not commit it.\n"
)
# Every name an earlier testgate wrote into its reports dir: such a dir is accepted unmarked.
OWN_NAMES = frozenset(
    {
        MARKER,
        "results.json",
        "junit.xml",
        "junit-sonar.xml",
        "coverage.xml",
        "coverage.json",
        ".coverage",
        "durations.json",
        "summary.md",
        "flaky.json",
        ".sonar",
        "history.json.gz",
        "quarantine-suggested.txt",
    }
)
OLD_WORK_DIRS = frozenset({".testgate-work", ".testgate-flaky-work"})
# What a file manager leaves in a folder a user opened: not the user's files, never touched.
OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SCRATCH_PREFIX = ".testgate-work-"
TEMPORARY_PREFIX = ".testgate-new-"
OWN_PREFIXES = (SCRATCH_PREFIX, TEMPORARY_PREFIX)
LISTED = 5


def _owned(name: str) -> bool:
    return (
        name in OWN_NAMES
        or name in OLD_WORK_DIRS
        or name in OS_LITTER
        or name.startswith(OWN_PREFIXES)
    )


def claim(reports: Path, *, fresh: Sequence[str] = ()) -> None:
    """Make ``reports`` testgate's reports dir, or refuse it (exit 2) when it is not ours.

    ``fresh`` names the reports an earlier run left that this one writes anew: they are
    removed, and so is whatever an interrupted run left (scratch dirs, unfinished files).
    """
    if reports.is_symlink():
        raise ConfigError(
            f"the reports dir {reports} is a symbolic link: testgate writes its reports only "
            f"into a real directory of its own; remove the link or {_FIX}."
        )
    try:
        reports.mkdir(parents=True, exist_ok=True)
        _mark(reports)
        leftovers = [
            entry.name for entry in reports.iterdir() if entry.name.startswith(OWN_PREFIXES)
        ]
        for name in [*fresh, *leftovers] if fresh else ():
            _remove(reports / name)
    except OSError as error:
        raise ConfigError(f"cannot write the reports dir {reports}: {describe(error)}.") from None


_FIX = "choose another --reports-dir (the default, testgate-reports, is a dir of its own)"


def _mark(reports: Path) -> None:
    # The marker is only a file: a pull request can commit one beside the user's files. So
    # it never vouches for them: a dir is testgate's only while it holds nothing but the
    # names testgate writes, and other reports dirs (a shard's, nested in it), whose files
    # testgate never touches. An older testgate's dir (no marker) is taken over as is; its
    # old work dirs are left alone: a user's file could be in one of that name.
    foreign = sorted(
        entry.name
        for entry in os.scandir(reports)
        if not _owned(entry.name) and not _reports_dir(Path(entry.path))
    )
    if foreign:
        shown = ", ".join(foreign[:LISTED]) + (", ..." if len(foreign) > LISTED else "")
        raise ConfigError(
            f"the reports dir {reports} holds files testgate did not write ({shown}): "
            "testgate replaces and removes files in its reports dir, so it uses only a "
            f"new or empty dir, or one holding nothing but its own reports; {_FIX}."
        )
    marker = reports / MARKER
    if not marker.is_file() or marker.is_symlink():
        write_text(marker, MARKER_TEXT)


def _reports_dir(path: Path) -> bool:
    """Whether ``path`` is a real dir holding testgate's marker: a nested reports dir."""
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def release(reports: Path) -> None:
    """Take back a reports dir ``claim`` made that got no report: its marker and the dir
    go, so that a command that failed before it wrote anything leaves nothing behind. A
    dir holding anything else stays as it is."""
    try:
        if {entry.name for entry in os.scandir(reports)} == {MARKER}:
            (reports / MARKER).unlink()
            reports.rmdir()
    except OSError:  # gone already, or not ours to empty
        pass


def scratch(reports: Path) -> Path:
    """A new, empty work dir inside the reports dir, named as no user file is."""
    return Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=reports))


@contextlib.contextmanager
def claimed_scratch(
    reports: Path, *, fresh: Sequence[str], abandon: tuple[type[BaseException], ...]
) -> Iterator[Path]:
    """``claim`` the reports dir and make a ``scratch`` dir in it for the block, removed
    however the block ends; when it raises one of ``abandon`` (a signal, a failure before
    any report), a reports dir this made goes too if it holds nothing else (``release``)."""
    made = not reports.exists()
    work: Path | None = None
    try:
        with interrupts.deferred():  # a signal between the two would leave the first
            claim(reports, fresh=fresh)
            work = scratch(reports)
        yield work
    except abandon:
        _remove_scratch(work)
        if made:
            release(reports)
        raise
    finally:
        _remove_scratch(work)


def _remove_scratch(work: Path | None) -> None:
    if work is not None:  # None: the claim failed, so nothing was made
        shutil.rmtree(work, ignore_errors=True)


def without_link(path: Path) -> Path:
    """``path`` with a symbolic link there removed: another tool will write through it."""
    if path.is_symlink():
        path.unlink()
    return path


def open_text(path: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """A new UTF-8 text file that replaces ``path`` once it is whole."""
    return _open_new(path, binary=False)  # type: ignore[return-value]


def open_binary(path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A new binary file that replaces ``path`` once it is whole."""
    return _open_new(path, binary=True)  # type: ignore[return-value]


# A new file, never one that exists nor through a link at its name (O_EXCL), in binary mode
# where the platform has text mode (Windows), as tempfile opens its files.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def _open_new(path: Path, *, binary: bool) -> Iterator[IO[str] | IO[bytes]]:
    temporary = path.parent / f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}"
    try:
        # Mode 0o666 less the umask, as any tool writes its reports: tempfile.mkstemp's 0600
        # kept them from every other user (a later step's, a container's host user).
        descriptor = os.open(temporary, _NEW_FILE, 0o666)
    except OSError as error:
        raise _unwritable(path, error) from None
    try:
        with (
            os.fdopen(descriptor, "wb") if binary else os.fdopen(descriptor, "w", encoding="utf-8")
        ) as out:
            yield out
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise _unwritable(path, error) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _unwritable(path: Path, error: OSError) -> InfraError:
    return InfraError(
        f"could not write {path}: {describe(error)}; the reports written before it are kept."
    )


class Failures:
    """Reports written one after another: one that fails does not stop the rest."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Write one report; its failure is kept for ``raise_any``."""
        try:
            yield
        except InfraError as error:
            self.messages.append(error.message)

    def raise_any(self) -> None:
        """One InfraError naming every report that could not be written."""
        if self.messages:
            raise InfraError(" ".join(self.messages))


def write_text(path: Path, text: str) -> None:
    """``path`` replaced by a new file holding ``text``."""
    with open_text(path) as out:
        out.write(text)


def copy(source: Path, target: Path) -> None:
    """``target`` replaced by a new copy of ``source``."""
    with source.open("rb") as stream, open_binary(target) as out:
        shutil.copyfileobj(stream, out)


def describe(error: OSError) -> str:
    """``ENOSPC, the disk is full (No space left on device)``: the errno's name, searchable."""
    name = errno.errorcode.get(error.errno or 0, type(error).__name__)
    full = ", the disk is full" if error.errno == errno.ENOSPC else ""
    return f"{name}{full} ({error.strerror or error})"
