"""Readiness: a service is ready when it answers its own protocol, never after a sleep.

PostgreSQL must accept a login and answer ``SELECT 1`` (a server that accepts TCP while
it is still starting refuses logins), MySQL and MariaDB must complete a login, Redis
must answer ``PING`` with ``PONG``, RabbitMQ must answer the AMQP protocol header with
``Connection.Start``, MongoDB must answer ``ping`` (through pymongo, which handles its
``hello`` handshake, authentication, TLS and SRV), an HTTP service must return 2xx, a
``cmd:`` check must exit 0. ``wait_ready`` retries until a deadline, waiting between
probes a twentieth of the time waited so far (5 ms at first, 0.1 s at most): a probe is
then never late by more than a few percent of the time to ready, however fast the
service starts, and a slow one is not asked needlessly often. It stops at once when
the service's process or container has died.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.child_env import child_environment

if TYPE_CHECKING:  # imported only when PostgreSQL or MongoDB is used
    import ssl

    from pymongo import MongoClient

FIRST_DELAY_S = 0.005
MAX_DELAY_S = 0.1
WAITED_FRACTION = 0.05  # the wait before the next probe, as a part of the time waited
ATTEMPT_TIMEOUT_S = 5.0
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # length, the SSLRequest code
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
AMQP_CONNECTION_START = b"\x00\x0a\x00\x0a"
# pymongo waits this long at most to find the server per attempt: a server still starting
# fails the attempt soon, so wait_ready can see a dead one between attempts.
MONGO_SELECTION_TIMEOUT_S = 2.0


class NotReady(Exception):
    """One probe attempt failed; the message says what the service answered."""


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens and how to log in to it."""

    probe: str
    host: str
    port: int
    user: str = ""
    password: str = ""
    database: str = ""
    ready: str = "tcp"
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None  # an external service's own URL (its TLS, SRV and options)


def check(endpoint: Endpoint, *, timeout: float = ATTEMPT_TIMEOUT_S) -> None:
    """One attempt of the endpoint's protocol check; raises NotReady when it fails."""
    try:
        PROBES[endpoint.probe](endpoint, timeout)
    except NotReady:
        raise
    except Exception as error:  # every client library has its own error classes
        raise NotReady(f"{type(error).__name__}: {error}".strip()) from None


def wait_ready(
    endpoint: Endpoint, *, deadline: float, died: Callable[[], str | None] = lambda: None
) -> float:
    """Probe until the endpoint answers; return the seconds it took.

    ``died`` returns why the service's process is gone (or None while it runs); a dead
    service fails at once instead of at the deadline. Raises NotReady with the last answer.
    """
    started = time.monotonic()
    while True:
        try:
            check(endpoint, timeout=max(0.1, min(ATTEMPT_TIMEOUT_S, deadline - time.monotonic())))
            return time.monotonic() - started
        except NotReady as error:
            last = str(error)
        reason = died()
        if reason is not None:
            raise NotReady(f"{reason} before it was ready (last probe: {last})")
        waited = time.monotonic() - started
        delay = min(MAX_DELAY_S, max(FIRST_DELAY_S, waited * WAITED_FRACTION))
        if time.monotonic() + delay > deadline:
            raise NotReady(f"not ready after {waited:.1f} s (last probe: {last})")
        time.sleep(delay)


