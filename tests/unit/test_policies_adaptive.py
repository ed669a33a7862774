"""The drift-adaptive, cascade and budget policies' decision rules on hand-computed cases (pure Python).

Same chain and costs as :mod:`tests.test_policies`: 6 blocks, the device hosts
1..2, the edge 1..4, the cloud 1..6; λ = 0.1 per block, o = 0.1 per link, every
tier charged (final layer: 0.6 + 0.2 = 0.8); μ = 1, SplitEE's α = 0.9.
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.fashion_mnist import default_cache_dir
from lab.scenarios import SCENARIOS, load_stream
from splitexit.device.settings import DeviceSettings
from splitexit.policies.budget import CostBudget
from splitexit.policies.cascade import eager_credits, tier_threshold_arms, tier_thresholds_plan
from splitexit.policies.catalog import PolicyParams, make_policy
from splitexit.policies.chain import Chain, walk
from splitexit.policies.costs import CostSettings
from splitexit.policies.drift import PageHinkley
from splitexit.policies.replay import ExitStream, replay
from splitexit.policies.splitee import Arm, BanditPolicy
from splitexit.shared.manifest import BlockRange
from splitexit.shared.tiers import Tier
from tests.unit.test_policies import CHAIN, policy, ran


@pytest.fixture(scope="module")
def fmnist_clean() -> ExitStream:
    """The clean Fashion-MNIST test stream's outcomes at every exit (computed once, then cached)."""
    return load_stream(SCENARIOS[0], DeviceSettings().models_dir, default_cache_dir())


def test_page_hinkley_flags_a_fall_of_the_mean_once_the_cumulative_deviation_passes_h() -> None:
    test = PageHinkley(delta=0.0, threshold=0.6)
    # 0.9, 0.9: mean 0.9, no deviation. 0.1: mean 0.6333, D = −0.5333 (0.5333 below its max 0): not yet.
    assert [test.update(x) for x in (0.9, 0.9, 0.1)] == [False, False, False]
    assert test.down == pytest.approx(-0.533333, abs=1e-6)
    # 0.1: mean 0.5, D = −0.5333 − 0.4 = −0.9333, 0.9333 below its max: a change; the test starts afresh.
    assert test.update(0.1) and test.changes == 1 and test.count == 0
    restored = PageHinkley(delta=0.0, threshold=0.6)
    restored.load_dict(test.to_dict())
    assert restored.to_dict() == test.to_dict()


def test_page_hinkley_flags_a_rise_and_tolerates_drift_within_delta() -> None:
    assert not any(PageHinkley(delta=0.05, threshold=0.2).update(x) for x in [0.5, 0.54] * 50)
    rising = PageHinkley(delta=0.0, threshold=0.3)
    assert [rising.update(x) for x in (0.2, 0.2, 0.8)] == [False, False, True]  # U: 0.4 − 0 > 0.3


def test_i_splitee_is_the_papers_ucb1_with_side_observations_priced_on_the_device_and_never_forgets() -> None:
    i_splitee = policy("i-splitee")  # every tier charged, yet its reward prices only the device and the links
    bandit = i_splitee.bandits[0]
    assert i_splitee.side_observations and bandit.discount == 1.0 and bandit.window == 0
    assert i_splitee.detector is None and i_splitee.labels[-1] == "split 6"  # this device cannot run block 6
    third = i_splitee.plans[0][2]
    i_splitee.observe(third, ran(third, [0.95, 0.5, 0.95, 0.99, 0.99, 0.99]))  # as SplitEE-S: splits 1 and 3
    # split 3 exits on the edge: C_3 − (2λ on the device + o_de), the edge's block free; split 1: C_1 − λ
    np.testing.assert_allclose(bandit.sums, [0.95 - 0.1, 0, 0.95 - 0.2 - 0.1, 0, 0, 0])


