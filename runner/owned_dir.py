"""The reports dir is testgate's own: claimed with a marker, every file in it written by rename.

A pull request controls the tree testgate runs in: it may commit a symbolic link named
like a report, make the reports dir itself a link, or a user may point ``--reports-dir``
at a folder of theirs (``.``, a package). testgate replaces and removes files in its
reports dir, so it must only ever touch files it wrote:

* ``claim`` makes a dir testgate's before anything is written: a symbolic link is refused,
  and so is a dir that holds files testgate did not write (exit 2, naming the dir and the
  fix); a new or empty dir gets the marker file ``.testgate-reports``. A dir written by an
  older testgate (no marker, only the file names testgate writes) is accepted and marked,
  so upgrading needs no clean-up.
* ``open_text``/``open_binary`` write a report into a new temporary file beside its final name and
  ``os.replace``-s it into place: a link at that name is replaced, never followed, and a
  reader never sees half a file. A write that fails (a full disk) names the error, say
  ``ENOSPC``, and the path; the reports written before it stay.
* ``scratch`` makes a fresh work dir with a name no user file has (``.testgate-work-…``),
  so testgate's scratch files never collide with a user's and removing it removes only
  what testgate made.

Reading needs no claim: ``merge``, ``gate`` and ``sonar`` read shards' dirs as they are.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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
    }
)
OLD_WORK_DIRS = frozenset({".testgate-work", ".testgate-flaky-work"})
SCRATCH_PREFIX = ".testgate-work-"
TEMPORARY_PREFIX = ".testgate-new-"
OWN_PREFIXES = (SCRATCH_PREFIX, TEMPORARY_PREFIX)
LISTED = 5


def _owned(name: str) -> bool:
    return name in OWN_NAMES or name in OLD_WORK_DIRS or name.startswith(OWN_PREFIXES)


def claim(reports: Path) -> None:
    """Make ``reports`` testgate's reports dir, or refuse it (exit 2) when it is not ours."""
    fix = "choose another --reports-dir (the default, testgate-reports, is a dir of its own)"
    if reports.is_symlink():
        raise ConfigError(
            f"the reports dir {reports} is a symbolic link: testgate writes its reports only "
            f"into a real directory of its own; remove the link or {fix}."
        )
    try:
        reports.mkdir(parents=True, exist_ok=True)
        marker = reports / MARKER
        if marker.is_file() and not marker.is_symlink():
            return
        foreign = sorted(name for name in os.listdir(reports) if not _owned(name))
        if foreign:
            shown = ", ".join(foreign[:LISTED]) + (", ..." if len(foreign) > LISTED else "")
            raise ConfigError(
                f"the reports dir {reports} holds files testgate did not write ({shown}): "
                "testgate replaces and removes files in its reports dir, so it uses only a "
                f"new or empty dir, or one it marked with {MARKER}; {fix}."
            )
        # An older testgate's dir (only its own file names, no marker) is taken over as is.
        write_text(marker, MARKER_TEXT)
    except ConfigError:
        raise
    except OSError as error:
        raise ConfigError(f"cannot write the reports dir {reports}: {_describe(error)}.") from None


def scratch(reports: Path) -> Path:
    """A new, empty work dir inside the reports dir, named as no user file is."""
    return Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=reports))


def clear_scratch(reports: Path) -> None:
    """Remove what an interrupted run left in a claimed dir: its work dirs, its new files."""
    for stale in reports.iterdir():
        if not stale.name.startswith(OWN_PREFIXES) and stale.name not in OLD_WORK_DIRS:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def open_text(path: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """A new UTF-8 text file that replaces ``path`` once it is whole."""
    return _open_new(path, binary=False)  # type: ignore[return-value]


def open_binary(path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A new binary file that replaces ``path`` once it is whole."""
    return _open_new(path, binary=True)  # type: ignore[return-value]


@contextlib.contextmanager
def _open_new(path: Path, *, binary: bool) -> Iterator[IO[str] | IO[bytes]]:
    descriptor, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=path.parent)
    try:
        with (
            os.fdopen(descriptor, "wb") if binary else os.fdopen(descriptor, "w", encoding="utf-8")
        ) as out:
            yield out
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise InfraError(
            f"could not write {path}: {_describe(error)}; the reports written before it are kept."
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_text(path: Path, text: str) -> None:
    """``path`` replaced by a new file holding ``text``."""
    with open_text(path) as out:
        out.write(text)


def copy(source: Path, target: Path) -> None:
    """``target`` replaced by a new copy of ``source``."""
    with source.open("rb") as stream, open_binary(target) as out:
        shutil.copyfileobj(stream, out)


def move_into(source: Path, target: Path) -> None:
    """A file testgate wrote elsewhere in its dir renamed to ``target`` (a link there replaced)."""
    try:
        os.replace(source, target)
    except OSError as error:
        raise InfraError(f"could not write {target}: {_describe(error)}.") from None


def _describe(error: OSError) -> str:
    """``ENOSPC (No space left on device)``: the errno's name, which a search finds."""
    name = errno.errorcode.get(error.errno or 0, "")
    reason = error.strerror or str(error)
    if name == "ENOSPC":
        return f"ENOSPC, the disk is full ({reason})"
    return f"{name} ({reason})" if name else reason
