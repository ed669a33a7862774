"""What TLS costs per hop: the same requests through a plaintext and a mutual-TLS testbed, interleaved.

Both testbeds run at once; requests alternate between them in rounds, so load
from anything else on the machine falls on both alike. Everything goes to the
cloud (three hops: client → device, device → edge, edge → cloud, all TLS on the
secure one), so the p50 difference over three is the cost of TLS per hop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from bench.rates import sequential
from splitexit.certs import write_dev_pki
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port

ROUNDS = 10
HOPS = 3


def tls_cost(requests: list[pb.InferRequest], log_dir: Path) -> dict[str, float]:
    """p50 ms plaintext and TLS, all to the cloud, and µs of TLS per hop."""
    pki = log_dir / "pki"
    write_dev_pki(pki)
    plain_s: list[np.ndarray] = []
    tls_s: list[np.ndarray] = []
    with (
        Testbed({tier: free_port() for tier in Tier}, log_dir=log_dir / "plaintext") as plain,
        Testbed({tier: free_port() for tier in Tier}, log_dir=log_dir / "tls", tls_dir=pki) as secure,
    ):
        for bed in (plain, secure):
            asyncio.run(sequential(bed.device_address, requests[:10], bed.client_tls))  # warm up
        share = max(len(requests) // ROUNDS, 1)
        for start in range(0, len(requests), share):
            batch = requests[start : start + share]
            plain_s.append(asyncio.run(sequential(plain.device_address, batch))[0])
            tls_s.append(asyncio.run(sequential(secure.device_address, batch, secure.client_tls))[0])
    plaintext, tls = float(np.median(np.concatenate(plain_s))), float(np.median(np.concatenate(tls_s)))
    return {
        "plaintext_p50_ms": 1e3 * plaintext,
        "tls_p50_ms": 1e3 * tls,
        "tls_per_hop_us": 1e6 * (tls - plaintext) / HOPS,
    }
