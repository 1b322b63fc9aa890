"""Which variables testgate sets, and which an app's own ``.env`` sets as well.

An app that reads ``POSTGRES_SERVER`` from its ``.env`` and ``POSTGRES_PORT`` from the
environment testgate gives it mixes two servers: every test then reaches testgate's port
on the ``.env``'s host, or the other way round. So testgate sets a service's whole family:
a variable of the ``.env`` named with a service's prefix and a field's usual suffix
(``POSTGRES_SERVER``, ``REDIS_HOSTNAME``, ``CACHE_URI`` …) is set too, per xdist worker
where it names the database. What remains is said in the run's summary: the variables
the ``.env`` sets that testgate sets as well (the environment wins with python-dotenv's
``load_dotenv()`` and with pydantic-settings; ``override=True`` makes the file win), and
those of a service's family testgate cannot fill (map them with ``service-env``).
Only names are ever printed: a ``.env`` holds secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.services.running import Running

ENV_FILES = (".env", ".env.test", ".env.testing")
SUFFIXES: Mapping[str, str] = {
    "HOST": "{host}",
    "HOSTNAME": "{host}",
    "SERVER": "{host}",
    "PORT": "{port}",
    "USER": "{user}",
    "USERNAME": "{user}",
    "PASSWORD": "{password}",
    "PASS": "{password}",
    "DB": "{database}",
    "DATABASE": "{database}",
    "NAME": "{database}",
    "URL": "{url}",
    "URI": "{url}",
    "DSN": "{url}",
}
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Precedence:
    """The project's mappings (its own and those inferred from its ``.env``) and the notes."""

    mappings: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, as python-dotenv reads them (quotes removed, comments skipped)."""
    found: dict[str, str] = {}
    for line in path.read_text("utf-8", "replace").splitlines():
        match = _LINE.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        value = match.group(2)
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[match.group(1)] = value
    return found


def resolve(
    *,
    project: Path,
    services: Sequence[Running],
    mappings: Mapping[str, Mapping[str, str]],
) -> Precedence:
    """Complete the mappings from the project's ``.env`` files; say what they override."""
    files = {name: read_dotenv(project / name) for name in ENV_FILES if (project / name).is_file()}
    completed = {name: dict(mapping) for name, mapping in mappings.items()}
    inferred: list[str] = []
    unfilled: list[str] = []
    for service in services:
        mapping = completed.get(service.name, {})
        known = service.variables(mapping)
        for variable in sorted({v for values in files.values() for v in values}):
            suffix = variable.removeprefix(service.prefix + "_")
            if variable in known or suffix == variable:
                continue
            if suffix in SUFFIXES:
                mapping[variable] = SUFFIXES[suffix]
                inferred.append(variable)
            else:
                unfilled.append(variable)
        if mapping:
            completed[service.name] = mapping
    exported = {
        variable
        for service in services
        for variable in service.variables(completed.get(service.name))
    }
    notes = []
    if inferred:
        notes.append(
            f"testgate also sets {', '.join(inferred)}, named in the project's "
            f"{' and '.join(files)}, so its tests cannot mix that server with testgate's."
        )
    for name, values in files.items():
        both = sorted(set(values) & exported)
        if both:
            notes.append(
                f"{name} sets {', '.join(both)}, which testgate sets as well: the "
                "environment testgate gives the tests wins with python-dotenv's "
                "load_dotenv() and pydantic-settings; an app that loads it with "
                "override=True would not reach testgate's services."
            )
    if unfilled:
        notes.append(
            f"the project's {' and '.join(files)} sets {', '.join(unfilled)}, which testgate "
            "does not set; "
            "if it must follow the service, map it with service-env."
        )
    return Precedence(mappings=completed, notes=tuple(notes))
