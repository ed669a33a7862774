"""Generate the Python stubs of ``splitexit.proto`` and the SDK's typed results (what ``make proto`` runs).

The stubs are committed in ``shared/proto/`` and installed as the package
``splitexit.shared.proto``; protoc derives their import lines from the proto's
path as given, so it is compiled as ``splitexit/shared/proto/splitexit.proto``
into a scratch folder and the files are copied from there. Next to them,
``splitexit_views.py`` holds the SDK's results, derived from the same
descriptors (:mod:`protos.views`). They are generated rather than built at
import, unlike the HTTP gateway's models, because mypy and editors read types
from source: a user's ``answer.hops[0].timings.total_s`` is checked statically.
``tests/unit/test_proto_stubs.py`` checks the committed files are what this writes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pool
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from grpc_tools import protoc

from protos.views import views_source

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "protos" / "splitexit.proto"
PACKAGE_PATH = Path("splitexit") / "shared" / "proto"
PROTOC_STUBS = ("splitexit_pb2.py", "splitexit_pb2.pyi", "splitexit_pb2_grpc.py")
VIEWS = "splitexit_views.py"
STUBS = (*PROTOC_STUBS, VIEWS)


def generate(out_dir: Path, proto: Path = PROTO) -> None:
    """Write the stubs and the views of ``proto`` (by default ``protos/splitexit.proto``) into ``out_dir``."""
    with tempfile.TemporaryDirectory() as scratch:
        descriptors = Path(scratch) / "descriptors.pb"
        args = [
            "protoc",
            f"-I{PACKAGE_PATH.as_posix()}={proto.parent}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--descriptor_set_out={descriptors}",
            "--include_source_info",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in PROTOC_STUBS:
            shutil.copyfile(Path(scratch) / PACKAGE_PATH / name, out_dir / name)
        [file_proto] = FileDescriptorSet.FromString(descriptors.read_bytes()).file
        file = descriptor_pool.DescriptorPool().Add(file_proto)  # a pool of its own: the stubs' may differ
        (out_dir / VIEWS).write_text(views_source(file, file_proto))


if __name__ == "__main__":
    target = ROOT / "shared" / "proto"
    generate(target)
    print(f"wrote {', '.join(STUBS)} to {target}", file=sys.stderr)
