"""Prometheus metrics on --metrics-listen: the exposition parses, has the
documented families with the documented types, and the values follow what
clients do (uploads, downloads, frees, sessions, failing calls)."""
from __future__ import annotations

import math
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tensord
from raw_wire import RawSession, pb
from servers import free_port, launcher_fixture, listening_tcp_ports, wait_for, write_token

MIB = 1 << 20
SERVICE = "/tensord.v1.Tensord/"
CPU = {"device": "cpu"}

# sample name -> the family type it must belong to
EXPECTED_TYPES = {
    "tensord_tensors": "gauge",
    "tensord_tensor_bytes": "gauge",
    "tensord_memory_limit_bytes": "gauge",
    "tensord_sessions": "gauge",
    "tensord_rpcs_total": "counter",
    "tensord_rpc_duration_seconds_bucket": "histogram",
    "tensord_rpc_duration_seconds_sum": "histogram",
    "tensord_rpc_duration_seconds_count": "histogram",
    "tensord_stream_bytes_total": "counter",
    "tensord_commands_total": "counter",
    "tensord_queued_commands": "gauge",
    "tensord_copy_on_write_bytes_total": "counter",
}


class Scrape:
    """One parsed /metrics page: `value(name, **labels)` and the family type of each sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.values: dict[tuple[str, frozenset], float] = {}
        self.types: dict[str, str] = {}
        # list(): the parser is lazy; this raises on any malformed line.
        for family in list(text_string_to_metric_families(text)):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value
                self.types[sample.name] = family.type

    def value(self, name: str, default: float | None = None, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        if key not in self.values:
            if default is not None:
                return default
            raise AssertionError(f"no sample {name}{labels} in:\n{self.text}")
        return self.values[key]

    def rpcs(self, method: str, code: str, default: float | None = None) -> float:
        return self.value("tensord_rpcs_total", default, method=SERVICE + method, code=code)

    def commands(self, command: str, code: str, default: float | None = None) -> float:
        return self.value("tensord_commands_total", default, command=command, code=code)

    def durations_count(self, method: str, code: str, default: float | None = None) -> float:
        return self.value("tensord_rpc_duration_seconds_count", default, method=SERVICE + method, code=code)

    def samples_named(self, name: str) -> dict[frozenset, float]:
        return {labels: v for (n, labels), v in self.values.items() if n == name}


def fetch(address: str) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return reply.headers.get("Content-Type", ""), reply.read().decode("utf-8")


def scrape(address: str) -> Scrape:
    return Scrape(fetch(address)[1])


@pytest.fixture
def launch():
    yield from launcher_fixture()


@pytest.fixture
def metered(launch):
    """A server of this test's own with metrics on a known port; returns (server, metrics address)."""
    metrics = f"127.0.0.1:{free_port()}"
    srv = launch.server("--metrics-listen", metrics, "--max-memory", "256M")
    return srv, metrics


def test_exposition_parses_with_the_documented_types(metered):
    srv, metrics = metered
    with tensord.connect(srv.address, timeout=30) as td:
        t = td.from_numpy(np.arange(10, dtype=np.int32))
        assert np.array_equal((t + 1).numpy(), np.arange(1, 11, dtype=np.int32))
        content_type, text = fetch(metrics)
    assert content_type.startswith("text/plain"), content_type
    page = Scrape(text)
    for name, kind in EXPECTED_TYPES.items():
        assert page.types.get(name) == kind, (name, page.types.get(name), text)


def test_memory_limit_and_sessions(metered):
    srv, metrics = metered
    assert scrape(metrics).value("tensord_memory_limit_bytes") == 256 * MIB
    with tensord.connect(srv.address, timeout=30) as a:
        assert a.memory_info().bytes_limit == 256 * MIB
        assert scrape(metrics).value("tensord_sessions") == 1
        with tensord.connect(srv.address, timeout=30):
            assert scrape(metrics).value("tensord_sessions") == 2
        assert wait_for(lambda: scrape(metrics).value("tensord_sessions") == 1)
    assert wait_for(lambda: scrape(metrics).value("tensord_sessions") == 0)


