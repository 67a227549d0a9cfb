"""The execution model through the real server and client: ops are pipelined on an
ordered per-session stream, failures are raised at the next sync point with the
op and the line that issued it, blocking mode, backpressure, a client that dies
with a full queue, sessions sharing the workers fairly, and draining. (Broken
connections and resumed streams: test_faults.py.)

No timing assertions: fairness and bounds are checked by what has (or has not)
run when something else finished, and by memory figures.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import grpc
import numpy as np
import pytest

import tensord
from raw_wire import RawSession, pb, wait_for
from servers import measures_server_memory, rss_bytes
from syncing import synced

HERE = os.path.abspath(__file__)


def line_of(marker: str) -> int:
    """The line number in this file of the line that ends with `# marker`."""
    with open(HERE) as f:
        for number, line in enumerate(f, 1):
            if line.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(marker)


# ---- ordering ----------------------------------------------------------------------


def test_ops_run_in_issue_order(td):
    x = td.zeros(1, dtype="int64")
    snapshots = []
    for i in range(1, 301):
        x.add_(i)  # in place: only the order makes the snapshots right
        if i % 50 == 0:
            snapshots.append((i, x.clone()))
        if i % 7 == 0:
            x.mul_(1)
    for i, snap in snapshots:
        assert snap.item() == i * (i + 1) // 2
    assert x.item() == 300 * 301 // 2


def test_ops_return_before_the_server_has_run_them(td):
    a = td.from_numpy(np.ones((512, 512), np.float32))
    results = [a @ a for _ in range(20)]
    # Nothing waited so far: the replies of some are still to come.
    assert td._executor._completed < td._executor._last_id
    assert results[-1].shape == (512, 512)  # metadata waits for its own op only
    np.testing.assert_array_equal(results[-1].numpy(), np.full((512, 512), 512, np.float32))


def test_a_free_and_an_upload_are_ordered_with_the_ops(server_factory):
    srv = server_factory("--max-memory", "12M")
    with tensord.connect(srv.address, timeout=30) as td:
        big = td.zeros(1 << 20)  # 4 MiB
        doubled = big * 2  # 4 MiB more, issued before the free
        big.free()
        # 6 MiB fits only once `big` is gone, and the upload waits for that.
        arr = np.ones(3 << 19, np.float32)
        t = td.from_numpy(arr)
        del doubled
        np.testing.assert_array_equal(t.numpy()[:3], [1, 1, 1])


def test_many_threads_share_one_client(td):
    base = td.from_numpy(np.arange(100, dtype=np.float64))
    errors = []

    def work(k: int) -> None:
        try:
            t = base
            for _ in range(200):
                t = t + k
            np.testing.assert_array_equal(t.numpy(), np.arange(100) + 200 * k)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


# ---- failures ----------------------------------------------------------------------


def test_a_failure_is_raised_at_the_next_sync_with_its_op_and_line(td):
    a = td.from_numpy(np.ones((3, 4), np.float32))
    bad = a @ td.from_numpy(np.ones((5, 6), np.float32))  # bad matmul
    dependent = bad + 1
    unrelated = a * 2  # issued after the failure: runs all the same
    total = unrelated.sum()
    with pytest.raises(tensord.InvalidArgumentError) as info:
        total.numpy()
    err = info.value
    assert err.op == "matmul"
    assert err.where == (HERE, line_of("bad matmul"))
    assert err.details == "matmul: shapes [3, 4] and [5, 6] cannot be multiplied (4 != 5)"
    assert f"(op 'matmul' issued at {HERE}:{line_of('bad matmul')})" in str(err)
    assert not err.dependent
    # Raised once: the session goes on, and unrelated tensors are fine.
    assert total.item() == 24.0
    td.synchronize()
    np.testing.assert_array_equal(unrelated.numpy(), np.full((3, 4), 2, np.float32))
    # The tensors built on the failure raise it, naming the original op, whenever touched.
    for touch in (lambda: dependent.numpy(), lambda: dependent.shape, lambda: bad.dtype, lambda: dependent + 1):
        with pytest.raises(tensord.InvalidArgumentError) as info:
            touch()
        assert info.value.op == "matmul" and info.value.where == (HERE, line_of("bad matmul"))
    with pytest.raises(tensord.InvalidArgumentError) as info:
        dependent.numpy()
    assert info.value.dependent and "depends on a failed op" in str(info.value)
    assert "not computed" in repr(dependent)
    td.synchronize()  # nothing left to raise


def test_a_failure_in_a_long_pipeline_leaves_the_rest_running(td):
    x = td.zeros(4)
    for _ in range(500):
        x = x + 1
    x.add_(td.ones(3))  # bad add_
    for _ in range(500):
        x = x + 1
    with pytest.raises(tensord.InvalidArgumentError) as info:
        td.synchronize()
    assert info.value.op == "add_" and info.value.where == (HERE, line_of("bad add_"))
    assert "cannot be broadcast" in info.value.details
    np.testing.assert_array_equal(x.numpy(), np.full(4, 1000, np.float32))


def test_only_the_first_pending_failure_is_raised_and_then_the_next(td):
    t = td.ones(2)
    t.reshape(3)  # first failure
    t.transpose(0, 4)  # second failure
    with pytest.raises(tensord.Error) as first:
        td.synchronize()
    assert first.value.op == "reshape"
    with pytest.raises(tensord.Error) as second:
        td.synchronize()
    assert second.value.op == "transpose"
    td.synchronize()


def test_close_raises_a_failure_nobody_synced_on(server):
    client = tensord.connect(server.address, timeout=30)
    client.ones(2).reshape(5)  # never synced
    with pytest.raises(tensord.InvalidArgumentError, match="reshape"):
        client.close()
    assert client.closed
    client.close()  # raised once; closing again is harmless
    # An exception already on its way is not replaced by a pending failure.
    with pytest.raises(KeyError):
        with tensord.connect(server.address, timeout=30) as other:
            other.ones(2).reshape(5)
            raise KeyError("the user's own error")


def test_a_deferred_shape_warning_points_at_the_issuing_line(td):
    x = td.ones(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = td.nn.functional.mse_loss(x, td.ones(3))  # broadcast loss
        assert not caught  # both shapes were still on their way: no round trip was made
        loss.item()
    assert len(caught) == 1
    assert "Using a target size ((3,))" in str(caught[0].message)
    assert (caught[0].filename, caught[0].lineno) == (HERE, line_of("broadcast loss"))


# ---- blocking mode --------------------------------------------------------------------


def test_blocking_mode_raises_at_the_call(server):
    with tensord.connect(server.address, timeout=30, blocking=True) as td:
        assert td.blocking
        a = td.ones(2, 3)
        assert td._executor._completed == td._executor._last_id  # every op waited
        with pytest.raises(tensord.InvalidArgumentError) as info:
            a @ td.ones(4, 5)  # blocking matmul
        assert info.value.where == (HERE, line_of("blocking matmul"))
        td.synchronize()  # already raised: nothing pending
        np.testing.assert_array_equal((a + 1).numpy(), np.full((2, 3), 2, np.float32))


def test_blocking_mode_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("TENSORD_BLOCKING", "1")
    with tensord.connect(server.address, timeout=30) as td:
        assert td.blocking
        with pytest.raises(tensord.InvalidArgumentError):
            td.ones(2).reshape(3)
    monkeypatch.setenv("TENSORD_BLOCKING", "0")
    with tensord.connect(server.address, timeout=30) as td:
        assert not td.blocking
        td.ones(2).reshape(3)  # returns: the failure waits for a sync point
        with pytest.raises(tensord.InvalidArgumentError):
            td.synchronize()


# ---- backpressure and memory ----------------------------------------------------------


@measures_server_memory
def test_a_flooding_client_keeps_the_server_bounded(server_factory):
    srv = server_factory()
    pid = srv.proc.pid
    with tensord.connect(srv.address, timeout=60) as td:
        x = td.zeros(16)
        x.numpy()
        baseline = rss_bytes(pid)
        peak = baseline
        for i in range(60_000):
            x = x + 1
            if i % 5000 == 0:
                peak = max(peak, rss_bytes(pid))
                # The client holds at most its window of commands unanswered.
                assert td._executor._last_id - td._executor._completed <= tensord._executor.MAX_IN_FLIGHT + 1
        peak = max(peak, rss_bytes(pid))
        np.testing.assert_array_equal(x.numpy(), np.full(16, 60_000, np.float32))
    # 60,000 queued ops would take far more: the queue and the handles stay bounded.
    assert peak - baseline < 64 << 20, (baseline, peak)


@measures_server_memory
def test_a_client_that_issues_faster_than_the_server_computes_is_held_back(server_factory):
    """A raw client sends in-place adds on a 16 MiB tensor (milliseconds each) as fast
    as gRPC lets it: the server stops reading at its queue bound, flow control stops
    the sender, and the server's memory stays flat."""
    srv = server_factory()
    pid = srv.proc.pid
    with RawSession(srv.address) as raw:
        create = pb.CreateRequest(kind=pb.CreateRequest.ZEROS, dtype=pb.DTYPE_FLOAT32, shape=[1 << 22])
        handle = raw.create(create).handle
        baseline = rss_bytes(pid)
        sent = [0]
        batch = 1000

        def requests():
            command_id = 0
            for _ in range(2000):  # two million commands, if nothing held the sender back
                commands = []
                for _ in range(batch):
                    command_id += 1
                    commands.append(pb.Command(
                        id=command_id,
                        op=pb.OpRequest(op="add_", args=[pb.OpArg(handle=handle), pb.OpArg(scalar=pb.Scalar(i=1))]),
                    ))
                yield pb.ExecuteRequest(commands=commands)
                sent[0] += batch

        call = raw.stub.Execute(requests(), metadata=raw.metadata)
        # A burst fills the transport's buffers; then the sender moves at the server's pace.
        assert not wait_for(lambda: sent[0] >= 2_000_000, timeout=4)
        stalled_at = sent[0]
        assert not wait_for(lambda: sent[0] > stalled_at + 50_000, timeout=2), (stalled_at, sent[0])
        assert rss_bytes(pid) - baseline < 64 << 20
        call.cancel()
    # Closed by `raw` on leaving the block: its queue and tensors are gone.
    assert wait_for(lambda: _sessions(srv.address) == 0, timeout=20)


