"""Triton Inference Server next to the tiers: the same six segments, one sample per request, 1, 8 and 64 in flight.

Triton runs as its users would run it: PyTriton (:mod:`bench.triton_app`) with
its dynamic batcher, loaded by ``tritonclient`` gRPC (:mod:`bench.triton_load`),
both in their own environment (``make triton-venv``; ``$SPLITEXIT_TRITON_PYTHON``
names another interpreter), since nvidia-pytriton pins numpy < 2 and protobuf < 7.
Triton is sent the decoded image tensor, the tiers the PNG (which the device decodes).
Where that environment is missing the report says why, in one line, and the bench goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.services import triton_service

TRITON_PYTHON_ENV = "SPLITEXIT_TRITON_PYTHON"
DEFAULT_PYTHON = Path(".cache/triton-venv/bin/python")
LOAD_TIMEOUT_S = 600


def triton_python() -> Path:
    return Path(os.environ.get(TRITON_PYTHON_ENV) or DEFAULT_PYTHON)


def unavailable_reason(python: Path) -> str | None:
    """Why Triton cannot be run here, or None when it can."""
    if not python.exists():
        return f"no PyTriton environment at {python} (make triton-venv, or set ${TRITON_PYTHON_ENV})"
    found = subprocess.run(
        [str(python), "-c", "import pytriton, tritonclient.grpc.aio"], capture_output=True, text=True
    )
    if found.returncode != 0:
        return f"{python} cannot import pytriton and tritonclient: {found.stderr.strip().splitlines()[-1]}"
    return None


def triton_rates(
    samples: np.ndarray, count: int, loads: Sequence[int], models_dir: Path, log_dir: Path
) -> dict[str, Any]:
    """Per load (requests in flight): samples/s and the p50 and p95 in ms; or ``{"unavailable": why}``."""
    python = triton_python()
    reason = unavailable_reason(python)
    if reason is not None:
        return {"unavailable": reason}
    with tempfile.TemporaryDirectory() as folder, triton_service(python, models_dir, log_dir) as address:
        inputs = Path(folder) / "inputs.npy"
        np.save(inputs, samples)
        load = Path(__file__).with_name("triton_load.py")
        command = [str(python), str(load), address, str(inputs), str(count), *map(str, loads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=LOAD_TIMEOUT_S, check=True)
        return json.loads(done.stdout)
