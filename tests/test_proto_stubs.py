"""The committed gRPC stubs are exactly what `make proto` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
STUBS = ("splitexit_pb2.py", "splitexit_pb2.pyi", "splitexit_pb2_grpc.py")


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    args = [
        "protoc",
        f"-Ishared/proto={ROOT / 'protos'}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        str(ROOT / "protos" / "splitexit.proto"),
    ]
    assert protoc.main(args) == 0
    for name in STUBS:
        generated = (tmp_path / "shared" / "proto" / name).read_text()
        committed = (ROOT / "shared" / "proto" / name).read_text()
        assert generated == committed, f"shared/proto/{name} is stale: run `make proto` and commit"