def test_i_splitee_on_a_device_hosting_the_whole_chain_has_a_device_only_arm() -> None:
    whole = Chain(6, {tier: BlockRange(first=1, last=6) for tier in Tier})
    i_splitee = make_policy("i-splitee", PolicyParams(), whole, CostSettings().model())
    assert isinstance(i_splitee, BanditPolicy) and i_splitee.labels == [
        *(f"split {k}" for k in range(1, 6)),
        "device only",
    ]
    device_only = i_splitee.plans[0][5]
    confidences = [0.5, 0.95, 0.5, 0.5, 0.5, 0.9]
    route = walk(device_only, whole, lambda block: confidences[block - 1])
    assert [run.tier for run in route.runs] == [Tier.DEVICE] and route.exit_block == 6
    i_splitee.observe(device_only, {k: c for k, c in enumerate(confidences, start=1)})
    # device only: C_L − μλL; split 2 exits: C_2 − 2λ; splits 1, 3, 4, 5 offload: C_L − (o + λk), o = o_de + o_ec
    expected = [0.9 - 0.3, 0.95 - 0.2, 0.9 - 0.5, 0.9 - 0.6, 0.9 - 0.7, 0.9 - 0.6]
    np.testing.assert_allclose(i_splitee.bandits[0].sums, expected)
    split = walk(i_splitee.plans[0][0], whole, lambda block: confidences[block - 1])  # offloaded: the edge relays
    assert [(run.tier, run.blocks) for run in split.runs] == [(Tier.DEVICE, 1), (Tier.EDGE, 0), (Tier.CLOUD, 5)]


