"""Service specs: what ``testgate services up`` was asked to start, parsed and checked.

A spec is one of:

* a known kind with an optional version: ``postgres``, ``postgres:16``, ``mysql:8``,
  ``mariadb:11``, ``redis:7``, ``mongo:7``, ``rabbitmq:3``;
* a known kind under its own name: ``cache=redis:7`` (exported as ``CACHE_*``);
* a known kind on a fixed port of 127.0.0.1: ``redis:7 port=6379`` (for a suite whose
  settings hardcode the port; taken, it fails rather than test against what listens
  there), also with a name and ``env=KEY=VALUE`` for the container;
* something already running: ``postgres=postgresql://user:pw@host:5432/db`` (any
  ``NAME=URL``; the kind comes from the name or the URL's scheme);
* a generic container: ``NAME=IMAGE port=8080 env=KEY=VALUE ready=tcp|http:/PATH|cmd:…``.

A typo or an unknown kind is a ConfigError that lists the known ones.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from runner.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    """What testgate knows about one service: image, port, credentials, URL, probe."""

    name: str
    image: str
    port: int
    url_variable: str
    scheme: str
    user: str
    password: str
    database: str
    container_env: Mapping[str, str]
    probe: str
    label: str
    extra_ports: tuple[int, ...] = ()


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            name="postgres",
            image="postgres",
            port=5432,
            url_variable="DATABASE_URL",
            scheme="postgresql",
            user="postgres",
            password="postgres",
            database="test",
            container_env={"POSTGRES_PASSWORD": "postgres", "POSTGRES_DB": "test"},
            probe="postgres",
            label="PostgreSQL",
        ),
        Kind(
            name="mysql",
            image="mysql",
            port=3306,
            url_variable="MYSQL_URL",
            scheme="mysql",
            user="root",
            password="",
            database="test",
            container_env={"MYSQL_ALLOW_EMPTY_PASSWORD": "yes", "MYSQL_DATABASE": "test"},
            probe="mysql",
            label="MySQL",
        ),
        Kind(
            name="redis",
            image="redis",
            port=6379,
            url_variable="REDIS_URL",
            scheme="redis",
            user="",
            password="",
            database="0",
            container_env={},
            probe="redis",
            label="Redis",
        ),
        Kind(
            name="mongo",
            image="mongo",
            port=27017,
            url_variable="MONGODB_URL",
            scheme="mongodb",
            user="",
            password="",
            database="test",
            container_env={},
            probe="mongo",
            label="MongoDB",
        ),
        Kind(
            name="rabbitmq",
            image="rabbitmq",
            port=5672,
            url_variable="AMQP_URL",
            scheme="amqp",
            user="guest",
            password="guest",
            database="%2F",
            container_env={},
            probe="amqp",
            label="RabbitMQ",
        ),
    )
}
_MARIADB = dataclasses.replace(
    KINDS["mysql"],
    name="mariadb",
    image="mariadb",
    container_env={"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_DATABASE": "test"},
    label="MariaDB",
)
KINDS = {
    name: _MARIADB if name == "mariadb" else KINDS[name]
    for name in ("postgres", "mysql", "mariadb", "redis", "mongo", "rabbitmq")
}
SCHEMES = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "redis": "redis",
    "mongodb": "mongo",
    "amqp": "rabbitmq",
    "http": "http",
    "https": "http",
    "tcp": "tcp",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
READY_KINDS = ("tcp", "http:/PATH", "cmd:COMMAND")
BACKENDS = ("auto", "docker", "local", "external")


@dataclass(frozen=True)
class ServiceSpec:
    """One service to provide.

    ``kind`` is a key of KINDS, or ``generic`` for a container testgate knows nothing
    about; ``url`` is set for an external service; ``ready`` is ``tcp``, ``http:/PATH``
    or ``cmd:COMMAND`` (generic only; known kinds speak their own protocol).
    """

    name: str
    kind: str
    image: str
    version: str | None = None
    port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str = "tcp"
    url: str | None = None
    host_port: int | None = None

    @property
    def known(self) -> Kind | None:
        return KINDS.get(self.kind)

    @property
    def prefix(self) -> str:
        """The prefix of the exported variables: ``POSTGRES`` in ``POSTGRES_HOST``."""
        return self.name.upper()

    @property
    def container_port(self) -> int:
        known = self.known
        if self.port is not None:
            return self.port
        assert known is not None, "generic services always have a port"
        return known.port


def parse_specs(texts: Sequence[str]) -> tuple[ServiceSpec, ...]:
    """Parse every spec; the same name twice is an error, as the variables would clash.

    Each text may hold several specs, one per line or separated by commas
    (``postgres:16, redis:7``); a line starting with ``#`` is a comment.
    """
    specs: list[ServiceSpec] = []
    for text in texts:
        for line in text.splitlines():
            if line.strip().startswith("#"):
                continue
            specs += [parse_spec(part.strip()) for part in line.split(",") if part.strip()]
    names = [spec.name for spec in specs]
    for spec in specs:
        if names.count(spec.name) > 1:
            raise ConfigError(
                f"service {spec.name!r} is given twice; give the second a name of its own, "
                f"such as '{spec.name}2={spec.image or spec.url}'."
            )
    return tuple(specs)


def parse_spec(text: str) -> ServiceSpec:
    """Parse one spec (see the module docstring)."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise ConfigError(f"service spec {text!r} cannot be split into words: {error}.") from None
    head, options = words[0], words[1:]
    name, equals, target = head.partition("=")
    if not equals and options and name.partition(":")[0].lower() in KINDS:
        return _generic(name.partition(":")[0].lower(), name, options, text)
    if not equals:
        if options:
            raise ConfigError(
                f"service spec {text!r}: options such as {options[0]!r} need a name, as in "
                f"'NAME=IMAGE {options[0]}'."
            )
        return _known(name.partition(":")[0], name, text)
    if not _NAME.match(name):
        raise ConfigError(
            f"service spec {text!r}: {name!r} is not a usable name; use letters, digits "
            "and underscores, starting with a letter (it becomes NAME_HOST, NAME_PORT)."
        )
    if "://" in target:
        if options:
            raise ConfigError(f"service spec {text!r}: an external service takes no options.")
        return _external(name.lower(), target, text)
    base = target.split(":", 1)[0].rsplit("/", 1)[-1]
    if base in KINDS and not options:
        return _known(name.lower(), target, text)
    return _generic(name.lower(), target, options, text)


