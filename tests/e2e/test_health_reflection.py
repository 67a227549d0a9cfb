"""The standard gRPC services: grpc.health.v1.Health, `tensord --health-probe`,
and server reflection, which must describe exactly the contract the client was
generated from."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from servers import (
    SERVING,
    bearer,
    free_port,
    health_status,
    launcher_fixture,
    run_probe,
    with_metadata,
    write_token,
)
from tensord.v1 import tensord_pb2 as pb

TOKEN = "health-reflection-token-5b1f0c"
TENSORD_SERVICE = "tensord.v1.Tensord"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"


@pytest.fixture
def launch():
    yield from launcher_fixture()


@pytest.fixture
def token_server(launch, tmp_path):
    return launch.server("--auth-token-file", str(write_token(tmp_path, TOKEN)))


# ---- health -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["", TENSORD_SERVICE])
def test_health_is_serving(server, service):
    assert health_status(server.address, service) == SERVING


@pytest.mark.parametrize("service", ["", TENSORD_SERVICE])
def test_health_needs_no_token_on_a_token_server(token_server, service):
    assert health_status(token_server.address, service) == SERVING


def test_health_of_an_unknown_service_is_not_found(server):
    # The health protocol: "If the requested service is unknown, the call will fail with status NOT_FOUND."
    with pytest.raises(grpc.RpcError) as info:
        health_status(server.address, "no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_probe_of_a_live_server_exits_0(server):
    done = run_probe("--health-probe", server.address)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "SERVING" in done.stdout + done.stderr


def test_probe_of_a_token_server_needs_no_token(token_server):
    done = run_probe("--health-probe", token_server.address)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "SERVING" in done.stdout + done.stderr


def test_probe_of_a_dead_port_exits_1():
    done = run_probe("--health-probe", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "SERVING" not in (done.stdout + done.stderr).replace("NOT_SERVING", "")


def test_probe_of_a_stopped_server_exits_1(launch):
    srv = launch.server()
    assert run_probe("--health-probe", srv.address).returncode == 0
    assert srv.stop() == 0
    done = run_probe("--health-probe", srv.address)
    assert done.returncode == 1, (done.stdout, done.stderr)


# ---- reflection -------------------------------------------------------------


def _compiled_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return proto


def _reflected_pool(channel: grpc.Channel) -> tuple[ProtoReflectionDescriptorDatabase, descriptor_pool.DescriptorPool]:
    database = ProtoReflectionDescriptorDatabase(channel)
    return database, descriptor_pool.DescriptorPool(database)


def test_reflection_lists_the_services(server):
    with grpc.insecure_channel(server.address) as channel:
        database, _ = _reflected_pool(channel)
        services = set(database.get_services())
    assert {TENSORD_SERVICE, HEALTH_SERVICE, REFLECTION_SERVICE} <= services


def test_reflection_describes_the_tensord_methods(server):
    compiled = pb.DESCRIPTOR.services_by_name["Tensord"]
    with grpc.insecure_channel(server.address) as channel:
        _, pool = _reflected_pool(channel)
        reflected = pool.FindServiceByName(TENSORD_SERVICE)

        def signature(method) -> tuple:
            return (
                method.input_type.full_name,
                method.output_type.full_name,
                method.client_streaming,
                method.server_streaming,
            )

        assert {m.name: signature(m) for m in reflected.methods} == {m.name: signature(m) for m in compiled.methods}
        # The ones the README names, spelled out so that an empty service cannot pass.
        upload = reflected.methods_by_name["Upload"]
        assert (upload.client_streaming, upload.server_streaming) == (True, False)
        download = reflected.methods_by_name["Download"]
        assert (download.client_streaming, download.server_streaming) == (False, True)
        assert download.input_type.full_name == "tensord.v1.DownloadRequest"
        assert reflected.methods_by_name["OpenSession"].output_type.full_name == "tensord.v1.OpenSessionResponse"


def test_reflection_describes_tensor_meta(server):
    with grpc.insecure_channel(server.address) as channel:
        _, pool = _reflected_pool(channel)
        meta = pool.FindMessageTypeByName("tensord.v1.TensorMeta")
        described = descriptor_pb2.DescriptorProto()
        meta.CopyToProto(described)
        fields = {f.name: (f.number, f.type, f.label) for f in described.field}
    F = descriptor_pb2.FieldDescriptorProto
    assert fields == {
        "handle": (1, F.TYPE_STRING, F.LABEL_OPTIONAL),
        "dtype": (2, F.TYPE_ENUM, F.LABEL_OPTIONAL),
        "shape": (3, F.TYPE_INT64, F.LABEL_REPEATED),
        "strides": (4, F.TYPE_INT64, F.LABEL_REPEATED),
        "storage_offset": (5, F.TYPE_INT64, F.LABEL_OPTIONAL),
        "device": (6, F.TYPE_STRING, F.LABEL_OPTIONAL),
        "storage_nbytes": (7, F.TYPE_INT64, F.LABEL_OPTIONAL),
        "is_contiguous": (8, F.TYPE_BOOL, F.LABEL_OPTIONAL),
        "requires_grad": (9, F.TYPE_BOOL, F.LABEL_OPTIONAL),
        "grad_fn": (10, F.TYPE_STRING, F.LABEL_OPTIONAL),
    }
    assert meta.fields_by_name["dtype"].enum_type.full_name == "tensord.v1.DType"


def test_reflected_contract_is_the_compiled_one(server):
    """Every message, enum and the service, as the server describes them, equal the
    descriptors the client's stubs were generated from."""
    with grpc.insecure_channel(server.address) as channel:
        _, pool = _reflected_pool(channel)
        reflected = descriptor_pb2.FileDescriptorProto()
        pool.FindFileContainingSymbol(TENSORD_SERVICE).CopyToProto(reflected)
    compiled = _compiled_file()
    assert reflected.package == compiled.package == "tensord.v1"
    assert list(reflected.message_type) == list(compiled.message_type)
    assert list(reflected.enum_type) == list(compiled.enum_type)
    assert list(reflected.service) == list(compiled.service)


def test_reflection_of_an_unknown_symbol_fails(server):
    with grpc.insecure_channel(server.address) as channel:
        _, pool = _reflected_pool(channel)
        with pytest.raises(KeyError):
            pool.FindMessageTypeByName("tensord.v1.NoSuchMessage")
        # The same pool still answers for real symbols afterwards.
        assert pool.FindMessageTypeByName("tensord.v1.TensorMeta").name == "TensorMeta"


def test_reflection_on_a_token_server_needs_the_token(token_server):
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(token_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        for metadata in [(), bearer("not-" + TOKEN)]:
            with pytest.raises(grpc.RpcError) as info:
                list(stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            assert TOKEN not in (info.value.details() or "")

        replies = list(stub.ServerReflectionInfo(iter([request]), metadata=bearer(TOKEN), timeout=10))
        names = {s.name for s in replies[0].list_services_response.service}
        assert TENSORD_SERVICE in names

    with grpc.insecure_channel(token_server.address) as channel:
        _, pool = _reflected_pool(with_metadata(channel, bearer(TOKEN)))
        assert pool.FindMessageTypeByName("tensord.v1.TensorMeta").fields_by_name["handle"].number == 1

