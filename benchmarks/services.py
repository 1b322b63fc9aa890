"""Time to ready: when testgate calls a service ready, against when the service says it is.

For each service the local backend starts (this machine's own PostgreSQL, MariaDB, Redis and
RabbitMQ binaries), three moments are taken from the start of the process, in one run:

* tcp:      the first moment a plain TCP connect succeeds (what a port check would wait for);
* own log:  the moment the server writes its own "ready" line to its log;
* testgate: the moment testgate's protocol probe succeeds (a login and SELECT 1, PING, the
            AMQP header answered).

A good probe is ready no later than a few milliseconds after the server's own log line and
never before it; a port check can be early (PostgreSQL and MariaDB accept TCP while they are
still starting, and refuse the login). Nothing here sleeps a fixed time: the log and the port
are polled every 2 ms. Prints the medians of --trials starts and the ratio testgate / own log.

With ``--backend docker`` the same three moments are taken for containers of the Docker
engine at DOCKER_HOST (``.ci/docker-engine start`` and ``images`` provide one here), from
just before ``docker run``: the server's ready line is read from ``docker logs --follow``,
and "tcp" is docker-proxy's published port, which accepts connections before the server
inside even runs (so it is early in every start).
Run: ``.venv/bin/python benchmarks/services.py [--backend docker]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from runner.services.databases import ensure
from runner.services.docker import DockerBackend
from runner.services.local import LocalBackend, stop_local
from runner.services.probes import wait_ready
from runner.services.spec import parse_specs

READY_LINES = {
    "postgres": "database system is ready to accept connections",
    "mariadb": "ready for connections",
    "redis": "Ready to accept connections",
    "rabbitmq": "Server startup complete",
}
POLL_S = 0.002


def first_moment(check: object, started: float, stop: threading.Event) -> list[float]:
    """Poll ``check`` until it is true; the list gets the seconds since ``started``."""
    found: list[float] = []

    def poll() -> None:
        assert callable(check)
        while not stop.is_set():
            if check():
                found.append(time.monotonic() - started)
                return
            time.sleep(POLL_S)

    threading.Thread(target=poll, daemon=True).start()
    return found


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def measure(kind: str, root: Path) -> tuple[float, float, float]:
    """One start of ``kind``: (tcp, own log, testgate) seconds after the start began."""
    (spec,) = parse_specs([kind])
    backend = LocalBackend({"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin"}, root=root)
    started = time.monotonic()
    running = backend.start(spec)
    stop = threading.Event()
    log = Path(str(running.log))
    tcp = first_moment(lambda: tcp_open(running.port), started, stop)
    own = first_moment(
        lambda: READY_LINES[kind] in log.read_text("utf-8", "replace"), started, stop
    )
    endpoint = backend.endpoint(running)
    wait_ready(endpoint, deadline=time.monotonic() + 60, died=lambda: backend.died(running))
    probe = time.monotonic() - started
    if kind in ("postgres", "mariadb"):
        ensure(running)
    deadline = time.monotonic() + 10
    while not (tcp and own) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    stop.set()
    stop_local(running)
    return tcp[0], own[0], probe


def measure_docker(kind: str, root: Path) -> tuple[float, float, float]:
    """One container of ``kind``: (tcp, own log, testgate) seconds after ``docker run``."""
    (spec,) = parse_specs([kind])
    backend = DockerBackend(os.environ, run_id=f"benchmark-{root.name}")
    started = time.monotonic()
    running = backend.start(spec)
    stop = threading.Event()
    tcp = first_moment(lambda: tcp_open(running.port), started, stop)
    own: list[float] = []
    follow = subprocess.Popen(
        ["docker", "logs", "--follow", str(running.container)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            if READY_LINES[kind] in line and not own:
                own.append(time.monotonic() - started)

    threading.Thread(target=read, daemon=True).start()
    wait_ready(running.endpoint(), deadline=time.monotonic() + 60,
               died=lambda: backend.died(running))  # fmt: skip
    probe = time.monotonic() - started
    backend.ready(running)  # as 'services up' goes on: its 'docker wait' ends
    deadline = time.monotonic() + 10
    while not (tcp and own) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    stop.set()
    follow.kill()
    follow.wait()
    backend.stop([running], run_id=backend.run_id)
    return tcp[0], own[0], probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=list(READY_LINES))
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    args = parser.parse_args()
    one_start = measure_docker if args.backend == "docker" else measure
    print(f"{'service':10} {'tcp s':>8} {'own log s':>10} {'testgate s':>11} {'testgate/own':>13}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)
        for kind in args.kinds:
            rows = [one_start(kind, root) for _ in range(args.trials)]
            tcp, own, probe = (statistics.median(column) for column in zip(*rows, strict=True))
            early = sum(row[0] < row[1] for row in rows)
            print(
                f"{kind:10} {tcp:8.3f} {own:10.3f} {probe:11.3f} {probe / own:13.3f}"
                f"   (port open before the server was ready in {early}/{len(rows)} starts;"
                f" testgate before its log line in {sum(row[2] < row[1] for row in rows)})"
            )


if __name__ == "__main__":
    main()
