"""How long a device policy takes per sample: its plan, following it, and learning from the outcome.

Each policy replays the same recorded Fashion-MNIST exits (no model runs), as
the device would call it; the figure is µs per sample, decisions and updates included.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lab.fashion_mnist import default_cache_dir
from lab.scenarios import SCENARIOS, load_stream
from splitexit.policies.catalog import POLICY_NAMES, PolicyParams, make_policy
from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostSettings
from splitexit.policies.replay import replay
from splitexit.shared.manifest import load_manifest
from splitexit.shared.settings import TierSettings

TIER_ALPHA = TierSettings.model_fields["exit_threshold"].default  # what the tiers apply when a plan sets none


def microseconds_per_decision(models_dir: Path, samples: int = 3000) -> dict[str, float]:
    """Per policy, µs per sample over ``samples`` samples of the clean Fashion-MNIST stream."""
    scenario = next(s for s in SCENARIOS if s.name == "fmnist-clean")
    stream = load_stream(scenario, models_dir, default_cache_dir())
    chain = Chain.of(load_manifest(scenario.package_dir(models_dir)))
    order = np.random.default_rng(0).permutation(len(stream.labels))[:samples]
    timings = {}
    for name in POLICY_NAMES:
        policy = make_policy(name, PolicyParams(), chain, CostSettings().model())
        started = time.perf_counter()
        replay(policy, stream, order, chain, [TIER_ALPHA] * chain.num_blocks)
        timings[name] = 1e6 * (time.perf_counter() - started) / samples
    return timings
