"""Generate the Python gRPC stubs of ``splitexit.proto`` (what ``make proto`` runs).

The stubs are committed in ``shared/proto/`` and installed as the package
``splitexit.shared.proto``; protoc derives their import lines from the proto's
path as given, so it is compiled as ``splitexit/shared/proto/splitexit.proto``
into a scratch folder and the three files are copied from there.
``tests/unit/test_proto_stubs.py`` checks the committed stubs are what this writes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "protos" / "splitexit.proto"
PACKAGE_PATH = Path("splitexit") / "shared" / "proto"
STUBS = ("splitexit_pb2.py", "splitexit_pb2.pyi", "splitexit_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Write the three stubs of ``protos/splitexit.proto`` into ``out_dir``."""
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            f"-I{PACKAGE_PATH.as_posix()}={PROTO.parent}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--pyi_out={scratch}",
            str(PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in STUBS:
            shutil.copyfile(Path(scratch) / PACKAGE_PATH / name, out_dir / name)


if __name__ == "__main__":
    target = ROOT / "shared" / "proto"
    generate(target)
    print(f"wrote {', '.join(STUBS)} to {target}", file=sys.stderr)
