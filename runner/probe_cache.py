"""The environment probe's answer, kept per environment so that later commands reuse it.

Probing the project's environment (what it has, which plugins to add, what pytest
imports early) starts its Python twice and asks uv for a plan: seconds, on every command.
The answer depends only on the environment, so it is kept in testgate's own cache
(``~/.cache/testgate/probes``), one file per environment, under a key made of everything
the answer depends on:

- testgate itself (its version and the probing code),
- the interpreter (its resolved path, size and modification time, ``sys.prefix``, version),
- what is installed: each site-packages directory's entries, with the size and time of
  each ``.pth`` file (installing, removing or upgrading a distribution changes a
  ``.dist-info`` entry, and an editable install adds a ``.pth``),
- the variables that change what Python imports (``PYTHONPATH``, ``PYTHONHOME`` …), and
  what the ``PYTHONPATH`` folders hold, as for site-packages,
- the project: its path, pyproject.toml, uv.lock and requirements files, the packages
  of its own code, and the plugins this command needs.

A changed environment gets a new key, so it is probed again; nothing is ever trusted
across a change.

The same pass makes the environment's ``fingerprint``, which each run records (in
results.json and the test history) so that a failure or a pass of an earlier run counts
as evidence of flakiness only when that run had the same environment: a run after a
dependency was removed or upgraded is no repeat of the run before. It is made of what
the environment runs the tests with, not of when it was made: the interpreter's resolved
path and version, each site directory's entries (a distribution's ``.dist-info`` names
its version), the content of each start-up file, and the import variables. The
project's own distributions are left out (a version from its VCS changes with every
commit, and the commit is compared on its own), as are the project's files and
modification times: a CI job that installs the same lock again in a fresh environment
has the same fingerprint, so a re-run attempt still compares with the one before.

Each project, interpreter and command has one file (``slot``), which a changed
environment's answer replaces, so the cache does not grow with every change. The
interpreter is asked for its site directories with ``-E -s -S`` from testgate's cache
directory: no ``.pth`` file, no project file and no variable runs. A cache file that
cannot be read or does not have the expected shape is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.child_env import child_environment
from runner.errors import InfraError

STARTUP_FILES = ("sitecustomize.py", "usercustomize.py")  # run at start, as .pth files are
IMPORT_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE")
PROJECT_FILES = ("pyproject.toml", "uv.lock", "pylock.toml")
ANSWER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "python": str,
    "platform": str,
    "found": dict,
    "early": list,
    "overlay": (str, type(None)),
    "added": list,
}
# Where the interpreter's packages are, without running site (which would run .pth files):
# a virtual environment is found by its pyvenv.cfg, as site finds it.
_SITE = """
import json, os, site, sys
here = os.path.dirname(sys.executable)
venvs = [d for d in (here, os.path.dirname(here)) if os.path.isfile(os.path.join(d, "pyvenv.cfg"))]
prefixes = venvs[:1] + [sys.prefix]
print(json.dumps([prefixes, sys.version, site.getsitepackages(prefixes),
    site.getusersitepackages()]))
"""
_CODE = hashlib.sha256(Path(__file__).with_name("environment.py").read_bytes()).hexdigest()


@dataclass(frozen=True)
class Keys:
    """What the probe of an environment is kept under, and the environment's fingerprint."""

    probe: str
    fingerprint: str


