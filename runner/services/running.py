"""A service that is up: where it listens, what started it, and the variables it exports.

``Running`` is what the state file records for ``down`` and what ``testgate run`` reads
to give each xdist worker a database of its own. Every backend produces one; nothing
here knows how the service was started.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import msgspec

from runner.services.probes import Endpoint
from runner.services.spec import KINDS

WORKER = "{worker}"
INDEX = "{index}"
ISOLATED = ("postgres", "mysql", "mariadb", "redis", "mongo")
FIELDS = ("host", "port", "user", "password", "database", "url")
# The names applications commonly read, per kind. ``{prefix}`` is the service's own
# (``POSTGRES`` for ``postgres``, ``CACHE`` for ``cache=redis``); the others are set only
# for the service named as its kind, as they have no prefix to tell two services apart.
_MYSQL = tuple(
    (f"{family}_{key}", template)
    for family in ("MYSQL", "MARIADB")
    for key, template in (
        ("HOST", "{host}"),
        ("PORT", "{port}"),
        ("USER", "{user}"),
        ("PASSWORD", "{password}"),
        ("DATABASE", "{database}"),
    )
)
CONVENTIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "postgres": (
        ("{prefix}_USER", "{user}"),
        ("{prefix}_PASSWORD", "{password}"),
        ("{prefix}_DB", "{database}"),
        ("PGHOST", "{host}"),
        ("PGPORT", "{port}"),
        ("PGUSER", "{user}"),
        ("PGPASSWORD", "{password}"),
        ("PGDATABASE", "{database}"),
    ),
    "mysql": (
        ("{prefix}_USER", "{user}"),
        ("{prefix}_PASSWORD", "{password}"),
        ("{prefix}_DATABASE", "{database}"),
        *_MYSQL,
    ),
    "redis": (("{prefix}_DB", "{database}"), ("{prefix}_PASSWORD", "{password}")),
    "rabbitmq": (
        ("{prefix}_USER", "{user}"),
        ("{prefix}_PASSWORD", "{password}"),
        ("{prefix}_VHOST", "{database}"),
        ("RABBITMQ_URL", "{url}"),
    ),
    "mongo": (("{prefix}_DB", "{database}"), ("MONGO_URL", "{url}")),
}
CONVENTIONS = {**CONVENTIONS, "mariadb": CONVENTIONS["mysql"]}


def fill(template: str, fields: Mapping[str, str]) -> str:
    """``{host}:{port}`` with the service's values; ``{{`` is a literal brace."""
    return template.format_map(fields)


def check_template(template: str) -> str | None:
    """Why ``template`` is not usable in an ``env`` mapping, or None when it is."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        return f"{error} (write a literal brace as {{{{ or }}}})"
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        return f"{{{unknown[0]}}} is not a field; use " + ", ".join(f"{{{f}}}" for f in FIELDS)
    return None


class Running(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One service that answered its protocol, as the state file records it.

    ``backend`` is ``docker``, ``local`` or ``external``; ``container``, ``pid`` and
    ``directory`` are what ``down`` removes (None where that backend has none). The state
    file may be forged (a pull request can commit one): msgspec reads it into this type
    strictly, each field of its type and no field this type does not have.
    """

    name: str
    kind: str
    backend: str
    host: str
    port: int
    user: str = ""
    password: str = ""
    database: str = ""
    ready: str = "tcp"
    url: str | None = None
    container: str | None = None
    pid: int | None = None
    directory: str | None = None
    log: str | None = None
    stop_signal: int = 15
    description: str = ""
    ready_s: float = 0.0
    extra: dict[str, str] = {}

    @property
    def probe(self) -> str:
        known = KINDS.get(self.kind)
        return "generic" if known is None else known.probe

    @property
    def prefix(self) -> str:
        return self.name.upper()

    @property
    def url_variable(self) -> str | None:
        """``DATABASE_URL`` for ``postgres``, ``CACHE_URL`` for ``cache=redis``."""
        known = KINDS.get(self.kind)
        if known is not None and self.name == self.kind:
            return known.url_variable
        if known is not None or self.url is not None or self.ready.startswith("http:"):
            return f"{self.prefix}_URL"
        return None

    def endpoint(self) -> Endpoint:
        return Endpoint(
            probe=self.probe,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            ready=self.ready,
            env=self.variables(),
            url=self.url,
        )

    def connection_url(self, database: str | None = None) -> str:
        """The URL its clients take; ``database`` replaces the URL's database."""
        if self.url is not None:
            parts = urlsplit(self.url)
            path = parts.path if database is None else "/" + database
            return urlunsplit(parts._replace(path=path))
        known = KINDS.get(self.kind)
        if known is None:
            path = self.ready.removeprefix("http:") if self.ready.startswith("http:") else ""
            return f"http://{self.host}:{self.port}{path}"
        login = quote(self.user, safe="")
        if self.password:
            login += ":" + quote(self.password, safe="")
        at = f"{login}@" if login else ""
        name = self.database if database is None else database
        return f"{known.scheme}://{at}{self.host}:{self.port}/{name}"

    def fields(self, database: str | None = None) -> dict[str, str]:
        """What a placeholder of an ``env`` mapping stands for (see FIELDS)."""
        name = self.database_name if database is None else database
        return {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "database": unquote(name),
            "url": self.connection_url(database),
        }

    def variables(
        self, mapping: Mapping[str, str] | None = None, *, database: str | None = None
    ) -> dict[str, str]:
        """Every variable exported for the service (for ``database``, else its own).

        ``<NAME>_HOST``, ``<NAME>_PORT``, the URL variable, the conventions of its kind
        (CONVENTIONS) and the project's own names (``mapping``: variable -> template).
        """
        fields = self.fields(database)
        found = {f"{self.prefix}_HOST": self.host, f"{self.prefix}_PORT": str(self.port)}
        if self.url_variable is not None:
            found[self.url_variable] = fields["url"]
        own = self.name == self.kind
        for variable, template in CONVENTIONS.get(self.kind, ()):
            if variable.startswith("{prefix}") or own:
                if template == "{password}" and not self.password and self.kind == "redis":
                    continue  # an empty password would make some clients send AUTH ""
                found[variable.replace("{prefix}", self.prefix)] = fill(template, fields)
        for variable, template in (mapping or {}).items():
            found[variable] = fill(template, fields)
        return found

    def worker_variables(
        self, database: str, mapping: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The variables that differ for a worker whose database is ``database``."""
        shared = self.variables(mapping)
        return {
            variable: value
            for variable, value in self.variables(mapping, database=database).items()
            if shared.get(variable) != value
        }

    def worker_template(self) -> tuple[str, str] | None:
        """The URL variable with a placeholder for the xdist worker's own database.

        PostgreSQL, MySQL and MongoDB get ``<database>_{worker}`` (``test_gw0``); Redis
        gets the database index ``{index}``; other services are shared.
        """
        variable = self.url_variable
        if variable is None or self.kind not in ISOLATED:
            return None
        if self.kind == "redis":
            return variable, self.connection_url(INDEX)
        return variable, self.connection_url(f"{self.database_name}_{WORKER}")

    @property
    def database_name(self) -> str:
        """The database the URL names (``test`` unless an external URL says otherwise)."""
        if self.url is not None:
            return urlsplit(self.url).path.lstrip("/") or "test"
        return self.database
