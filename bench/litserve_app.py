"""The model as a LitServe user would serve it: one process, all six segments chained, over HTTP.

``python -m bench.litserve_app PORT`` serves ``POST /predict`` with the same
JSON body as the device's ``POST /v1/infer`` (``{"image_base64": ...}``) and
answers the final exit's label and confidence, so ``make bench`` can compare
the tiers' HTTP gateway with it on the same model, path and clients.
"""

from __future__ import annotations

import base64
import sys

import litserve as ls
import numpy as np

from bench.bare import BareChain
from splitexit.policies.plan import softmax
from splitexit.shared.manifest import load_manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.settings import DEFAULT_MODELS_DIR

PACKAGE = DEFAULT_MODELS_DIR / "fmnist-cnn"


class ChainedSegmentsAPI(ls.LitAPI):
    """Decode the image, run blocks 1 to 6, answer the final exit."""

    def setup(self, device: str) -> None:
        self.manifest = load_manifest(PACKAGE)
        self.chain = BareChain(PACKAGE)

    def decode_request(self, request: dict[str, object]) -> np.ndarray:
        return decode_image(base64.b64decode(str(request["image_base64"])), self.manifest.input)

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits, _ = self.chain.run(x, 1, self.manifest.num_blocks)
        return softmax(logits[0])

    def encode_response(self, probabilities: np.ndarray) -> dict[str, object]:
        label = int(probabilities.argmax())
        return {"label": label, "label_name": self.manifest.labels[label], "confidence": float(probabilities[label])}


if __name__ == "__main__":
    server = ls.LitServer(ChainedSegmentsAPI(), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False)