class _Digest:
    """A SHA-256 of values, each JSON-encoded and ended by a NUL."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def add(self, *values: object) -> None:
        self.hash.update(json.dumps(values, default=str).encode())
        self.hash.update(b"\0")

    def hex(self) -> str:
        return self.hash.hexdigest()[:32]


def probe_key(
    python: str,
    *,
    base: Path,
    project: Path,
    environ: Mapping[str, str],
    parts: Sequence[str],
    files: Sequence[Path] = (),
    own: Sequence[str] = (),
) -> Keys:
    """The key of this environment's probe and its fingerprint; an InfraError when the
    interpreter does not say where its packages are.

    ``base`` is testgate's cache directory; ``parts`` what else the answer depends on
    (the project's packages, the plugins needed); ``files`` the requirements files;
    ``own`` the names of the project's own distributions, which the fingerprint leaves out.
    """
    base.mkdir(parents=True, exist_ok=True)
    try:
        completed = subprocess.run(
            [python, "-E", "-s", "-S", "-c", _SITE],
            cwd=base,
            env=child_environment(environ),
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InfraError(
            f"the project's Python {python} could not be started ({error}): name a Python "
            "interpreter with --python, or let testgate make the environment."
        ) from None
    try:
        prefix, version, site_dirs, user_site = json.loads(completed.stdout)
    except (ValueError, TypeError):
        raise InfraError(
            f"the project's Python {python} did not answer testgate's probe (exit "
            f"{completed.returncode}): {completed.stdout[-500:]!r}; is it a Python interpreter?"
        ) from None
    key, fingerprint = _Digest(), _Digest()
    real = Path(python).resolve()
    stat = real.stat()
    key.add(__version__, _CODE, str(real), stat.st_size, stat.st_mtime_ns, prefix, version)
    fingerprint.add(str(real), prefix, version)
    python_path = [part for part in environ.get("PYTHONPATH", "").split(os.pathsep) if part]
    owned = tuple(_normal(name) for name in own)
    for folder in [*site_dirs, user_site, *python_path]:
        probed, held = _installed(Path(str(folder)), own=owned)
        key.add(folder, *probed)
        fingerprint.add(folder, *held)
    variables = [f"{name}={environ.get(name)}" for name in IMPORT_VARIABLES]
    key.add(*variables)
    fingerprint.add(*variables)
    key.add(str(project.resolve()), *parts)
    for path in [*(project / name for name in PROJECT_FILES), *files]:
        key.add(str(path), _content(path))
    return Keys(probe=key.hex(), fingerprint=fingerprint.hex())


def _installed(folder: Path, *, own: Sequence[str] = ()) -> tuple[list[object], list[object]]:
    """What a site directory (or a PYTHONPATH entry) holds, for the probe's key and for
    the fingerprint: its entries, with the size and time (the key) or the content (the
    fingerprint) of each file that runs at start-up (.pth, sitecustomize); the
    fingerprint without the entries of the project's own distributions (``own``)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return ["absent"], ["absent"]
    probed: list[object] = []
    held: list[object] = []
    for entry in entries:
        if entry.name == "__pycache__":  # made by the first import, not by an install
            continue
        probed.append(entry.name)
        startup = entry.name.endswith(".pth") or entry.name in STARTUP_FILES
        if startup:
            stat = entry.stat()
            probed += [stat.st_size, stat.st_mtime_ns]
        if _owned(entry.name, own):
            continue
        held.append(entry.name)
        if startup:
            held.append(_content(Path(entry.path)))
    return probed, held


def _normal(name: str) -> str:
    """A distribution's name as its files spell it: lower case, runs of ``-_.`` as ``_``."""
    return "_".join(part for part in re.split(r"[-_.]+", name.lower()) if part)


def _owned(entry: str, own: Sequence[str]) -> bool:
    """Whether a site directory's entry is a file of one of the project's own
    distributions (``own``, normalized): its ``NAME-1.0.dist-info`` (``.egg-info``,
    ``.egg-link``) or an editable install's ``__editable__.NAME-1.0.pth``,
    ``__editable___NAME_1_0_finder.py`` or ``_NAME.pth``."""
    raw = entry.lower()
    if raw.startswith("__editable___") and raw.endswith("_finder.py"):
        return any(raw.startswith(f"__editable___{mine}_") for mine in own)
    if not raw.endswith((".dist-info", ".egg-info", ".egg-link", ".pth")):
        return False
    stem = raw.removeprefix("__editable__.").rsplit(".", 1)[0]
    return _normal(stem.split("-", 1)[0]) in own


def _content(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "absent"


def slot(*, project: Path, python: str, parts: Sequence[str]) -> str:
    """The name of the one cache file of this project, interpreter and command's ``parts``
    (``testgate flaky`` asks for other packages than ``testgate run``: each keeps its own)."""
    where = "\0".join([str(project.resolve()), python, *parts]).encode()
    return hashlib.sha256(where).hexdigest()[:16]


def cached(base: Path, name: str, key: str) -> dict[str, Any] | None:
    """The probe's answer kept in ``name`` for ``key``, or None (none kept, kept for
    another key, unreadable, another shape, or its overlay of added plugins is gone)."""
    try:
        answer = json.loads((base / "probes" / f"{name}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(answer, dict)
        or answer.get("key") != key
        or any(not isinstance(answer.get(name), kind) for name, kind in ANSWER_FIELDS.items())
    ):
        return None
    overlay = answer["overlay"]
    if overlay is not None and not (Path(overlay) / ".complete").is_file():
        return None
    return {name: answer[name] for name in ANSWER_FIELDS}


def keep(base: Path, name: str, key: str, answer: Mapping[str, Any]) -> None:
    """Keep ``answer`` for ``key`` in ``name``: written beside, then renamed into place."""
    folder = base / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    building = folder / f"{name}.json.{os.getpid()}"
    kept = {"key": key, **{field: answer[field] for field in ANSWER_FIELDS}}
    building.write_text(json.dumps(kept), "utf-8")
    building.replace(folder / f"{name}.json")
