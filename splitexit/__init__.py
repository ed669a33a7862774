"""splitexit: early-exit inference split across device, edge and cloud.

Subpackages: :mod:`splitexit.device`, :mod:`splitexit.edge` and
:mod:`splitexit.cloud` (one tier each), :mod:`splitexit.shared` (the tier
runtime they share) and :mod:`splitexit.policies` (the exit policies, pure
Python). The modules at this level are the user-facing side: the SDK
(``splitexit.Client``, ``splitexit.AsyncClient``: :mod:`splitexit.client`), the
``splitexit`` command line, the testbeds (three local processes on loopback or in
network namespaces) and the load generator.
"""

from __future__ import annotations

from typing import Any

SDK = ("AsyncClient", "Client", "ClientError", "ModelInfo", "ModelList", "PolicyState", "Prediction", "TLS", "request")


def __getattr__(name: str) -> Any:
    """``splitexit.Client`` and the rest of the SDK, imported on first use (serving code never needs it)."""
    if name in SDK:
        from splitexit import client, results

        return getattr(client, name, None) or getattr(results, name)
    raise AttributeError(f"module 'splitexit' has no attribute {name!r}")
