"""Running tensord as a service: settings from the environment, --help, the
logfmt log and --log-level, and graceful shutdown on SIGTERM."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tensord
from raw_wire import RawSession, pb
from tensord.v1 import tensord_pb2_grpc as pb_grpc
from servers import (
    BINARY,
    NOT_SERVING,
    SERVING,
    clean_env,
    free_port,
    launcher_fixture,
    run_probe,
    wait_for,
    write_token,
)

MIB = 1 << 20
SERVER_FLAGS = [
    "listen", "max-memory", "session-ttl", "metrics-listen", "auth-token-file",
    "tls-cert", "tls-key", "tls-client-ca", "insecure", "log-level", "shutdown-grace",
]
PROBE_FLAGS = ["health-probe", "probe-ca"]
LEVELS = ("debug", "info", "warning", "error")
# A zone far from UTC (POSIX TZ syntax, no tzdata needed): a local-time stamp would show.
FAR_FROM_UTC = "IST-5:30"


@pytest.fixture
def launch():
    yield from launcher_fixture()


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch):
    monkeypatch.delenv("TENSORD_TOKEN", raising=False)


# ---- environment ------------------------------------------------------------


def test_max_memory_from_the_environment(launch):
    srv = launch.server(env=clean_env(TENSORD_MAX_MEMORY="64M"))
    with tensord.connect(srv.address, timeout=30) as td:
        assert td.memory_info().bytes_limit == 64 * MIB


def test_command_line_beats_the_environment(launch):
    srv = launch.server("--max-memory", "32M", env=clean_env(TENSORD_MAX_MEMORY="64M"))
    with tensord.connect(srv.address, timeout=30) as td:
        assert td.memory_info().bytes_limit == 32 * MIB


def test_listen_from_the_environment(launch):
    srv = launch.server(listen=None, env=clean_env(TENSORD_LISTEN="127.0.0.1:0"))
    assert srv.port != 50051  # port 0 from the environment, not the default
    with tensord.connect(srv.address, timeout=30) as td:
        assert td.memory_info().sessions == 1


def test_auth_token_file_from_the_environment(launch, tmp_path):
    token = "env-token-3e8d"
    srv = launch.server(env=clean_env(TENSORD_AUTH_TOKEN_FILE=str(write_token(tmp_path, token))))
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(srv.address, timeout=30)
    with tensord.connect(srv.address, timeout=30, token=token) as td:
        assert np.array_equal(td.arange(4).numpy(), np.arange(4))


def test_metrics_listen_from_the_environment(launch):
    metrics = f"127.0.0.1:{free_port()}"
    launch.server(env=clean_env(TENSORD_METRICS_LISTEN=metrics))
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as reply:
        assert "tensord_memory_limit_bytes" in reply.read().decode()


def test_help_mentions_every_flag_and_its_environment_variable():
    done = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True, timeout=30, env=clean_env())
    assert done.returncode == 0, done.stderr
    text = done.stdout
    missing = [f"--{f}" for f in SERVER_FLAGS + PROBE_FLAGS if f"--{f}" not in text]
    missing += [
        "TENSORD_" + f.upper().replace("-", "_")
        for f in SERVER_FLAGS
        if "TENSORD_" + f.upper().replace("-", "_") not in text
    ]
    assert not missing, f"--help does not mention {missing}:\n{text}"


# ---- logging ------------------------------------------------------------------

_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|\+00:00)")


def parse_logfmt(line: str) -> list[tuple[str, str]]:
    """The key=value pairs of one logfmt line; AssertionError if it is not logfmt."""
    pairs, pos = [], 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        assert match, f"not logfmt at column {pos}: {line!r}"
        pairs.append((match.group(1), match.group(2)))
        pos = match.end()
    return pairs


def check_log(text: str) -> list[str]:
    """Checks every stderr line is `ts=<RFC3339 UTC> level=<level> msg="..." ...`; returns the levels."""
    levels = []
    now = dt.datetime.now(dt.timezone.utc)
    for line in text.splitlines():
        if not line.strip():
            continue
        pairs = parse_logfmt(line)
        keys = [k for k, _ in pairs]
        assert keys[:3] == ["ts", "level", "msg"], line
        assert len(set(keys)) == len(keys), f"a key repeats: {line!r}"
        values = dict(pairs)
        assert _RFC3339_UTC.fullmatch(values["ts"]), line
        stamp = dt.datetime.fromisoformat(values["ts"].replace("Z", "+00:00"))
        assert abs(stamp - now) < dt.timedelta(hours=1), f"not UTC now: {line!r}"
        assert values["level"] in LEVELS, line
        assert values["msg"] not in ("", '""'), line
        levels.append(values["level"])
    return levels


def workload(address: str) -> None:
    """Sessions, a transfer, and a failing call: things a server may log about."""
    with tensord.connect(address, timeout=30) as td:
        t = td.from_numpy(np.arange(1000, dtype=np.float64))
        assert t.numpy()[999] == 999
    with RawSession(address) as raw:
        with pytest.raises(grpc.RpcError) as info:
            raw.get("0" * 32)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def logged_levels(launch, *flags: str, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    srv = launch.server(*flags, env=clean_env(TZ=FAR_FROM_UTC, **(env or {})))
    workload(srv.address)
    assert srv.stop() == 0
    log = srv.stderr_text()
    return check_log(log), log


def test_default_log_is_logfmt_at_info(launch):
    levels, log = logged_levels(launch)
    assert "info" in levels, log
    assert "debug" not in levels, log


def test_log_messages_are_quoted(launch):
    """The spec's form is `msg="..."`: a reader may rely on msg being a quoted string."""
    _, log = logged_levels(launch)
    unquoted = [line for line in log.splitlines() if line.strip() and not dict(parse_logfmt(line))["msg"].startswith('"')]
    assert not unquoted, "\n".join(unquoted)


