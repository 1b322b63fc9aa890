"""SIGTERM while services start or run: testgate unwinds and removes what it started."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from runner.services import lifecycle
from runner.services.spec import parse_specs
from runner.services.stopping import unwind_on_sigterm


def test_sigterm_while_up_waits_ends_the_wait_and_clears_the_record(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing ever answers there: up would wait its whole timeout
    specs = parse_specs([f"redis=redis://127.0.0.1:{port}/0"])
    state = tmp_path / "services.json"
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(SystemExit) as raised:
        lifecycle.up(specs, backend="external", timeout=60, state_file=state, environ={})
    timer.join()
    assert raised.value.code == 128 + signal.SIGTERM
    assert not state.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_the_signal_is_left_alone() -> None:
    seen = []

    def body() -> None:
        with unwind_on_sigterm():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]
