"""Run the checkout on stubs of another proto: ``python tests/with_stubs.py STUBS [--stale-http FIELD] -m ...``.

``STUBS`` is a folder ``protos.generate.generate`` wrote (``splitexit_pb2.py``,
``splitexit_views.py``, ...); they replace ``splitexit.shared.proto``'s before
anything imports it, so every other file is the checkout's as it is. With
``--stale-http FIELD`` the HTTP gateway's answer model is built from that proto
without ``InferResponse.FIELD``: a schema that lags the messages, as a
hand-written copy would.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

from google.protobuf import descriptor_pool
from google.protobuf.descriptor_pb2 import FileDescriptorProto

STUB_MODULES = ("splitexit_pb2", "splitexit_views", "splitexit_pb2_grpc")  # in import order


def install(stubs: Path) -> None:
    """Import the stubs in ``stubs`` as ``splitexit.shared.proto.*``."""
    import splitexit.shared.proto as package

    for name in STUB_MODULES:
        spec = importlib.util.spec_from_file_location(f"{package.__name__}.{name}", stubs / f"{name}.py")
        assert spec is not None and spec.loader is not None, stubs / f"{name}.py"
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        setattr(package, name, module)
        spec.loader.exec_module(module)


def stale_http_answer(dropped: str) -> None:
    """Build the gateway's ``InferResponse`` model from the installed proto without its field ``dropped``."""
    from splitexit.device import http_models
    from splitexit.shared.proto import splitexit_pb2 as pb

    proto = FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    [answer] = [message for message in proto.message_type if message.name == "InferResponse"]
    kept = [field for field in answer.field if field.name != dropped]
    del answer.field[:]
    answer.field.extend(kept)
    stale = descriptor_pool.DescriptorPool().Add(proto)  # a pool of its own: the name is free there
    http_models.Answer = http_models.answer_models(stale)["InferResponse"]


def main(argv: list[str]) -> None:
    stubs, *rest = argv
    install(Path(stubs))
    if rest[0] == "--stale-http":
        stale_http_answer(rest[1])
        rest = rest[2:]
    flag, target, *args = rest
    sys.argv = [target, *args]
    if flag == "-m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        exec(compile(target, "<-c>", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main(sys.argv[1:])
