"""Fixtures that run the real `tensord` binary on a free loopback port.

The binary is `build/tensord` under the repository root unless TENSORD_BIN
points elsewhere. Each server is started with `--listen 127.0.0.1:0`, and the
test waits for the one line `tensord listening on HOST:PORT` it prints when ready.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import threading
from typing import Callable, Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("TENSORD_BIN", ROOT / "build" / "tensord"))
READY = re.compile(r"^tensord listening on (\S+:\d+)$")


class ServerProcess:
    """A running tensord; `address` is HOST:PORT, `stderr_text()` its log so far."""

    def __init__(self, *flags: str) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} not found: build it with `make build`")
        self.proc = subprocess.Popen(
            [str(BINARY), "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line = self.proc.stdout.readline().strip()  # blocks until ready or exit
        match = READY.match(line)
        if not match:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"tensord did not start: stdout={line!r} stderr={self.stderr_text()!r}")
        self.address = match.group(1)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def stderr_text(self) -> str:
        return "".join(self._stderr)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One shared server for the whole run (1 GiB of tensor memory)."""
    srv = ServerProcess("--max-memory", "1G")
    yield srv
    code = srv.stop()
    assert code == 0, f"tensord exited with {code}: {srv.stderr_text()}"


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start extra servers with their own flags; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        srv = ServerProcess(*flags)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def td(server: ServerProcess):
    """A fresh client session on the shared server, closed after the test.

    After every test the server must still be alive: no client input may crash it.
    """
    import tensord

    client = tensord.connect(server.address, timeout=30)
    yield client
    client.close()
    assert server.alive(), f"tensord died: {server.stderr_text()}"