def _postgres(endpoint: Endpoint, timeout: float) -> None:
    """A login and ``SELECT 1``, over TLS when the server offers it (libpq's ``prefer``).

    The TLS question (``SSLRequest``) is asked here, on the one connection pg8000 then
    logs in on: pg8000 asked for ``prefer`` builds a new TLS context for every
    connection (loading the system's certificates: more than the login itself takes), and
    given a context of its own it cannot fall back to plain text without a second
    connection, which costs the server a second backend.
    """
    import pg8000.native  # noqa: PLC0415  (imported only when PostgreSQL is used)

    sock: socket.socket = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    try:
        sock.sendall(POSTGRES_SSL_REQUEST)
        answer = sock.recv(1)
        if answer == b"S":
            sock = _tls_context().wrap_socket(sock, server_hostname=endpoint.host)
        elif answer != b"N":
            raise NotReady(f"the TLS request was answered with {answer!r}, not S or N")
        connection = pg8000.native.Connection(
            endpoint.user,
            sock=sock,
            database=endpoint.database or None,
            password=endpoint.password or None,
            timeout=timeout,
            ssl_context=False,
        )
    except BaseException:
        sock.close()
        raise
    try:
        connection.run("SELECT 1")
    finally:
        connection.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context of every PostgreSQL probe: encrypted, unverified, as ``prefer`` is."""
    import ssl  # noqa: PLC0415  (imported only when a server offers TLS)

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _mysql(endpoint: Endpoint, timeout: float) -> None:
    import pymysql  # noqa: PLC0415  (imported only when MySQL is used)

    connection = pymysql.connect(
        host=endpoint.host,
        port=endpoint.port,
        user=endpoint.user,
        password=endpoint.password,
        database=endpoint.database or None,
        connect_timeout=timeout,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _redis(endpoint: Endpoint, timeout: float) -> None:
    commands: list[tuple[str, ...]] = [("PING",)]
    if endpoint.password:
        user = (endpoint.user,) if endpoint.user else ()
        commands.insert(0, ("AUTH", *user, endpoint.password))
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        for command in commands:
            sock.sendall(resp_command(*command))
            answer = reader.readline().strip()
            if command[0] == "PING" and answer != b"+PONG":
                raise NotReady(f"PING answered {answer[:200]!r}")
            if answer.startswith(b"-"):
                raise NotReady(f"{command[0]} answered {answer[:200]!r}")


def resp_command(*words: str) -> bytes:
    """One Redis command in RESP, the way every Redis client sends it."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _amqp(endpoint: Endpoint, timeout: float) -> None:
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
        sock.sendall(AMQP_HEADER)
        frame = _receive(sock, 11)
    # A method frame (type 1) on channel 0 whose class 10, method 10 is Connection.Start.
    if frame[0] != 1 or frame[7:11] != AMQP_CONNECTION_START:
        raise NotReady(f"the AMQP header was answered with {frame[:16]!r}, not Connection.Start")


def _mongo(endpoint: Endpoint, timeout: float) -> None:
    from pymongo.errors import OperationFailure  # noqa: PLC0415  (only for MongoDB)

    with mongo_client(endpoint, timeout=timeout) as client:
        try:
            client.admin.command("ping")
        except OperationFailure as error:
            said = (error.details or {}).get("errmsg", str(error))
            raise NotReady(f"ping answered {said!r}") from None


@contextlib.contextmanager
def mongo_client(endpoint: Endpoint, *, timeout: float) -> Iterator[MongoClient[dict[str, Any]]]:
    """A pymongo client of the endpoint's server, closed after.

    An external service's URL is used as given (``mongodb+srv://``, ``tls=true``,
    ``authSource`` ...); otherwise the one server at host and port (``directConnection``;
    testgate's own servers take no login, as the image's default is). ``timeout``
    (seconds) bounds connecting and each answer; finding the server takes at most
    ``MONGO_SELECTION_TIMEOUT_S``.
    """
    from pymongo import MongoClient  # noqa: PLC0415  (imported only when MongoDB is used)

    limits: dict[str, Any] = {
        "serverSelectionTimeoutMS": int(1000 * min(timeout, MONGO_SELECTION_TIMEOUT_S)),
        "connectTimeoutMS": int(1000 * timeout),
        "socketTimeoutMS": int(1000 * timeout),
        "appname": "testgate",
    }
    if endpoint.url is not None:
        client: MongoClient[dict[str, Any]] = MongoClient(endpoint.url, **limits)
    else:
        client = MongoClient(endpoint.host, endpoint.port, directConnection=True, **limits)
    try:
        yield client
    finally:
        client.close()


def _http(endpoint: Endpoint, timeout: float) -> None:
    path = endpoint.ready.removeprefix("http:") or "/"
    url = f"http://{endpoint.host}:{endpoint.port}{path}"
    import urllib.request  # noqa: PLC0415  (imported only when an HTTP check is used)

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.request.HTTPError as error:
        status = error.code
    if not 200 <= status < 300:
        raise NotReady(f"GET {path} answered HTTP {status}")


def _tcp(endpoint: Endpoint, timeout: float) -> None:
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
        pass


def _command(endpoint: Endpoint, timeout: float) -> None:
    completed = subprocess.run(
        endpoint.ready.removeprefix("cmd:"),
        shell=True,
        env=child_environment(os.environ, **endpoint.env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        said = (completed.stdout + completed.stderr).strip().splitlines()[-1:] or [""]
        raise NotReady(f"the ready command exited {completed.returncode}: {said[0][:200]}")


def _generic(endpoint: Endpoint, timeout: float) -> None:
    if endpoint.ready.startswith("http:"):
        _http(endpoint, timeout)
    elif endpoint.ready.startswith("cmd:"):
        _command(endpoint, timeout)
    else:
        _tcp(endpoint, timeout)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise NotReady(f"the connection closed after {len(data)} bytes")
        data += chunk
    return data


PROBES: Mapping[str, Callable[[Endpoint, float], None]] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "redis": _redis,
    "amqp": _amqp,
    "mongo": _mongo,
    "generic": _generic,
}
