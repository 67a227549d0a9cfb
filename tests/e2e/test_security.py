"""Bearer-token auth, TLS, mutual TLS, and the refusal to serve a
non-loopback address without a token unless told --insecure."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

import tensord
from certs import Pki, make_pki
from raw_wire import SESSION_KEY, header, pb
from servers import (
    SERVING,
    Launcher,
    bearer,
    clean_env,
    health_status,
    ipv6_loopback_available,
    launcher_fixture,
    run_probe,
    write_token,
)
from tensord.v1 import tensord_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-for-tensord-e2e-7f2d9a"
OTHER_TOKEN = "other-servers-token-0c41be"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch):
    """The client reads TENSORD_TOKEN by default; these tests say what they send."""
    monkeypatch.delenv("TENSORD_TOKEN", raising=False)


@pytest.fixture
def launch():
    yield from launcher_fixture()


@pytest.fixture(scope="module")
def module_launch():
    yield from launcher_fixture()


@pytest.fixture(scope="module")
def token_server(module_launch: Launcher, tmp_path_factory):
    """Holds TOKEN, in a file with whitespace around it; logs at debug, where leaks are likeliest."""
    directory = tmp_path_factory.mktemp("token")
    path = write_token(directory, TOKEN, padding=" \n\t ")
    return module_launch.server("--auth-token-file", str(path), "--log-level", "debug")


@pytest.fixture(scope="module")
def other_token_server(module_launch: Launcher, tmp_path_factory):
    directory = tmp_path_factory.mktemp("other-token")
    return module_launch.server("--auth-token-file", str(write_token(directory, OTHER_TOKEN)))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(module_launch: Launcher, pki: Pki):
    return module_launch.server("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))


@pytest.fixture(scope="module")
def mtls_server(module_launch: Launcher, pki: Pki):
    return module_launch.server(
        "--tls-cert", str(pki.server_cert),
        "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca_cert),
    )


def assert_no_secret(text: str) -> None:
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in text, f"a token leaked: {text!r}"


def roundtrip(td: tensord.Client) -> None:
    """Upload, an op, a download: the things a client does."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = td.from_numpy(a)
    assert np.array_equal(t.numpy(), a)
    assert np.array_equal(t.T.contiguous().numpy(), a.T)
    assert np.array_equal(t.to("float64").numpy(), a.astype(np.float64))
    assert np.array_equal(td.ones(2, 2).numpy(), np.ones((2, 2), np.float32))


# ---- token ------------------------------------------------------------------


def test_no_token_is_unauthenticated(token_server):
    with pytest.raises(tensord.UnauthenticatedError) as info:
        tensord.connect(token_server.address, timeout=30)
    assert info.value.code == UNAUTHENTICATED
    assert_no_secret(info.value.details)


@pytest.mark.parametrize("sent", ["wrong-token", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), OTHER_TOKEN])
def test_wrong_token_is_unauthenticated(token_server, sent):
    with pytest.raises(tensord.UnauthenticatedError) as info:
        tensord.connect(token_server.address, timeout=30, token=sent)
    assert info.value.code == UNAUTHENTICATED
    assert_no_secret(info.value.details)
    assert sent not in info.value.details


def test_each_servers_token_opens_only_that_server(token_server, other_token_server):
    with pytest.raises(tensord.UnauthenticatedError) as info:
        tensord.connect(other_token_server.address, timeout=30, token=TOKEN)
    assert_no_secret(info.value.details)
    with tensord.connect(other_token_server.address, timeout=30, token=OTHER_TOKEN) as td:
        roundtrip(td)
    with tensord.connect(token_server.address, timeout=30, token=TOKEN) as td:
        roundtrip(td)


@pytest.mark.parametrize(
    "metadata",
    [
        (("x-api-key", TOKEN),),
        (("authorization", TOKEN),),
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", f"Bearer{TOKEN}"),),
        (("authorization", "Bearer"),),
        (("token", TOKEN),),
        (("authorization-bin", TOKEN.encode()),),
    ],
    ids=["x-api-key", "no-scheme", "basic", "no-space", "empty-bearer", "token-key", "binary-key"],
)
def test_token_in_the_wrong_form_is_unauthenticated(token_server, metadata):
    with grpc.insecure_channel(token_server.address) as channel:
        stub = pb_grpc.TensordStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.OpenSession(pb.OpenSessionRequest(client_name="e2e"), metadata=metadata, timeout=10)
    assert info.value.code() == UNAUTHENTICATED
    assert_no_secret(info.value.details() or "")


