"""Helpers for the operations and security end-to-end tests.

`conftest.server_factory` covers servers started on 127.0.0.1 with extra
flags. The tests here also need servers that get their settings from the
environment, listen elsewhere, or are expected to refuse to start, so
`Tensord` runs the binary with full control over argv and environment and does
not insist that it becomes ready. The other helpers talk to a server through
plain grpcio (health, reflection, metadata), independent of the client package.
"""
from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import threading
from typing import Iterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from raw_wire import wait_for  # noqa: F401  (re-exported for the tests that use servers)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("TENSORD_BIN", ROOT / "build" / "tensord"))
READY = re.compile(r"^tensord listening on (\S+):(\d+)$")
#: The sanitizer the binary was built with ("address", "thread"; set by
#: `make test-asan` and `make test-tsan`), or "".
SANITIZER = os.environ.get("TENSORD_SANITIZER", "")
#: Marks a test whose figures are the server's resident memory: under a
#: sanitizer that is mostly shadow memory and quarantine, so it skips.
measures_server_memory = pytest.mark.skipif(
    bool(SANITIZER), reason=f"the server runs under the {SANITIZER} sanitizer, whose shadow memory swamps its own"
)

def rss_bytes(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any TENSORD_* setting, plus `overrides`.

    Servers under test must see only the settings the test gives them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORD_")}
    env.update(overrides)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Tensord:
    """One run of the tensord binary with exactly `args` and `env` (default: clean_env()).

    Unlike conftest.ServerProcess it adds no --listen of its own and does not
    wait for readiness: call `wait_ready()` for a server, `wait_exit()` for a
    run expected to end (a refused start, --help, --health-probe).
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} not found: build it with `make build`")
        self.args = [str(BINARY), *args]
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env() if env is None else env,
        )
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._first_line = threading.Event()
        self._out_thread = threading.Thread(target=self._drain_stdout, daemon=True)
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._out_thread.start()
        self._err_thread.start()
        self.address: str | None = None
        self.port: int | None = None

    def _drain_stdout(self) -> None:
        for line in self.proc.stdout:
            self._stdout.append(line)
            self._first_line.set()
        self._first_line.set()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def stdout_text(self) -> str:
        return "".join(self._stdout)

    def stderr_text(self) -> str:
        return "".join(self._stderr)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> str:
        """Waits for the ready line; returns "127.0.0.1:PORT" for connecting to it.

        A server listening on a wildcard host is reached through 127.0.0.1.
        """
        if not self._first_line.wait(timeout) or not self._stdout:
            self.kill()
            raise RuntimeError(f"tensord {self.args[1:]} did not start: stderr={self.stderr_text()!r}")
        match = READY.match(self._stdout[0].strip())
        if not match:
            self.kill()
            raise RuntimeError(
                f"tensord {self.args[1:]}: unexpected first line {self._stdout[0]!r}; "
                f"stderr={self.stderr_text()!r}"
            )
        self.port = int(match.group(2))
        self.address = f"127.0.0.1:{self.port}"
        return self.address

    def wait_exit(self, timeout: float = 60) -> int:
        """Waits for the process to end by itself (raises TimeoutExpired) and for its output."""
        code = self.proc.wait(timeout=timeout)
        self._out_thread.join(timeout=10)
        self._err_thread.join(timeout=10)
        return code

    def terminate(self) -> None:
        if self.alive():
            self.proc.terminate()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not end within `timeout`)."""
        self.terminate()
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode


class Launcher:
    """Starts `Tensord` runs for one test or module and stops every one at the end."""

    def __init__(self) -> None:
        self.started: list[Tensord] = []

    def run(self, *args: str, env: dict[str, str] | None = None) -> Tensord:
        """A run that is not expected to become a server (or whose start is under test)."""
        t = Tensord(*args, env=env)
        self.started.append(t)
        return t

    def server(self, *args: str, env: dict[str, str] | None = None, listen: str | None = "127.0.0.1:0") -> Tensord:
        """A server that must become ready; `listen=None` leaves --listen out of argv."""
        flags = (["--listen", listen] if listen is not None else []) + list(args)
        t = self.run(*flags, env=env)
        t.wait_ready()
        return t

    def close(self) -> None:
        for t in self.started:
            t.stop()


def launcher_fixture() -> Iterator[Launcher]:
    launcher = Launcher()
    try:
        yield launcher
    finally:
        launcher.close()


def write_token(directory: pathlib.Path, token: str, *, name: str = "token", padding: str = "") -> pathlib.Path:
    """A token file holding `padding + token + padding`; returns its path."""
    path = directory / name
    path.write_text(padding + token + padding)
    path.chmod(0o600)
    return path


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata to every call, for libraries that take no metadata argument."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        class Details(grpc.ClientCallDetails):
            pass

        new = Details()
        new.method = details.method
        new.timeout = details.timeout
        new.credentials = details.credentials
        new.wait_for_ready = getattr(details, "wait_for_ready", None)
        new.compression = getattr(details, "compression", None)
        new.metadata = tuple(details.metadata or ()) + self._metadata
        return new

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def with_metadata(channel: grpc.Channel, metadata: Sequence[tuple[str, str]]) -> grpc.Channel:
    """`channel`, with `metadata` added to every call made through it."""
    return grpc.intercept_channel(channel, _MetadataInterceptor(metadata))


def health_status(
    address: str,
    service: str = "",
    *,
    credentials: grpc.ChannelCredentials | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 10,
) -> int:
    """grpc.health.v1.Health/Check for `service`; raises grpc.RpcError on failure."""
    channel = (
        grpc.secure_channel(address, credentials) if credentials is not None else grpc.insecure_channel(address)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=metadata)
        return reply.status


def run_probe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`tensord --health-probe ...` to completion; stdout and stderr as text."""
    return subprocess.run(
        [str(BINARY), *args], capture_output=True, text=True, timeout=timeout, env=clean_env()
    )


def listening_tcp_ports(pid: int) -> set[int]:
    """Ports of the TCP sockets in LISTEN state that process `pid` holds (Linux /proc)."""
    inodes = set()
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = TCP_LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