def _sessions(address: str) -> int:
    with RawSession(address) as probe:
        return probe.memory_info().sessions - 1


def test_a_killed_client_with_a_full_queue_gives_everything_back(server_factory, tmp_path):
    # The session outlives its broken stream only for its lease (a client whose
    # link dropped may resume it within that time; see test_faults.py).
    srv = server_factory("--session-ttl", "2")
    script = tmp_path / "flood.py"
    script.write_text(textwrap.dedent(f"""
        import sys, numpy as np, tensord
        td = tensord.connect({srv.address!r}, timeout=600)
        a = td.from_numpy(np.ones((1024, 1024), np.float32))
        keep = [td.zeros(1 << 20) for _ in range(8)]  # 32 MiB held
        for _ in range(2000):  # half a minute of work or more, queued
            a @ a
        print("queued", flush=True)
        sys.stdin.read()
    """))
    with RawSession(srv.address).keep_alive_in_background() as watcher:
        baseline = watcher.memory_info().bytes_in_use
        proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "queued"
            assert wait_for(lambda: watcher.memory_info().bytes_in_use >= baseline + (36 << 20), timeout=60)
            assert watcher.memory_info().sessions == 2
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # The stream broke; once the lease ran out, queue dropped, session closed, every byte back.
        assert wait_for(lambda: watcher.memory_info().sessions == 1, timeout=30)
        assert wait_for(lambda: watcher.memory_info().bytes_in_use == baseline, timeout=30)
        # And the workers are free again: the watcher's own work runs at once.
        handle = watcher.create(pb.CreateRequest(kind=pb.CreateRequest.ONES, dtype=pb.DTYPE_FLOAT32, shape=[3])).handle
        assert watcher.download_numpy(handle).tolist() == [1.0, 1.0, 1.0]
    assert srv.alive()