def test_every_tensord_rpc_needs_the_token(token_server):
    """With a valid session opened with the token, each method called without it is refused."""
    with grpc.insecure_channel(token_server.address) as channel:
        stub = pb_grpc.TensordStub(channel)
        session = stub.OpenSession(pb.OpenSessionRequest(client_name="e2e"), metadata=bearer(TOKEN), timeout=10)
        with_token = bearer(TOKEN) + ((SESSION_KEY, session.session_id),)
        handle = stub.Create(
            pb.CreateRequest(kind=pb.CreateRequest.ONES, dtype=pb.DTYPE_INT32, shape=[4]),
            metadata=with_token, timeout=10,
        ).handle
        session_only = ((SESSION_KEY, session.session_id),)
        wrong = bearer("nope") + session_only
        calls = {
            "OpenSession": lambda md: stub.OpenSession(pb.OpenSessionRequest(), metadata=md, timeout=10),
            "KeepAlive": lambda md: stub.KeepAlive(pb.KeepAliveRequest(), metadata=md, timeout=10),
            "Upload": lambda md: stub.Upload(
                iter([header(pb.DTYPE_INT8, [2]), pb.UploadRequest(chunk=b"\x01\x02")]), metadata=md, timeout=10
            ),
            "Download": lambda md: list(stub.Download(pb.DownloadRequest(handle=handle), metadata=md, timeout=10)),
            "GetTensor": lambda md: stub.GetTensor(pb.TensorRef(handle=handle), metadata=md, timeout=10),
            "ListTensors": lambda md: stub.ListTensors(pb.ListTensorsRequest(), metadata=md, timeout=10),
            "MemoryInfo": lambda md: stub.MemoryInfo(pb.MemoryInfoRequest(), metadata=md, timeout=10),
            "Create": lambda md: stub.Create(
                pb.CreateRequest(kind=pb.CreateRequest.ZEROS, dtype=pb.DTYPE_FLOAT32, shape=[2]), metadata=md, timeout=10
            ),
            "View": lambda md: stub.View(
                pb.ViewRequest(handle=handle, unsqueeze=pb.ViewRequest.Unsqueeze(dim=0)), metadata=md, timeout=10
            ),
            "Copy": lambda md: stub.Copy(pb.CopyRequest(handle=handle, kind=pb.CopyRequest.CLONE), metadata=md, timeout=10),
            "Free": lambda md: stub.Free(pb.FreeRequest(handles=[handle]), metadata=md, timeout=10),
            "ManualSeed": lambda md: stub.ManualSeed(pb.ManualSeedRequest(seed=1), metadata=md, timeout=10),
            "Op": lambda md: stub.Op(
                pb.OpRequest(op="neg", args=[pb.OpArg(handle=handle)]), metadata=md, timeout=10
            ),
            "SetRequiresGrad": lambda md: stub.SetRequiresGrad(
                pb.SetRequiresGradRequest(handle=handle, requires_grad=False), metadata=md, timeout=10
            ),
            "Detach": lambda md: stub.Detach(pb.TensorRef(handle=handle), metadata=md, timeout=10),
            "RetainGrad": lambda md: stub.RetainGrad(pb.TensorRef(handle=handle), metadata=md, timeout=10),
            "GetGrad": lambda md: stub.GetGrad(pb.TensorRef(handle=handle), metadata=md, timeout=10),
            "SetGrad": lambda md: stub.SetGrad(pb.SetGradRequest(handle=handle), metadata=md, timeout=10),
            "Backward": lambda md: stub.Backward(pb.BackwardRequest(tensors=[handle]), metadata=md, timeout=10),
            "ZeroGrad": lambda md: stub.ZeroGrad(pb.ZeroGradRequest(handles=[handle]), metadata=md, timeout=10),
            "CreateOptimizer": lambda md: stub.CreateOptimizer(
                pb.CreateOptimizerRequest(kind=pb.CreateOptimizerRequest.SGD), metadata=md, timeout=10
            ),
            "Step": lambda md: stub.Step(pb.StepRequest(optimizer="x"), metadata=md, timeout=10),
            "CloseSession": lambda md: stub.CloseSession(pb.CloseSessionRequest(), metadata=md, timeout=10),
            "Execute": lambda md: list(
                stub.Execute(
                    iter([pb.ExecuteRequest(commands=[pb.Command(
                        id=1, outputs=["n"], op=pb.OpRequest(op="neg", args=[pb.OpArg(handle=handle)])
                    )])]),
                    metadata=md,
                    timeout=10,
                )
            ),
        }
        declared = {m.name for m in pb.DESCRIPTOR.services_by_name["Tensord"].methods}
        assert set(calls) == declared, "a Tensord method is not covered here"
        for name, call in calls.items():
            for metadata in (session_only, wrong):
                with pytest.raises(grpc.RpcError) as info:
                    call(metadata)
                assert info.value.code() == UNAUTHENTICATED, (name, metadata, info.value.details())
                assert_no_secret(info.value.details() or "")
        # None of the refused calls touched the session: the tensor is still there, whole.
        listed = stub.ListTensors(pb.ListTensorsRequest(), metadata=with_token, timeout=10)
        assert [m.handle for m in listed.tensors] == [handle]
        chunks = [m.chunk for m in stub.Download(pb.DownloadRequest(handle=handle), metadata=with_token, timeout=10)]
        assert np.array_equal(np.frombuffer(b"".join(chunks), np.int32), np.ones(4, np.int32))
        stub.CloseSession(pb.CloseSessionRequest(), metadata=with_token, timeout=10)