def _known(name: str, target: str, text: str) -> ServiceSpec:
    kind_name, _, version = target.partition(":")
    kind_name = kind_name.lower()
    if kind_name not in KINDS:
        raise ConfigError(
            f"unknown service {kind_name!r} in {text!r}; known services: "
            f"{', '.join(KINDS)}, or NAME=IMAGE port=PORT for any other container, or "
            "NAME=URL for one already running."
        )
    return ServiceSpec(name=name.lower(), kind=kind_name, image=target, version=version or None)


def _external(name: str, url: str, text: str) -> ServiceSpec:
    parts = urlsplit(url)
    kind = name if name in KINDS else SCHEMES.get(parts.scheme.lower())
    if kind is None:
        raise ConfigError(
            f"service spec {text!r}: the scheme {parts.scheme!r} is not one testgate can "
            f"probe; use one of {', '.join(sorted(SCHEMES))}."
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"service spec {text!r}: the URL's port is not a port number.") from None
    if not parts.hostname or (port is None and kind in ("http", "tcp")):
        raise ConfigError(
            f"service spec {text!r}: the URL needs a host{' and a port' if kind == 'tcp' else ''}"
            ", such as postgresql://postgres@127.0.0.1:5432/test."
        )
    ready = "tcp"
    if kind == "http":
        ready = "http:" + (parts.path or "/")
    if kind in ("http", "tcp"):
        kind = "generic"
    return ServiceSpec(name=name, kind=kind, image="", url=url, port=port, ready=ready)


def _generic(name: str, image: str, options: list[str], text: str) -> ServiceSpec:
    if not _IMAGE.match(image):
        raise ConfigError(f"service spec {text!r}: {image!r} is not an image name.")
    port: int | None = None
    env: dict[str, str] = {}
    ready = "tcp"
    for option in options:
        key, equals, value = option.partition("=")
        if key == "port" and equals and value.isdigit() and 0 < int(value) < 65536:
            port = int(value)
        elif key == "env" and "=" in value:
            variable, _, setting = value.partition("=")
            env[variable] = setting
        elif key == "ready" and (
            value == "tcp" or value.startswith("http:/") or value.startswith("cmd:")
        ):
            ready = value
        else:
            raise ConfigError(
                f"service spec {text!r}: cannot use {option!r}; options are port=PORT, "
                f"env=KEY=VALUE and ready={'|'.join(READY_KINDS)}."
            )
    base, _, version = image.partition(":")
    kind = base.rsplit("/", 1)[-1]
    if kind in KINDS:
        # A known image with options: keep its protocol probe; port= is the fixed port
        # of 127.0.0.1 it is reached on (the container listens on its usual one).
        return ServiceSpec(
            name=name, kind=kind, image=image, version=version or None, host_port=port,
            env=env, ready=ready,
        )  # fmt: skip
    if port is None:
        raise ConfigError(
            f"service spec {text!r}: a generic service needs port=PORT, the port the "
            "container listens on."
        )
    return ServiceSpec(name=name, kind="generic", image=image, port=port, env=env, ready=ready)
