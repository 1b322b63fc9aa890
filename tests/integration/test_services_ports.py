"""Fixed ports: ``redis:7 port=6379`` binds that port of 127.0.0.1, or fails saying it is taken.

A suite whose settings hardcode ``127.0.0.1:6379`` must reach the service testgate
started, never whatever else listens there.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from runner.services.probes import Endpoint, check
from tests.integration.test_services import _free_port, docker, services

__all__ = ["docker"]  # the fixture, shared with the docker backend's tests


def test_a_fixed_port_is_the_port_the_local_service_listens_on(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    port = _free_port()
    state = str(tmp_path / "s.json")
    code, out, err = services(
        capfd, "up", f"redis:7 port={port}", "--backend", "local", "--state-file", state
    )
    assert code == 0, err
    assert f"on 127.0.0.1:{port})" in err
    assert f"export REDIS_PORT={port}" in out
    check(Endpoint(probe="redis", host="127.0.0.1", port=port))
    assert services(capfd, "down", "--state-file", state)[0] == 0


def test_a_taken_fixed_port_fails_and_stops_the_others(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = services(
            capfd, "up", f"redis port={port}", "cache=redis", "--backend", "local",
            "--state-file", str(tmp_path / "state" / "s.json"), TMPDIR=str(tmp_path),
        )  # fmt: skip
    assert code == 3
    assert f"redis: port {port} of 127.0.0.1 is taken (Address already in use)" in err
    assert "stop that, or give another port=, or none for a free one" in err
    assert "Every service started was stopped again." in err
    assert list(tmp_path.iterdir()) == []  # the local cache was removed, and the state


def test_docker_publishes_the_fixed_port(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, docker: dict[str, str]
) -> None:
    port = _free_port()
    state = str(tmp_path / "s.json")
    code, _, err = services(
        capfd, "up", f"cache=redis:7 port={port}", "--state-file", state, **docker
    )
    assert code == 0, err
    calls = Path(docker["DOCKER_CALLS"]).read_text("utf-8")
    assert f"--publish 127.0.0.1:{port}:6379 redis:7" in calls
    assert services(capfd, "down", "--state-file", state, **docker)[0] == 0