def test_right_token_works(token_server):
    with tensord.connect(token_server.address, timeout=30, token=TOKEN) as td:
        roundtrip(td)
        kept = td.zeros(1)
        assert td.memory_info().session_tensors == 1
        kept.free()


def test_token_from_the_environment(token_server, monkeypatch):
    monkeypatch.setenv("TENSORD_TOKEN", TOKEN)
    with tensord.connect(token_server.address, timeout=30) as td:
        roundtrip(td)
    monkeypatch.setenv("TENSORD_TOKEN", "not-" + TOKEN)
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(token_server.address, timeout=30)


def test_explicit_token_beats_the_environment(token_server, monkeypatch):
    monkeypatch.setenv("TENSORD_TOKEN", "not-" + TOKEN)
    with tensord.connect(token_server.address, timeout=30, token=TOKEN) as td:
        roundtrip(td)


def test_health_needs_no_token(token_server):
    assert health_status(token_server.address) == SERVING
    assert health_status(token_server.address, "tensord.v1.Tensord") == SERVING


def test_tokens_never_reach_the_log(launch, tmp_path):
    """A server of its own, stopped before its log is read, so the whole log is checked."""
    srv = launch.server("--auth-token-file", str(write_token(tmp_path, TOKEN)), "--log-level", "debug")
    for sent in (None, "wrong-" + OTHER_TOKEN, OTHER_TOKEN):
        with pytest.raises(tensord.UnauthenticatedError):
            tensord.connect(srv.address, timeout=30, token=sent)
    with grpc.insecure_channel(srv.address) as channel:
        with pytest.raises(grpc.RpcError):
            pb_grpc.TensordStub(channel).OpenSession(
                pb.OpenSessionRequest(), metadata=(("authorization", TOKEN),), timeout=10
            )
    with tensord.connect(srv.address, timeout=30, token=TOKEN) as td:
        roundtrip(td)
    assert srv.stop() == 0
    log = srv.stderr_text()
    assert "level=" in log  # the log was captured at all
    assert_no_secret(log)
    assert_no_secret(srv.stdout_text())


# ---- TLS ----------------------------------------------------------------------


def test_plaintext_client_fails_against_tls(tls_server):
    with pytest.raises(tensord.Error) as info:
        tensord.connect(tls_server.address, timeout=10)
    assert info.value.code == UNAVAILABLE, info.value


def test_tls_client_with_the_ca_works(tls_server, pki):
    ca = pki.read(pki.ca_cert)
    with tensord.connect(tls_server.address, timeout=30, root_certificates=ca) as td:
        roundtrip(td)
    with tensord.connect(tls_server.address, timeout=30, tls=True, root_certificates=ca) as td:
        roundtrip(td)
    # The certificate names localhost too.
    with tensord.connect(f"localhost:{tls_server.port}", timeout=30, tls=True, root_certificates=ca) as td:
        assert td.memory_info().session_tensors == 0


def test_tls_client_with_another_ca_fails(tls_server, pki):
    with pytest.raises(tensord.Error) as info:
        tensord.connect(tls_server.address, timeout=10, root_certificates=pki.read(pki.rogue_ca_cert))
    assert info.value.code == UNAVAILABLE, info.value


def test_tls_health_and_probe(tls_server, pki):
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.read(pki.ca_cert))
    assert health_status(tls_server.address, credentials=credentials) == SERVING
    done = run_probe("--health-probe", tls_server.address, "--probe-ca", str(pki.ca_cert))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "SERVING" in done.stdout + done.stderr
    # Without the CA the probe talks plaintext to a TLS port, and must say "not serving".
    done = run_probe("--health-probe", tls_server.address)
    assert done.returncode == 1, (done.stdout, done.stderr)
    # With a CA that did not sign the server's certificate, too.
    done = run_probe("--health-probe", tls_server.address, "--probe-ca", str(pki.rogue_ca_cert))
    assert done.returncode == 1, (done.stdout, done.stderr)