def test_splitee_cd_restarts_its_bandit_when_c1_shifts() -> None:
    splitee_cd = policy("splitee-cd", drift_delta=0.0, drift_threshold=0.5)
    first = splitee_cd.plans[0][0]  # split 1
    for _ in range(2):
        splitee_cd.observe(first, ran(first, [0.95] * 6))  # exits at 1: C_1 − λ = 0.85
    assert splitee_cd.bandits[0].counts[0] == 2
    # C_1 = 0.1: mean 0.6667, D falls 0.5667 > h: a change. The bandit restarts, then takes this reward:
    # offloaded at split 1, C_L − (λ + o_de + o_ec + 5λ) = 0.85 − 0.8.
    splitee_cd.observe(first, ran(first, [0.1, 0.5, 0.5, 0.5, 0.5, 0.85]))
    np.testing.assert_allclose(splitee_cd.bandits[0].counts, [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(splitee_cd.bandits[0].sums, [0.05, 0, 0, 0, 0, 0])
    assert splitee_cd.bandits[0].rounds == 1 and splitee_cd.state()["changes"] == 1
    restored = policy("splitee-cd", drift_delta=0.0, drift_threshold=0.5)
    restored.load_dict(splitee_cd.to_dict())
    assert restored.to_dict() == splitee_cd.to_dict()


def test_cascade_thresholds_cover_every_exit_and_relay_past_the_edge_at_alpha_one() -> None:
    plan = tier_thresholds_plan(CHAIN, 0.8, 0.9)
    assert plan.thresholds == (0.8, 0.8, 0.9, 0.9, 0.9, 0.9) and dict(plan.last_block) == {}
    relay = tier_thresholds_plan(CHAIN, 0.8, 1.0)
    assert relay.thresholds == (0.8, 0.8, 1.0, 1.0, 1.0, 1.0) and dict(relay.last_block) == {Tier.EDGE: 2}
    arms = tier_threshold_arms(CHAIN, [0.9, 1.0])  # the most cautious first
    assert [arm.label for arm in arms] == [
        "α_d=1.00 α_o=1.00",
        "α_d=1.00 α_o=0.90",
        "α_d=0.90 α_o=1.00",
        "α_d=0.90 α_o=0.90",
    ]
    assert arms[3].plan.thresholds == (0.9,) * 6  # α_d = α_o: the fixed thresholds at every exit


def test_cascade_scores_the_pair_it_played() -> None:
    cascade = policy("cascade", cascade_grid=[0.9, 1.0], ucb_c=0.0)
    assert cascade.detector is not None and len(cascade.labels) == 4
    plan = cascade.plans[0][1]  # (1, 0.9)
    cascade.observe(plan, ran(plan, [0.5, 0.5, 0.95, 0, 0, 0]))  # exits at 3 on the edge: C_3 − (3λ + o_de)
    assert cascade.bandits[0].sums[1] == pytest.approx(0.95 - 0.4)
    assert cascade.bandits[0].sums[3] == pytest.approx(0.95 - 0.4)  # (0.9, 0.9), eager: the same route
    assert cascade.plan(None).arm == (0, 0)  # UCB tries the arm never observed


def test_cascade_credits_every_eager_pair_the_sample_revealed() -> None:
    cascade = policy("cascade", cascade_grid=[0.9, 1.0])  # arms (1, 1), (1, 0.9), (0.9, 1), (0.9, 0.9)
    assert eager_credits([Arm(label, plan) for label, plan in zip(cascade.labels, cascade.plans[0], strict=True)]) == [
        [1, 2, 3],
        [3],
        [3],
        [],
    ]
    final = cascade.plan(None)  # first the most cautious: the device's blocks, the edge relays, the cloud runs 3..6
    assert final.arm == (0, 0)
    cascade.observe(final, ran(final, [0.95, 0.5, 0.5, 0.5, 0.5, 0.85]))
    # played: C_6 − 0.8. (1, 0.9): on through the edge's 3, 4 and the cloud's 5, 6: C_6 − (2λ + o + 2λ + o + 2λ).
    # (0.9, ·) would have exited at 1: C_1 − λ. One round, every arm observed.
    np.testing.assert_allclose(cascade.bandits[0].sums, [0.05, 0.05, 0.85, 0.85])
    np.testing.assert_array_equal(cascade.bandits[0].counts, [1, 1, 1, 1])
    assert cascade.bandits[0].rounds == 1


def test_cost_budget_moves_alpha_by_the_constraints_dual_step() -> None:
    budget = make_policy(
        "budget", PolicyParams(budget_share=0.5, budget_step=0.1, budget_alpha=0.9), CHAIN, CostSettings().model()
    )
    assert isinstance(budget, CostBudget) and budget.budget() == pytest.approx(0.4)
    plan = budget.plan(None)
    assert plan.thresholds == (0.9,) * 6
    budget.observe(plan, ran(plan, [0.95, 0, 0, 0, 0, 0]))  # cost 0.1: α − 0.1·(0.1 − 0.4)/0.8
    assert budget.alpha == pytest.approx(0.9375)
    plan = budget.plan(None)
    budget.observe(plan, ran(plan, [0.5, 0.5, 0.5, 0.5, 0.5, 0.9]))  # cost 0.8: α − 0.1·(0.8 − 0.4)/0.8
    assert budget.alpha == pytest.approx(0.8875) and budget.plan(None).thresholds == (pytest.approx(0.8875),) * 6
    state = budget.state()
    assert state["mean_cost"] == pytest.approx(0.45) and state["budget_cost"] == pytest.approx(0.4)
    restored = make_policy("budget", PolicyParams(budget_share=0.5), CHAIN, CostSettings().model())
    restored.load_dict(budget.to_dict())
    assert restored.to_dict() == budget.to_dict() and restored.plan(None).thresholds == budget.plan(None).thresholds
    with pytest.raises(ValueError, match="share of the final layer"):
        CostBudget("budget", CHAIN, CostSettings().model(), share=1.5, step=0.1, alpha=0.9)


def test_cost_budget_holds_on_a_real_stream(fmnist_clean: ExitStream) -> None:
    """Over real Fashion-MNIST outcomes the mean cost is the budget plus final · (ν_0 − ν_T) / (η·T)."""
    costs = CostSettings().model()
    final = costs.final_layer(CHAIN)
    for share in (0.3, 0.5):
        budget = CostBudget("budget", CHAIN, costs, share=share, step=0.05, alpha=0.9)
        stream = fmnist_clean.take(np.arange(3000))
        trace = replay(budget, stream, stream.order(0), CHAIN)
        mean = trace.cost(costs).mean()
        assert mean - share * final == pytest.approx(final * (0.9 - budget.level) / (0.05 * 3000))
        assert mean / final <= share + 0.002  # within 0.2 points of the final layer's cost
        assert len(set(trace.exit_block.tolist())) > 2
