#!/usr/bin/env python3
"""Generates the gRPC stubs of tensord's wire contract into the source tree.

    python client_py/gen_stubs.py

reads `<repo>/proto/tensord/v1/tensord.proto` and writes
`client_py/tensord/v1/{__init__,tensord_pb2,tensord_pb2_grpc}.py` and
`tensord_pb2.pyi` (the `tensord.v1` subpackage, never edited by hand nor
committed). setup.py runs the same code on every build, so
`pip install [-e] client_py` regenerates them.
"""
from __future__ import annotations

import pathlib
import re
import sys

CLIENT_DIR = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = CLIENT_DIR.parent / "proto"
PROTO_FILE = PROTO_ROOT / "tensord" / "v1" / "tensord.proto"
OUT_PACKAGE = CLIENT_DIR / "tensord" / "v1"
GENERATED = ("tensord_pb2.py", "tensord_pb2_grpc.py")


def generate() -> None:
    """Regenerates the stubs; without the .proto (an sdist) keeps stubs already there."""
    if not PROTO_FILE.exists():
        if all((OUT_PACKAGE / name).exists() for name in GENERATED):
            return
        raise RuntimeError(f"{PROTO_FILE} not found and no generated stubs in {OUT_PACKAGE}")
    from grpc_tools import protoc  # a build requirement, so imported only when needed

    OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={CLIENT_DIR}",
        f"--grpc_python_out={CLIENT_DIR}",
        f"--pyi_out={CLIENT_DIR}",  # type stubs for the messages, for py.typed users
        str(PROTO_FILE),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {PROTO_FILE}")
    (OUT_PACKAGE / "__init__.py").write_text(
        '"""Generated from proto/tensord/v1/tensord.proto by client_py/gen_stubs.py; do not edit."""\n'
    )


def runtime_requirements() -> list[str]:
    """numpy, grpcio and protobuf, bounded like the grpcio-tools that generates the stubs.

    Stubs from grpcio-tools X refuse to import under grpcio older than X or a
    protobuf runtime older than its protoc, so the same bounds are declared.
    """
    wanted = {"grpcio": "grpcio", "protobuf": "protobuf"}
    from importlib.metadata import PackageNotFoundError, requires

    try:
        lines = requires("grpcio-tools") or []
    except PackageNotFoundError:
        lines = []  # no grpcio-tools here (only metadata is being read): plain names
    for line in lines:
        match = re.fullmatch(r"(grpcio|protobuf)\s*\(?([<>=!~][^;()]*)\)?", line.strip())
        if match:
            wanted[match.group(1)] = match.group(1) + match.group(2).replace(" ", "")
    return ["numpy", wanted["grpcio"], wanted["protobuf"]]


if __name__ == "__main__":
    generate()
    print(f"wrote {', '.join(GENERATED)} to {OUT_PACKAGE}", file=sys.stderr)