def test_mtls_client_with_a_cert_from_the_ca_works(mtls_server, pki):
    with tensord.connect(
        mtls_server.address,
        timeout=30,
        root_certificates=pki.read(pki.ca_cert),
        private_key=pki.read(pki.client_key),
        certificate_chain=pki.read(pki.client_cert),
    ) as td:
        roundtrip(td)


def test_mtls_without_a_client_cert_fails(mtls_server, pki):
    with pytest.raises(tensord.Error) as info:
        tensord.connect(mtls_server.address, timeout=10, root_certificates=pki.read(pki.ca_cert))
    assert info.value.code == UNAVAILABLE, info.value


def test_mtls_with_a_rogue_client_cert_fails(mtls_server, pki):
    with pytest.raises(tensord.Error) as info:
        tensord.connect(
            mtls_server.address,
            timeout=10,
            root_certificates=pki.read(pki.ca_cert),
            private_key=pki.read(pki.rogue_client_key),
            certificate_chain=pki.read(pki.rogue_client_cert),
        )
    assert info.value.code == UNAVAILABLE, info.value


def test_mtls_and_token_together(launch, pki, tmp_path):
    srv = launch.server(
        "--tls-cert", str(pki.server_cert),
        "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca_cert),
        "--auth-token-file", str(write_token(tmp_path, TOKEN)),
    )
    creds = dict(
        root_certificates=pki.read(pki.ca_cert),
        private_key=pki.read(pki.client_key),
        certificate_chain=pki.read(pki.client_cert),
    )
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(srv.address, timeout=30, **creds)
    with tensord.connect(srv.address, timeout=30, token=TOKEN, **creds) as td:
        roundtrip(td)


# ---- non-loopback listening -------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_non_loopback_without_token_is_refused(launch, listen):
    run = launch.run("--listen", listen)
    code = run.wait_exit(timeout=60)
    assert code != 0
    assert "listening on" not in run.stdout_text()
    log = run.stderr_text()
    assert "--insecure" in log and "--auth-token-file" in log, log


def test_non_loopback_from_the_environment_is_refused(launch):
    run = launch.run(env=clean_env(TENSORD_LISTEN="0.0.0.0:0"))
    assert run.wait_exit(timeout=60) != 0
    assert "--insecure" in run.stderr_text(), run.stderr_text()


def test_non_loopback_with_insecure_starts(launch):
    srv = launch.server("--insecure", listen="0.0.0.0:0")
    with tensord.connect(srv.address, timeout=30) as td:
        roundtrip(td)
    assert srv.stop() == 0


def test_non_loopback_with_a_token_starts(launch, tmp_path):
    srv = launch.server("--auth-token-file", str(write_token(tmp_path, TOKEN)), listen="0.0.0.0:0")
    with pytest.raises(tensord.UnauthenticatedError):
        tensord.connect(srv.address, timeout=30)
    with tensord.connect(srv.address, timeout=30, token=TOKEN) as td:
        roundtrip(td)
    assert srv.stop() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_without_token_starts(launch, host):
    if host == "[::1]" and not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    srv = launch.server(listen=f"{host}:0")
    target = f"{host}:{srv.port}"
    with tensord.connect(target, timeout=30) as td:
        roundtrip(td)
    assert srv.stop() == 0


@pytest.mark.parametrize("value", ["1", "true"])
def test_insecure_from_the_environment(launch, value):
    srv = launch.server(listen="0.0.0.0:0", env=clean_env(TENSORD_INSECURE=value))
    with tensord.connect(srv.address, timeout=30) as td:
        roundtrip(td)


@pytest.mark.parametrize("value", ["0", "false"])
def test_insecure_off_in_the_environment_still_refuses(launch, value):
    run = launch.run("--listen", "0.0.0.0:0", env=clean_env(TENSORD_INSECURE=value))
    assert run.wait_exit(timeout=60) != 0
    assert "--insecure" in run.stderr_text(), run.stderr_text()


def test_tls_from_the_environment(launch, pki):
    srv = launch.server(env=clean_env(TENSORD_TLS_CERT=str(pki.server_cert), TENSORD_TLS_KEY=str(pki.server_key)))
    with pytest.raises(tensord.Error) as info:
        tensord.connect(srv.address, timeout=10)
    assert info.value.code == UNAVAILABLE, info.value
    with tensord.connect(srv.address, timeout=30, root_certificates=pki.read(pki.ca_cert)) as td:
        roundtrip(td)
