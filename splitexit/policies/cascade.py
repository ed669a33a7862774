"""A label-free policy over the whole cascade: one threshold for the device's exits, one for every later exit.

DIMEE (:mod:`splitexit.policies.dimee`) lets a sample exit only at each tier's
last exit. Here every exit the device hosts uses α_d and every early exit after
them (the edge's, the cloud's before the final one) uses α_o, so a sample may
leave after block 1, and the pairs with α_d = α_o are exactly the fixed
thresholds at every exit (BranchyNet): the arm set contains points of the
fixed-threshold frontier. UCB picks the
pair maximising C_exit − μ·cost (:mod:`splitexit.policies.splitee`), and a
Page-Hinkley test on C_1 (:mod:`splitexit.policies.drift`) restarts it when
the stream shifts, so it learns the pair afresh for the new inputs.

A sample played on one pair also reveals the reward of every **eager** pair
(both thresholds no higher): such a pair exits at or before the played one's
exit, and every confidence up to that exit was observed, whatever the sample.
So each round credits them too (:func:`eager_credits`); since which pairs are
credited depends on the arm played, never on the sample, the means stay
unbiased, and the bandit needs far fewer rounds than one arm at a time.

Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from splitexit.policies.chain import Chain
from splitexit.policies.plan import Plan
from splitexit.policies.splitee import Arm
from splitexit.shared.tiers import Tier


def tier_thresholds_plan(chain: Chain, alpha_d: float, alpha_o: float) -> Plan:
    """α_d at exits 1..m (the device's), α_o at every later exit (the final one always answers).

    With α_o = 1 the edge cannot answer, so it relays the sample straight to the cloud.
    """
    m = chain.last_exit(Tier.DEVICE)
    thresholds = tuple(alpha_d if k <= m else alpha_o for k in range(1, chain.num_blocks + 1))
    skip_edge = alpha_o >= 1.0 and chain.resumes(Tier.CLOUD, m + 1)
    return Plan("", thresholds, {Tier.EDGE: m} if skip_edge else {})


def tier_threshold_arms(chain: Chain, grid: Sequence[float]) -> list[Arm]:
    """Every pair (α_d, α_o) of grid values, the highest thresholds first.

    UCB plays the first arm not yet observed; the first, the most cautious
    pair, reveals every other pair's reward (:func:`eager_credits`), so one
    round observes them all instead of one round per arm.
    """
    values = sorted(grid, reverse=True)
    return [Arm(f"α_d={a:.2f} α_o={b:.2f}", tier_thresholds_plan(chain, a, b)) for a in values for b in values]


def eager_credits(arms: Sequence[Arm]) -> list[list[int]]:
    """Per arm, the other arms whose thresholds are all no higher (their reward is always revealed)."""
    thresholds = [arm.plan.thresholds or () for arm in arms]
    return [
        [b for b, other in enumerate(thresholds) if b != a and all(x <= y for x, y in zip(other, mine, strict=True))]
        for a, mine in enumerate(thresholds)
    ]
