"""The model as a Triton user would serve it: PyTriton, the six segments chained in one model, dynamic batching.

``python bench/triton_app.py MODELS_DIR GRPC_PORT HTTP_PORT METRICS_PORT WORKSPACE`` runs in
its own environment (``make bench-triton-venv``: nvidia-pytriton pins numpy < 2 and
protobuf < 7, which the tiers do not accept), so it imports nothing of splitexit.
It serves the model ``fmnist`` taking ``x`` (the decoded ``[1, 28, 28]`` image
block 1 takes) and answering ``logits`` (the final exit's), batching what
queued up to 64 samples. PyTriton keeps its sockets and model files in
``WORKSPACE``, which the caller removes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODEL = "fmnist"
MAX_BATCH = 64


def chained_segments(package: Path) -> list[ort.InferenceSession]:
    """Blocks 1..N of the package as onnxruntime sessions, one intra-op thread each (as the tiers run them)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    blocks = json.loads((package / "manifest.json").read_text())["blocks"]
    return [ort.InferenceSession(str(package / block["file"]), options) for block in blocks]


def main() -> None:
    models_dir, grpc_port, http_port, metrics_port = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    workspace = Path(sys.argv[5])
    sessions = chained_segments(models_dir / "fmnist-cnn")

    @batch
    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        logits = np.zeros(0, np.float32)
        for session in sessions:
            logits, x = session.run(["logits", "activation"], {"x": x})
        return {"logits": logits}

    config = TritonConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port)
    with Triton(config=config, workspace=workspace) as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=infer,
            inputs=[Tensor(name="x", dtype=np.float32, shape=(1, 28, 28))],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(10,))],
            config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher()),
        )
        triton.serve()


if __name__ == "__main__":
    main()
