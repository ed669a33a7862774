"""``splitexit_policy_state``: the device's policies' state, read at every scrape (see :class:`PolicyStates`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# What the device's policy collector asks each policy for: a mapping of numbers
# (or nested mappings / sequences of numbers), e.g. {"pulls": [3, 9], "best_arm": 2}.
POLICY_STATE_METHOD = "state"


class PolicyStates(Collector):
    """``splitexit_policy_state{policy, key}``: every number in each policy's ``state()``, read at scrape time.

    A policy that offers ``state()`` returns a mapping; nested mappings and
    sequences are flattened into dotted keys, so ``{"pulls": [3, 9]}`` becomes
    ``key="pulls.0"`` and ``key="pulls.1"``. Strings and None are skipped. A
    policy without ``state()`` exports nothing. Scrapes run on the exposition
    thread, so ``state()`` should return a fresh copy rather than live arrays.
    """

    NAME = "splitexit_policy_state"
    HELP = "Numbers in a device policy's state (arm pulls, means, thresholds, ...), flattened to dotted keys"

    def __init__(self, tier: str, policies: Callable[[], Mapping[str, object]]) -> None:
        self.tier = tier
        self.policies = policies

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["tier", "policy", "key"])]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["tier", "policy", "key"])
        for name, policy in self.policies().items():
            state = getattr(policy, POLICY_STATE_METHOD, None)
            if callable(state):
                for key, value in flatten(state()):
                    family.add_metric([self.tier, name, key], value)
        return [family]


def flatten(value: object, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, number) for every number in nested mappings and sequences."""
    if isinstance(value, numbers.Real):  # bool, int, float and numpy scalars
        yield prefix, float(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple, np.ndarray)):
        for index, item in enumerate(value.tolist() if isinstance(value, np.ndarray) else value):
            yield from flatten(item, f"{prefix}.{index}" if prefix else str(index))