def test_upload_download_and_free_move_the_figures(metered):
    srv, metrics = metered
    payload = np.random.default_rng(7).integers(0, 256, size=3 * MIB + 17, dtype=np.uint8)
    n = payload.nbytes
    with tensord.connect(srv.address, timeout=60) as td:
        before = scrape(metrics)
        t = td.from_numpy(payload)
        after_upload = scrape(metrics)

        assert after_upload.value("tensord_stream_bytes_total", direction="in") >= (
            before.value("tensord_stream_bytes_total", 0.0, direction="in") + n
        )
        # Charged: the storage as allocated (in 2 MiB blocks at this size) and the handle.
        allocated = -(-n // (2 << 20)) * (2 << 20)
        assert after_upload.value("tensord_tensor_bytes", **CPU) == (
            before.value("tensord_tensor_bytes", 0.0, **CPU) + allocated + 512
        )
        assert after_upload.value("tensord_tensors", **CPU) == before.value("tensord_tensors", 0.0, **CPU) + 1
        assert after_upload.rpcs("Upload", "OK") == before.rpcs("Upload", "OK", 0.0) + 1
        # The gauge agrees with the server's own accounting.
        assert after_upload.value("tensord_tensor_bytes", **CPU) == td.memory_info().bytes_in_use

        out_before = after_upload.value("tensord_stream_bytes_total", 0.0, direction="out")
        assert np.array_equal(t.numpy(), payload)
        after_download = scrape(metrics)
        assert after_download.value("tensord_stream_bytes_total", direction="out") >= out_before + n
        assert after_download.rpcs("Download", "OK") == after_upload.rpcs("Download", "OK", 0.0) + 1
        # A download moves no bytes in, and holds no new tensor.
        assert after_download.value("tensord_stream_bytes_total", direction="in") == after_upload.value(
            "tensord_stream_bytes_total", direction="in"
        )
        assert after_download.value("tensord_tensor_bytes", **CPU) == after_upload.value("tensord_tensor_bytes", **CPU)

        t.free()
        td.synchronize()  # the free is queued behind earlier work, like any op
        after_free = scrape(metrics)
        assert after_free.value("tensord_tensor_bytes", **CPU) == before.value("tensord_tensor_bytes", 0.0, **CPU)
        assert after_free.value("tensord_tensors", **CPU) == before.value("tensord_tensors", 0.0, **CPU)
        assert after_free.commands("release", "OK") == after_download.commands("release", "OK", 0.0) + 1


def test_views_count_handles_but_not_bytes(metered):
    srv, metrics = metered
    with tensord.connect(srv.address, timeout=30) as td:
        base = td.zeros(10, 100, dtype="float64")  # 8000 bytes
        td.synchronize()
        before = scrape(metrics)
        transposed = base.T  # kept referenced: a collected view would be freed in the background
        view = transposed.unsqueeze(0)
        td.synchronize()
        after = scrape(metrics)
        assert view.shape == (1, 100, 10)
        # No storage: only the two handles' bookkeeping, 512 bytes each.
        assert after.value("tensord_tensor_bytes", **CPU) == before.value("tensord_tensor_bytes", **CPU) + 2 * 512
        assert after.value("tensord_tensors", **CPU) == before.value("tensord_tensors", **CPU) + 2
        copy = view.clone()
        td.synchronize()
        after_copy = scrape(metrics)
        assert after_copy.value("tensord_tensor_bytes", **CPU) == before.value("tensord_tensor_bytes", **CPU) + 3 * 512 + 8000
        assert after_copy.value("tensord_tensors", **CPU) == before.value("tensord_tensors", **CPU) + 3
        assert np.array_equal(copy.numpy(), np.zeros((1, 100, 10)))


def test_failing_calls_are_counted_under_their_code(metered):
    srv, metrics = metered
    missing = "0" * 32
    with RawSession(srv.address) as raw:
        before = scrape(metrics)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                raw.get(missing)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            raw.download(missing)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            raw.create(pb.CreateRequest(kind=pb.CreateRequest.ZEROS, dtype=pb.DTYPE_FLOAT32, shape=[-1]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = scrape(metrics)
    assert after.rpcs("GetTensor", "NOT_FOUND") == before.rpcs("GetTensor", "NOT_FOUND", 0.0) + 3
    assert after.rpcs("Download", "NOT_FOUND") == before.rpcs("Download", "NOT_FOUND", 0.0) + 1
    assert after.rpcs("Create", "INVALID_ARGUMENT") == before.rpcs("Create", "INVALID_ARGUMENT", 0.0) + 1
    assert after.rpcs("GetTensor", "OK", 0.0) == before.rpcs("GetTensor", "OK", 0.0)


def test_commands_are_counted_by_name_and_code(metered):
    srv, metrics = metered
    with tensord.connect(srv.address, timeout=30) as td:
        before = scrape(metrics)
        a = td.ones(3)
        b = a + 1
        (b * 2).numpy()
        with pytest.raises(tensord.InvalidArgumentError):
            a.reshape(7).numpy()
        with pytest.raises(tensord.NotFoundError):
            td._op("no_such_op_4f2a", a).pop().numpy()
        after = scrape(metrics)
    assert after.commands("add", "OK") == before.commands("add", "OK", 0.0) + 1
    assert after.commands("mul", "OK") == before.commands("mul", "OK", 0.0) + 1
    assert after.commands("reshape", "INVALID_ARGUMENT") == before.commands("reshape", "INVALID_ARGUMENT", 0.0) + 1
    # Names no op has are not labels of their own: a client cannot grow the series.
    assert after.commands("unknown", "NOT_FOUND") == before.commands("unknown", "NOT_FOUND", 0.0) + 1
    assert "no_such_op_4f2a" not in after.text
    assert wait_for(lambda: scrape(metrics).value("tensord_queued_commands") == 0)


def test_unauthenticated_calls_are_counted(launch, tmp_path):
    metrics = f"127.0.0.1:{free_port()}"
    token = "metrics-token-a91c"
    srv = launch.server("--metrics-listen", metrics, "--auth-token-file", str(write_token(tmp_path, token)))
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(srv.address, timeout=30, token="wrong-" + token)
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(srv.address, timeout=30, token="another-wrong-" + token)
    page = scrape(metrics)
    assert page.rpcs("OpenSession", "UNAUTHENTICATED") == 2
    assert page.rpcs("OpenSession", "OK", 0.0) == 0
    assert token not in page.text
    with tensord.connect(srv.address, timeout=30, token=token):
        assert scrape(metrics).rpcs("OpenSession", "OK") == 1


def test_histogram_agrees_with_the_counter(metered):
    srv, metrics = metered
    with tensord.connect(srv.address, timeout=30) as td:
        for i in range(5):
            td.arange(i + 1).numpy()
    with RawSession(srv.address) as raw:
        with pytest.raises(grpc.RpcError) as info:
            raw.get("f" * 32)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    page = scrape(metrics)
    counters = page.samples_named("tensord_rpcs_total")
    assert len(counters) >= 5  # OpenSession, Create, Download, GetTensor, CloseSession at least
    for labels, count in counters.items():
        labels = dict(labels)
        assert set(labels) == {"method", "code"}, labels
        assert labels["method"].startswith(SERVICE), labels
        assert re.fullmatch(r"[A-Z_]+", labels["code"]), labels
        assert page.value("tensord_rpc_duration_seconds_count", **labels) == count, labels
        buckets = sorted(
            (float(dict(l)["le"]), v)
            for l, v in page.samples_named("tensord_rpc_duration_seconds_bucket").items()
            if {k: v2 for k, v2 in dict(l).items() if k != "le"} == labels
        )
        assert buckets and math.isinf(buckets[-1][0]), labels
        assert buckets[-1][1] == count, labels
        cumulative = [v for _, v in buckets]
        assert cumulative == sorted(cumulative), (labels, buckets)
        assert page.value("tensord_rpc_duration_seconds_sum", **labels) >= 0
    assert page.commands("create", "OK") == 5
    assert page.rpcs("Download", "OK") == 5
    assert page.rpcs("GetTensor", "NOT_FOUND") == 1


def test_metrics_port_zero_is_logged(launch):
    srv = launch.server("--metrics-listen", "127.0.0.1:0")
    pattern = re.compile(r"metrics listening.*address=\"?(127\.0\.0\.1:\d+)")

    def logged() -> bool:
        return pattern.search(srv.stderr_text()) is not None

    assert wait_for(logged), srv.stderr_text()
    address = pattern.search(srv.stderr_text()).group(1)
    assert not address.endswith(":0")
    assert scrape(address).value("tensord_sessions") == 0


def test_no_metrics_port_without_the_flag(launch):
    port = free_port()
    srv = launch.server()
    with tensord.connect(srv.address, timeout=30) as td:
        td.zeros(3)
        with pytest.raises(urllib.error.URLError) as info:
            fetch(f"127.0.0.1:{port}")
        assert isinstance(info.value.reason, ConnectionRefusedError), info.value
        # And the server holds no listening socket besides its gRPC port.
        assert listening_tcp_ports(srv.proc.pid) == {srv.port}


def test_metrics_server_listens_where_told(metered):
    srv, metrics = metered
    assert listening_tcp_ports(srv.proc.pid) == {srv.port, int(metrics.rsplit(":", 1)[1])}