# ---- fairness --------------------------------------------------------------------------


def test_small_ops_are_not_held_back_by_another_sessions_matmuls(server):
    with tensord.connect(server.address, timeout=120) as heavy, tensord.connect(server.address, timeout=120) as light:
        a = heavy.from_numpy(np.random.default_rng(0).random((1024, 1024), dtype=np.float32))
        outs = [a @ a for _ in range(60)]  # seconds of work on this machine, all queued
        x = light.from_numpy(np.zeros(4, np.float32))
        for _ in range(50):
            x = x + 1
            x.numpy()  # a round trip each: each waits behind the heavy queue, or does not
        # The light session finished while the heavy one still had most of its queue.
        assert heavy._executor._completed < heavy._executor._last_id
        np.testing.assert_array_equal(x.numpy(), np.full(4, 50, np.float32))
        heavy.synchronize()
        assert outs[-1].shape == (1024, 1024)


def test_two_sessions_matmuls_run_side_by_side_correctly(server):
    rng = np.random.default_rng(3)
    arrays = [rng.random((300, 260), dtype=np.float32), rng.random((260, 280), dtype=np.float32)]
    results = {}

    def run(name: str, transpose: bool) -> None:
        with tensord.connect(server.address, timeout=120) as td:
            a = td.from_numpy(arrays[0].T.copy()).T if transpose else td.from_numpy(arrays[0])
            b = td.from_numpy(arrays[1])
            outs = [a @ b for _ in range(30)]
            results[name] = [o.numpy() for o in outs[::10]]

    threads = [threading.Thread(target=run, args=(str(i), i % 2 == 1)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = arrays[0] @ arrays[1]
    assert len(results) == 4
    for outs in results.values():
        for out in outs:
            np.testing.assert_allclose(out, expected, rtol=1e-5)


# ---- the wire --------------------------------------------------------------------------


def test_execute_stream_protocol_errors(server):
    with RawSession(server.address) as raw:
        handle = raw.create(pb.CreateRequest(kind=pb.CreateRequest.ONES, dtype=pb.DTYPE_FLOAT32, shape=[2])).handle
        neg = lambda i, out: pb.Command(id=i, outputs=[out], op=pb.OpRequest(op="neg", args=[pb.OpArg(handle=handle)]))
        # Ids must increase.
        with pytest.raises(grpc.RpcError) as info:
            list(raw.stub.Execute(iter([pb.ExecuteRequest(commands=[neg(5, "a"), neg(5, "b")])]),
                                  metadata=raw.metadata, timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "increase" in info.value.details()
        # Bad commands are answered one by one; the stream goes on.
        replies = list(raw.stub.Execute(iter([pb.ExecuteRequest(commands=[
            # Ids go on from the previous stream's: they increase over the session.
            neg(11, handle),  # a handle in use
            pb.Command(id=12, outputs=["x", "y"], op=pb.OpRequest(op="neg", args=[pb.OpArg(handle=handle)])),
            pb.Command(id=13),  # no operation
            neg(14, "z"),
            pb.Command(release=pb.ReleaseRequest(handles=["z", "never-made"])),
            pb.Command(id=16, sync=pb.SyncRequest()),
        ])]), metadata=raw.metadata, timeout=10))
        results = {r.id: r for reply in replies for r in reply.results}
        assert replies[-1].completed == 16
        assert results[11].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "already in use" in results[11].message
        assert results[12].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "2 handles" in results[12].message
        assert results[13].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "names no operation" in results[13].message
        assert results[14].code == 0 and results[14].outputs[0].handle == "z"
        assert 16 not in results  # a sync describes nothing
        # An id read before, its reply not acknowledged, is a resend after a
        # reconnect: skipped, not run again (the handle "w" is never made).
        replies = list(raw.stub.Execute(iter([pb.ExecuteRequest(commands=[
            neg(14, "w"), pb.Command(id=17, sync=pb.SyncRequest()),
        ])]), metadata=raw.metadata, timeout=10))
        assert replies[-1].completed == 17
        # Once acknowledged, an old id cannot be a resend: refused.
        with pytest.raises(grpc.RpcError) as info:
            list(raw.stub.Execute(iter([pb.ExecuteRequest(acknowledged=17, commands=[neg(3, "w")])]),
                                  metadata=raw.metadata, timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "acknowledged" in info.value.details()
        # z was released and the failed commands made nothing; "a" is from the first stream.
        assert sorted(raw.handles()) == sorted([handle, "a"])
        # One Execute stream per session at a time: a second one takes over
        # from the first (whose connection may be dead without the server knowing).
        stop = threading.Event()

        def sync_then_idle():
            yield pb.ExecuteRequest(commands=[pb.Command(id=18, sync=pb.SyncRequest())], flush_through=18)
            stop.wait(30)

        first = raw.stub.Execute(sync_then_idle(), metadata=raw.metadata)
        assert next(first).completed == 18  # it is attached
        second = list(raw.stub.Execute(iter([pb.ExecuteRequest(commands=[pb.Command(id=19, sync=pb.SyncRequest())])]),
                                       metadata=raw.metadata, timeout=10))
        assert second[-1].completed == 19
        with pytest.raises(grpc.RpcError) as info:
            list(first)
        assert info.value.code() == grpc.StatusCode.ABORTED and "took over" in info.value.details()
        assert ("tensord-stream-end", "superseded") in info.value.trailing_metadata()
        stop.set()


def test_a_download_waits_for_the_command_it_names(server):
    with RawSession(server.address) as raw:
        handle = raw.create(pb.CreateRequest(kind=pb.CreateRequest.ZEROS, dtype=pb.DTYPE_INT64, shape=[1])).handle
        gate = threading.Event()

        def requests():
            yield pb.ExecuteRequest(commands=[
                pb.Command(id=1, op=pb.OpRequest(op="add_", args=[pb.OpArg(handle=handle), pb.OpArg(scalar=pb.Scalar(i=7))]))
            ])
            gate.wait(30)
            yield pb.ExecuteRequest(commands=[pb.Command(id=2, sync=pb.SyncRequest())])

        call = raw.stub.Execute(requests(), metadata=raw.metadata)
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("value", _download_after(raw, handle, 2)))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "the download did not wait for command 2"
        gate.set()
        reader.join(30)
        assert result["value"] == [7]
        call.cancel()


def _download_after(raw: RawSession, handle: str, after: int) -> list[int]:
    stream = raw.stub.Download(pb.DownloadRequest(handle=handle, after_command=after), metadata=raw.metadata, timeout=30)
    messages = list(stream)
    return np.frombuffer(b"".join(m.chunk for m in messages[1:]), np.int64).tolist()


# ---- draining ---------------------------------------------------------------------------


def test_sigterm_runs_or_answers_the_queued_work(server_factory):
    srv = server_factory("--shutdown-grace", "60")
    td = tensord.connect(srv.address, timeout=120)
    a = td.from_numpy(np.ones((768, 768), np.float32))
    outs = [a @ a for _ in range(40)]
    srv.proc.send_signal(signal.SIGTERM)
    answers = []
    for out in outs:  # each either ran, or is answered UNAVAILABLE saying why
        try:
            answers.append(out.numpy()[0, 0])
        except tensord.UnavailableError as e:
            answers.append(str(e))
    try:
        td.close()
    except tensord.UnavailableError as e:
        answers.append(str(e))
    assert answers and all(v == 768 or "shutting down" in v or "stream ended" in v for v in answers), answers
    assert srv.proc.wait(timeout=120) == 0, srv.stderr_text()
