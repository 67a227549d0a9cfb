"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run from the repository root with the client's venv (it needs the generated
stubs): `.venv/bin/python fuzz/make_seeds.py`. The seeds are valid requests
against the harness's fixture (fuzz/harness.h: handles x, xt, y, i, m, z,
big, col, h, e, loss), one or more per kind of request, so that the fuzzer
starts from inputs that reach deep into the server. The files are committed;
rerun this after changing the proto or the fixture.
"""
from __future__ import annotations

import pathlib
import re
import shutil

from tensord.v1 import tensord_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"


def frames(*messages: bytes) -> bytes:
    """FuzzedDataProvider's framing for ConsumeRandomLengthString: a backslash
    is doubled, and a backslash followed by another byte ends a string."""
    return b"".join(m.replace(b"\\", b"\\\\") + b"\\n" for m in messages)


def op_names() -> list[str]:
    names: set[str] = {"nonzero"}
    for source in (ROOT / "server" / "ops").glob("*.cc"):
        names.update(re.findall(r'^\s+\{"([a-z_0-9]+)", \{', source.read_text(), re.M))
    return sorted(names)


def handle(h: str) -> pb.OpArg:
    return pb.OpArg(handle=h)


def scalar(v: float | int | bool) -> pb.OpArg:
    if isinstance(v, bool):
        return pb.OpArg(scalar=pb.Scalar(b=v))
    if isinstance(v, int):
        return pb.OpArg(scalar=pb.Scalar(i=v))
    return pb.OpArg(scalar=pb.Scalar(f=v))


def ints(*values: int) -> pb.OpArg:
    return pb.OpArg(ints=pb.IntList(values=values))


def item(**kwargs) -> pb.IndexItem:
    return pb.IndexItem(**kwargs)


def index_arg(*items: pb.IndexItem) -> pb.OpArg:
    return pb.OpArg(index=pb.IndexList(items=items))


def execute(*commands: pb.Command) -> bytes:
    return pb.ExecuteRequest(commands=commands, flush_through=commands[-1].id).SerializeToString()


def op(i: int, name: str, args: list[pb.OpArg], attrs: dict[str, pb.OpArg] | None = None, outputs=("out",)) -> pb.Command:
    return pb.Command(id=i, outputs=list(outputs), op=pb.OpRequest(op=name, args=args, attrs=attrs or {}, no_grad=name.endswith("_")))


def execute_seeds() -> list[bytes]:
    seeds = []
    for name in op_names():
        seeds.append(frames(execute(op(1, name, [handle("x"), handle("y")]))))
        seeds.append(frames(execute(op(1, name, [handle("x")], {"dim": ints(1), "keepdim": scalar(True)}))))
        seeds.append(frames(execute(op(1, name, [handle("xt"), scalar(2.5)]))))
    seeds += [
        frames(execute(pb.Command(id=1, outputs=["r"], op=pb.OpRequest(op="index", args=[handle("x"), index_arg(item(slice=pb.Slice(start=1)), item(tensor=True)), handle("i")])))),
        frames(execute(pb.Command(id=1, outputs=["r"], op=pb.OpRequest(op="index", args=[handle("x"), index_arg(item(tensor=True)), handle("m")])))),
        frames(execute(pb.Command(id=1, outputs=["r"], op=pb.OpRequest(op="index", args=[handle("big"), index_arg(item(ellipsis=True), item(new_axis=True), item(array=pb.IndexArray(dtype=pb.DTYPE_INT64, shape=[2], data=(3).to_bytes(8, "little") + (-1).to_bytes(8, "little", signed=True))))])))),
        frames(execute(pb.Command(id=1, outputs=["r"], op=pb.OpRequest(op="index", args=[handle("z"), index_arg(item(boolean=True), item(array=pb.IndexArray(dtype=pb.DTYPE_BOOL, shape=[2], data=b"\x01\x00")))])))),
        frames(execute(pb.Command(id=1, op=pb.OpRequest(op="index_put_", no_grad=True, args=[handle("y"), index_arg(item(tensor=True)), handle("i"), scalar(3.0)], attrs={"accumulate": scalar(True)})))),
        frames(execute(pb.Command(id=1, outputs=["r"], view=pb.ViewRequest(handle="x", index=pb.ViewRequest.Index(items=[item(select=-1), item(slice=pb.Slice(step=2))]))))),
        frames(execute(pb.Command(id=1, outputs=["c"], copy=pb.CopyRequest(handle="xt", kind=pb.CopyRequest.CAST, dtype=pb.DTYPE_FLOAT16)))),
        frames(execute(pb.Command(id=1, outputs=["n"], create=pb.CreateRequest(kind=pb.CreateRequest.RANDN, dtype=pb.DTYPE_FLOAT64, shape=[3, 4], seed=7)))),
        frames(execute(pb.Command(id=1, backward=pb.BackwardRequest(tensors=["loss"])),
                       pb.Command(id=2, outputs=["g"], get_grad=pb.TensorRef(handle="x")),
                       pb.Command(id=3, release=pb.ReleaseRequest(handles=["g", "x", "nope"])))),
        frames(execute(pb.Command(id=1, backward=pb.BackwardRequest(tensors=["loss"], retain_graph=True))),
               execute(pb.Command(id=2, outputs=["opt"], create_optimizer=pb.CreateOptimizerRequest(kind=pb.CreateOptimizerRequest.ADAM, groups=[pb.ParamGroup(params=["x"], options=pb.OptimizerOptions(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8))]))),
               execute(pb.Command(id=3, step=pb.StepRequest(optimizer="opt")))),
        frames(execute(pb.Command(id=1, set_grad=pb.SetGradRequest(handle="x", grad="y")))),
        frames(execute(pb.Command(id=1, manual_seed=pb.ManualSeedRequest(seed=3)),
                       op(2, "dropout", [handle("x")], {"p": scalar(0.5), "train": scalar(True)}))),
        frames(execute(op(1, "cat", [handle("x"), handle("x")], {"dim": scalar(0)}),
                       op(2, "matmul", [handle("x"), handle("xt")], outputs=("mm",)),
                       op(3, "sum", [handle("mm")], outputs=("s",)))),
    ]
    return seeds


def upload_seeds() -> list[bytes]:
    def upload(dtype: int, shape: list[int], payload: bytes, strides=(), split: int = 0) -> bytes:
        head = pb.UploadRequest(header=pb.UploadHeader(dtype=dtype, shape=shape, strides=strides)).SerializeToString()
        parts = [payload[:split], payload[split:]] if split else [payload]
        return frames(head, *(pb.UploadRequest(chunk=p).SerializeToString() for p in parts))

    return [
        upload(pb.DTYPE_FLOAT32, [4, 5], bytes(range(80))),
        upload(pb.DTYPE_FLOAT32, [4, 5], bytes(range(80)), split=33),
        upload(pb.DTYPE_INT64, [2, 3], bytes(48 * 2)[: 8 * 6], strides=[1, 2]),
        upload(pb.DTYPE_UINT8, [3, 3], bytes(5), strides=[1, 1]),  # overlapping strides
        upload(pb.DTYPE_BOOL, [0, 7], b""),
        upload(pb.DTYPE_COMPLEX128, [1], bytes(16)),
        upload(pb.DTYPE_BFLOAT16, [3], bytes(6)),
        frames(pb.UploadRequest(header=pb.UploadHeader(dtype=pb.DTYPE_FLOAT64, shape=[2], after_command=1)).SerializeToString(),
               pb.UploadRequest(chunk=bytes(16)).SerializeToString()),
    ]


def download_seeds() -> list[bytes]:
    return [
        pb.DownloadRequest(handle=h, chunk_bytes=c).SerializeToString()
        for h, c in [("x", 0), ("xt", 65536), ("col", 0), ("big", 1 << 20), ("e", 0), ("z", 0), ("loss", 0), ("h", 0)]
    ]


def view_seeds() -> list[bytes]:
    V = pb.ViewRequest
    return [r.SerializeToString() for r in [
        V(handle="x", transpose=V.Transpose(dim0=0, dim1=-1)),
        V(handle="x", permute=V.Permute(dims=[1, 0])),
        V(handle="x", view=V.Reshape(shape=[-1])),
        V(handle="x", view=V.Reshape(shape=[2, -1, 5])),
        V(handle="e", squeeze=V.Squeeze()),
        V(handle="y", unsqueeze=V.Unsqueeze(dim=0)),
        V(handle="y", expand=V.Expand(shape=[3, -1])),
        V(handle="big", flatten=V.Flatten(start_dim=0, end_dim=-1)),
        V(handle="xt", select=V.Select(dim=1, index=-2)),
        V(handle="x", index=V.Index(items=[item(ellipsis=True), item(slice=pb.Slice(start=-3, stop=100, step=2)), item(new_axis=True)])),
    ]]


def optimizer_seeds() -> list[bytes]:
    C = pb.CreateOptimizerRequest
    O = pb.OptimizerOptions
    return [r.SerializeToString() for r in [
        C(kind=C.SGD, groups=[pb.ParamGroup(params=["x"], options=O(lr=0.1))]),
        C(kind=C.SGD, groups=[pb.ParamGroup(params=["x"], options=O(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))]),
        C(kind=C.ADAM, groups=[pb.ParamGroup(params=["x"], options=O(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=True))]),
        C(kind=C.ADAMW, groups=[pb.ParamGroup(params=["x"], options=O(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, maximize=True))]),
        C(kind=C.SGD, groups=[pb.ParamGroup(params=["x"], options=O(lr=0.1)), pb.ParamGroup(params=["x"], options=O(lr=0.2))]),
    ]]


def main() -> None:
    for name, seeds in [
        ("execute", execute_seeds()),
        ("upload", upload_seeds()),
        ("download", download_seeds()),
        ("view", view_seeds()),
        ("optimizer", optimizer_seeds()),
    ]:
        directory = CORPUS / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for n, seed in enumerate(seeds):
            (directory / f"seed-{n:03d}").write_bytes(seed)
        print(f"{name}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
