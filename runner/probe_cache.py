"""The environment probe's answer, kept per environment so that later commands reuse it.

Probing the project's environment (what it has, which plugins to add, what pytest
imports early) starts its Python twice and asks uv for a plan: seconds, on every command.
The answer depends only on the environment, so it is kept in testgate's own cache
(``~/.cache/testgate/probes``), one file per environment, under a key made of everything
the answer depends on:

- testgate itself (its version and the probing code),
- the interpreter (its resolved path, size and modification time, ``sys.prefix``, version),
- what is installed: each site-packages directory's entries, with the content of each
  start-up file (installing, removing or upgrading a distribution changes a
  ``.dist-info`` entry, and an editable install adds a ``.pth``),
- the variables that change what Python imports (``PYTHONPATH``, ``PYTHONHOME`` …), and
  what the ``PYTHONPATH`` folders hold, as for site-packages,
- the project, by its content, not its place: pyproject.toml, uv.lock, setup.cfg,
  setup.py and requirements files, the packages of its own code, the importable names
  at its root (the probe runs there, and a module at the root is imported first), and
  the plugins this command needs. A copy of the project elsewhere that uses the same
  environment reuses the answer; a copy with its own environment has another interpreter
  prefix, so it is probed again.

The environment is named by its real directories (symlinks resolved): a ``.venv`` that
links to an environment is that environment. The key holds the content of the start-up
files (a ``.pth`` or ``.egg-link`` names a folder, an editable install's ``_finder.py``
maps names to folders). Where the project's packages are imported from a place
of their own (an editable install's ``.pth`` or finder, an absolute ``PYTHONPATH``) rather
than from the folder the probe runs in, the answer names the project it holds for
(``project``), and no other project takes it.

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

Each environment and command has one file (``slot``) holding the answers of its last
few keys (``KEPT``), newest first, so the cache does not grow with every change and
projects that share an environment do not push each other out. The
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

from runner import __version__, interrupts
from runner.child_env import child_environment
from runner.errors import InfraError

KEPT = 8  # answers kept per environment and command: one per project, or per change
STARTUP_FILES = ("sitecustomize.py", "usercustomize.py")  # run at start, as .pth files are
IMPORT_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE")
# setup.cfg and setup.py: a setuptools project's name (coverage_data.project_name), which
# decides whether pytest imports the project early, and what installs it
PROJECT_FILES = ("pyproject.toml", "uv.lock", "pylock.toml", "setup.cfg", "setup.py")
ANSWER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "python": str,
    "platform": str,
    "found": dict,
    "early": list,
    "overlay": (str, type(None)),
    "added": list,
    "project": (str, type(None)),
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
    slot: str  # the cache file of this environment and command: see ``slot``


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
    places = [os.path.realpath(folder) for folder in prefix]
    key.add(__version__, _CODE, str(real), stat.st_size, stat.st_mtime_ns, places, version)
    fingerprint.add(str(real), prefix, version)
    python_path = [part for part in environ.get("PYTHONPATH", "").split(os.pathsep) if part]
    owned = tuple(_normal(name) for name in own)
    for folder in [*site_dirs, user_site, *python_path]:
        probed, held = _installed(Path(str(folder)), own=owned)
        key.add(os.path.realpath(str(folder)), *probed)
        fingerprint.add(folder, *held)
    variables = [f"{name}={environ.get(name)}" for name in IMPORT_VARIABLES]
    key.add(*variables)
    fingerprint.add(*variables)
    key.add(*parts, "|", *_root_names(project))
    for path in [*(project / name for name in PROJECT_FILES), *files]:
        where = path.relative_to(project) if path.is_relative_to(project) else path
        key.add(str(where), _content(path))
    return Keys(probe=key.hex(), fingerprint=fingerprint.hex(), slot=slot(places, parts))


def _root_names(project: Path) -> list[str]:
    """What the project's root makes importable (its modules, extension modules and
    package folders): the probe's Python runs there and finds them first. Reports, caches
    and data beside them are left out, as Python's import system would."""
    return sorted(
        entry.name
        for entry in os.scandir(project)  # the project folder: settings checked it is one
        if entry.name.endswith((".py", ".pyc", ".so", ".pyd"))
        or (entry.is_dir() and entry.name.isidentifier() and entry.name != "__pycache__")
    )


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
        if startup or entry.name.endswith(("_finder.py", ".egg-link")):
            probed.append(_content(Path(entry.path)))  # an editable install's target
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


def slot(places: Sequence[str], parts: Sequence[str]) -> str:
    """The name of the one cache file of an environment (its real ``places``) and a
    command's ``parts`` (``testgate flaky`` asks for other packages than ``testgate run``:
    each keeps its own)."""
    return hashlib.sha256("\0".join([*places, "|", *parts]).encode()).hexdigest()[:16]


def cached(base: Path, name: str, key: str, *, project: Path) -> dict[str, Any] | None:
    """The probe's answer kept in ``name`` for ``key``, or None (none kept, kept for
    other keys, unreadable, another shape, its overlay of added plugins is gone, or it
    holds for another ``project`` only)."""
    for answer in _kept(base / "probes" / f"{name}.json"):
        if answer.get("key") != key or answer.get("project") not in (None, str(project.resolve())):
            continue
        if any(not isinstance(answer.get(name), kind) for name, kind in ANSWER_FIELDS.items()):
            return None
        overlay = answer["overlay"]
        if overlay is not None and not (Path(overlay) / ".complete").is_file():
            return None
        return {name: answer[name] for name in ANSWER_FIELDS}
    return None


def _kept(path: Path) -> list[dict[str, Any]]:
    """The answers a cache file holds, newest first; none when it is unreadable."""
    try:
        kept = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    answers = kept.get("answers") if isinstance(kept, dict) else None
    if not isinstance(answers, list):
        return []
    return [answer for answer in answers if isinstance(answer, dict)]


def keep(base: Path, name: str, key: str, answer: Mapping[str, Any]) -> None:
    """Keep ``answer`` for ``key`` in ``name``, first of the ``KEPT`` newest: written
    beside, then renamed into place."""
    folder = base / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    mine = (key, answer["project"])  # an answer bound to one project leaves another's
    earlier = [kept for kept in _kept(path) if (kept.get("key"), kept.get("project")) != mine]
    answers = [{"key": key, **{field: answer[field] for field in ANSWER_FIELDS}}, *earlier]
    building = folder / f"{name}.json.{os.getpid()}"
    with interrupts.deferred():  # a signal between the two would leave the file beside
        building.write_text(json.dumps({"answers": answers[:KEPT]}), "utf-8")
        building.replace(path)
