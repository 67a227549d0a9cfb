"""Checks for scripts/image-test.sh: the image's config, and a server from the image.

    image_smoke.py config INSPECT_JSON   # `podman image inspect` output
    image_smoke.py client HOST:PORT      # a tensord started from the image
    image_smoke.py metrics HOST:PORT     # its Prometheus endpoint

Each check prints one line, "ok: ..." or "FAIL: ...", which image-test.sh
counts; the exit status is 1 if any check failed. The client checks use the
real `tensord` package and grpcio-health-checking from the repository's venv.
"""
from __future__ import annotations

import json
import sys
import traceback
import urllib.request
from typing import Any, Callable

# What the Dockerfile promises to deploy manifests and `docker run` users.
USER = "10001:10001"
ENTRYPOINT = ["/usr/local/bin/tensord"]
CMD = ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9090"]
PORTS = {"50051/tcp", "9090/tcp"}
HEALTHCHECK = ["CMD", "/usr/local/bin/tensord", "--health-probe", "127.0.0.1:50051"]

failures = 0


def check(name: str, body: Callable[[], str | None]) -> None:
    """Runs one check: `body` returns a detail for the "ok" line or raises."""
    global failures
    try:
        detail = body()
    except Exception as error:  # a check's failure, reported, never a crash
        failures += 1
        message = str(error) or traceback.format_exc(limit=2)
        print(f"FAIL: {name}: {type(error).__name__}: {message}", flush=True)
    else:
        print(f"ok: {name}" + (f" ({detail})" if detail else ""), flush=True)


def expect_equal(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise AssertionError(f"{what} is {got!r}, expected {want!r}")


def expect_fields(*fields: tuple[str, Any, Any]) -> Callable[[], None]:
    """A check body comparing (name, got, want) triples."""
    def body() -> None:
        for name, got, want in fields:
            expect_equal(name, got, want)
    return body


def check_config(path: str) -> None:
    with open(path) as f:
        image = json.load(f)[0]
    config = image.get("Config") or {}

    check("USER is the non-root tensord user", expect_fields(("User", config.get("User"), USER)))
    check("ENTRYPOINT and default CMD", expect_fields(
        ("Entrypoint", config.get("Entrypoint"), ENTRYPOINT), ("Cmd", config.get("Cmd"), CMD)))
    check("EXPOSE gRPC and metrics ports", expect_fields(
        ("ExposedPorts", set(config.get("ExposedPorts") or {}), PORTS)))
    check("WORKDIR and VOLUME /data", expect_fields(
        ("WorkingDir", config.get("WorkingDir"), "/data"),
        ("Volumes", set(config.get("Volumes") or {}), {"/data"})))
    check("HEALTHCHECK uses the gRPC health probe", expect_fields(
        ("Healthcheck.Test", (image.get("Healthcheck") or {}).get("Test"), HEALTHCHECK)))
    check("STOPSIGNAL SIGTERM", expect_fields(("StopSignal", config.get("StopSignal"), "SIGTERM")))

    def labels() -> str:
        found = config.get("Labels") or {}
        for key in ("title", "description", "revision"):
            if not found.get(f"org.opencontainers.image.{key}"):
                raise AssertionError(f"label org.opencontainers.image.{key} is missing")
        return f"revision {found['org.opencontainers.image.revision'][:12]}"

    check("OCI labels", labels)


def check_client(address: str) -> None:
    import grpc
    import numpy as np
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    import tensord

    def health() -> str:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10)
        expect_equal("health status", health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status),
                     "SERVING")
        return "grpc.health.v1 SERVING"

    check("gRPC health", health)

    clients: list[tensord.Client] = []
    check("client connects", lambda: clients.append(tensord.connect(address, timeout=30)))
    if not clients:
        return
    with clients[0] as td:
        a = np.random.default_rng(0).standard_normal((257, 33)).astype(np.float32)

        def round_trip() -> str:
            t = td.from_numpy(a)
            expect_equal("shape", t.shape, a.shape)
            b = t.numpy()
            expect_equal("dtype", b.dtype, a.dtype)
            if not np.array_equal(a, b):
                raise AssertionError("downloaded values differ from the uploaded ones")
            return f"{a.nbytes} bytes float32 {a.shape}"

        def ops() -> str:
            t = td.from_numpy(a)
            transposed = t.T.contiguous().numpy()
            if not (transposed.flags.c_contiguous and np.array_equal(transposed, a.T)):
                raise AssertionError("t.T.contiguous() differs from a.T")
            widened = t.to(np.float64).numpy()
            expect_equal("to(float64) dtype", widened.dtype, np.dtype(np.float64))
            if not np.array_equal(widened, a.astype(np.float64)):
                raise AssertionError("t.to(np.float64) differs from a.astype(np.float64)")
            return "T.contiguous(), to(float64)"

        check("upload and download round trip", round_trip)
        check("server-side ops", ops)


def check_metrics(address: str) -> None:
    def scrape() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
            expect_equal("HTTP status", reply.status, 200)
            body = reply.read().decode()
        samples = [line for line in body.splitlines() if line and not line.startswith("#")]
        if not samples:
            raise AssertionError("/metrics returned no samples")
        return f"{len(samples)} samples"

    check("Prometheus /metrics", scrape)


def main(argv: list[str]) -> int:
    commands = {"config": check_config, "client": check_client, "metrics": check_metrics}
    if len(argv) != 3 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[1]](argv[2])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