def test_log_level_error_hides_info(launch):
    levels, log = logged_levels(launch, "--log-level", "error")
    assert set(levels) <= {"error"}, log


def test_log_level_warning_hides_info(launch):
    levels, log = logged_levels(launch, "--log-level", "warning")
    assert set(levels) <= {"warning", "error"}, log


def test_log_level_debug_keeps_info(launch):
    levels, log = logged_levels(launch, "--log-level", "debug")
    assert "info" in levels, log


def test_log_level_from_the_environment(launch):
    levels, log = logged_levels(launch, env={"TENSORD_LOG_LEVEL": "error"})
    assert "info" not in levels, log
    levels, log = logged_levels(launch, "--log-level", "info", env={"TENSORD_LOG_LEVEL": "error"})
    assert "info" in levels, log


def test_unknown_log_level_is_refused(launch):
    run = launch.run("--listen", "127.0.0.1:0", "--log-level", "verbose")
    assert run.wait_exit(timeout=60) != 0
    assert "listening on" not in run.stdout_text()
    assert "log-level" in run.stderr_text(), run.stderr_text()


# ---- graceful shutdown -----------------------------------------------------------


def _create_int32_arange(raw: RawSession, n: int) -> str:
    request = pb.CreateRequest(
        kind=pb.CreateRequest.ARANGE, dtype=pb.DTYPE_INT32, start=pb.Scalar(i=0), end=pb.Scalar(i=n), step=pb.Scalar(i=1)
    )
    return raw.create(request).handle


def _start_download(raw: RawSession, handle: str, chunk_bytes: int = 64 << 10):
    stream = raw.stub.Download(
        pb.DownloadRequest(handle=handle, chunk_bytes=chunk_bytes), metadata=raw.metadata, timeout=600
    )
    first = next(stream)
    assert first.WhichOneof("kind") == "header"
    return stream, first.header


def test_sigterm_drains_an_in_flight_download(launch):
    srv = launch.server("--shutdown-grace", "120", "--max-memory", "1G")
    n = 64 * MIB  # int32 elements: 256 MiB
    health_channel = grpc.insecure_channel(srv.address)
    health = health_pb2_grpc.HealthStub(health_channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == SERVING
    with RawSession(srv.address, "draining") as raw:
        handle = _create_int32_arange(raw, n)
        stream, head = _start_download(raw, handle)
        assert head.span_nbytes == 4 * n
        received = bytearray()
        for _ in range(16):  # the stream is under way; the rest waits on this reader
            received += next(stream).chunk

        srv.terminate()

        seen = []

        def not_serving() -> bool:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            except grpc.RpcError as e:
                seen.append(e.code())
                return False
            seen.append(status)
            return status == NOT_SERVING

        assert wait_for(not_serving, timeout=60), f"health after SIGTERM: {seen[:3]} ... {seen[-3:]}"

        rejections = []

        def new_session_rejected() -> bool:
            with grpc.insecure_channel(srv.address) as channel:
                try:
                    opened = pb_grpc.TensordStub(channel).OpenSession(pb.OpenSessionRequest(client_name="late"), timeout=5)
                except grpc.RpcError as e:
                    rejections.append((e.code(), e.details()))
                    return True
                rejections.append(("opened", opened.session_id[:8]))
                return False

        # gRPC refuses calls to a shutting-down server with UNAVAILABLE, or with
        # CANCELLED when the call reached the server just as it stopped
        # matching new calls; either way the call never runs.
        refused = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert wait_for(new_session_rejected, timeout=60), rejections
        assert rejections[-1][0] in refused, rejections[-1]
        # A new call in the draining session is refused too, while its download goes on.
        with pytest.raises(grpc.RpcError) as info:
            raw.memory_info()
        assert info.value.code() in refused, info.value.details()
        assert run_probe("--health-probe", srv.address).returncode == 1
        assert srv.alive(), "tensord exited with a download in flight"

        for message in stream:
            assert message.WhichOneof("kind") == "chunk"
            received += message.chunk
        assert len(received) == 4 * n
        assert np.array_equal(np.frombuffer(received, dtype=np.int32), np.arange(n, dtype=np.int32))
    health_channel.close()
    assert srv.wait_exit(timeout=180) == 0, srv.stderr_text()


def test_shutdown_grace_bounds_a_stalled_reader(launch):
    srv = launch.server("--shutdown-grace", "1", "--max-memory", "1G")
    n = 64 * MIB
    with RawSession(srv.address, "stalled") as raw:
        handle = _create_int32_arange(raw, n)
        stream, head = _start_download(raw, handle)
        assert head.span_nbytes == 4 * n
        got = len(next(stream).chunk)
        assert got > 0
        srv.terminate()
        # The reader stops here: only the grace period can end the stream.
        code = srv.wait_exit(timeout=120)
        assert code == 0, srv.stderr_text()
        with pytest.raises(grpc.RpcError):
            for message in stream:
                got += len(message.chunk)
        assert got < 4 * n


def test_sigterm_on_an_idle_server_exits_0(launch):
    srv = launch.server("--shutdown-grace", "30")
    workload(srv.address)
    srv.terminate()
    assert srv.wait_exit(timeout=60) == 0, srv.stderr_text()

