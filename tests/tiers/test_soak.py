"""A bounded soak: minutes of steady load on the three tiers; memory and descriptors stay flat after warm-up.

The length comes from ``SPLITEXIT_SOAK_S`` (default 90 s, a third of it warm-up).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.soak import run_soak
from splitexit.samples import load_pack
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port

SOAK_S = float(os.environ.get("SPLITEXIT_SOAK_S", "90"))


def test_memory_and_descriptors_stay_flat_under_steady_load(tmp_path: Path) -> None:
    with Testbed({tier: free_port() for tier in Tier}, log_dir=tmp_path) as bed:
        pids = {tier.value: process.process.pid for tier, process in bed.processes.items()}
        report = run_soak(bed.device_address, pids, load_pack(), SOAK_S)
    assert len(report.outcomes) >= 30 * SOAK_S
    assert all(outcome.answered and not outcome.late for outcome in report.outcomes)
    for tier, growth in report.growth().items():
        assert growth["fds_growth"] <= 2, (tier, growth)
        assert growth["rss_mb_growth"] <= max(10.0, 0.05 * growth["rss_mb_after_warmup"]), (tier, growth)
