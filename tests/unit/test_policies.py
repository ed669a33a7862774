"""Every policy's decision rule on small hand-computed cases (pure Python, no tiers).

The chain is the shipped models' default: 6 blocks, the device hosts 1..2, the
edge 1..4 (it resumes at 3), the cloud 1..6. Costs: λ = 0.1 per block, o = 0.1
per link, every tier's compute charged unless a test says otherwise; μ = 1,
SplitEE's α = 0.9. Rewards are r = C_exit − cost of the route, worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from splitexit.policies.baselines import FixedPlan, RandomSplit, baseline_plans
from splitexit.policies.catalog import PolicyParams, make_policy
from splitexit.policies.chain import Chain, TierRun, walk
from splitexit.policies.costs import CostSettings
from splitexit.policies.dimee import ClusterRouter, cascade_arms, cascade_plan, kmeans
from splitexit.policies.plan import Plan
from splitexit.policies.replay import ExitStream, arm_rewards, best_arm, regret, replay
from splitexit.policies.splitee import UCB, BanditPolicy, split_arms, split_plan
from splitexit.shared.manifest import BlockRange
from splitexit.shared.tiers import Tier

CHAIN = Chain(
    6,
    {
        Tier.DEVICE: BlockRange(first=1, last=2),
        Tier.EDGE: BlockRange(first=1, last=4),
        Tier.CLOUD: BlockRange(first=1, last=6),
    },
)
CLOUD_FREE = CostSettings(tier_weights={Tier.DEVICE: 1.0, Tier.EDGE: 1.0, Tier.CLOUD: 0.0})


def policy(name: str, costs: CostSettings = CostSettings(), **params: object) -> BanditPolicy:
    built = make_policy(name, PolicyParams(**params), CHAIN, costs.model())
    assert isinstance(built, BanditPolicy)
    return built


def ran(plan: Plan, confidences: list[float]) -> dict[int, float]:
    """What a sample showing C_1..C_6 = ``confidences`` reveals under ``plan``: the exits it ran."""
    route = walk(plan, CHAIN, lambda block: confidences[block - 1])
    return {block: confidences[block - 1] for run in route.runs for block in range(run.first, run.last + 1)}


# ------------------------------------------------------------------------------------------- UCB


def test_ucb_plays_every_arm_once_in_order_then_the_highest_index() -> None:
    bandit = UCB(3, c=1.0)
    for arm, reward in enumerate([0.5, 0.8, 0.3]):
        assert bandit.select() == arm
        bandit.update({arm: reward})
    bandit.update({0: 0.5})  # arm 0: N = 2, mean 0.5; t = 4
    # index_i = mean_i + √(ln 4 / N_i): 0.5 + 0.8326, 0.8 + 1.1774, 0.3 + 1.1774
    np.testing.assert_allclose(bandit.index(), [1.332555, 1.977410, 1.477410], atol=1e-6)
    assert bandit.select() == 1
    bandit.c = 0.0  # no exploration: the best mean
    assert bandit.select() == 1 and bandit.best() == 1


def test_ucb_exploration_can_prefer_a_lower_mean_and_ties_go_to_the_lowest_arm() -> None:
    bandit = UCB(2, c=1.0)
    bandit.update({0: 0.9})
    for _ in range(9):
        bandit.update({1: 1.0})
    # t = 10: arm 0 0.9 + √(ln 10 / 1) = 2.417 beats arm 1 1.0 + √(ln 10 / 9) = 1.506
    assert bandit.select() == 0
    tied = UCB(3)
    tied.update({0: 0.5, 1: 0.5, 2: 0.5})  # one round with side observations: every index equal
    assert tied.select() == 0


def test_sliding_window_ucb_forgets_rounds_older_than_its_window() -> None:
    bandit = UCB(2, c=1.0, window=2)
    bandit.update({0: 1.0})
    bandit.update({1: 0.5})
    bandit.update({0: 0.2})  # the first round leaves the window
    np.testing.assert_allclose(bandit.counts, [1.0, 1.0])
    np.testing.assert_allclose(bandit.sums, [0.2, 0.5])
    assert bandit.rounds == 2.0 and bandit.best() == 1
    restored = UCB(2, c=1.0, window=2)
    restored.load_dict(bandit.to_dict())
    restored.update({1: 0.1})  # the second round leaves the window
    np.testing.assert_allclose(restored.counts, [1.0, 1.0])
    np.testing.assert_allclose(restored.sums, [0.2, 0.1])


def test_discounted_ucb_fades_old_rewards() -> None:
    bandit = UCB(2, c=1.0, discount=0.5)
    bandit.update({0: 1.0})  # N = [1, 0], t = 1
    bandit.update({1: 0.0})  # N = [0.5, 1], sums [0.5, 0], t = 1.5
    bandit.update({0: 1.0})  # N = [1.25, 0.5], sums [1.25, 0], t = 1.75
    np.testing.assert_allclose(bandit.counts, [1.25, 0.5])
    np.testing.assert_allclose(bandit.sums, [1.25, 0.0])
    assert bandit.rounds == pytest.approx(1.75)
    expected = [1.0 + math.sqrt(math.log(1.75) / 1.25), 0.0 + math.sqrt(math.log(1.75) / 0.5)]
    np.testing.assert_allclose(bandit.index(), expected)


# ---------------------------------------------------------------------------------------- SplitEE


def test_split_arms_exit_only_at_the_split_and_leave_the_tier_right_after() -> None:
    arms = split_arms(CHAIN, 0.9)
    assert [arm.label for arm in arms] == [f"split {i}" for i in range(1, 7)]
    assert arms[0].plan.thresholds == (0.9, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert dict(arms[0].plan.last_block) == {Tier.DEVICE: 1, Tier.EDGE: 1}  # the edge relays to the cloud
    assert dict(arms[2].plan.last_block) == {Tier.EDGE: 3}  # split 3 is on the edge; the device runs 1..2
    assert dict(arms[5].plan.last_block) == {}
    # offloaded at split 1: block 1 on the device, the edge relays, the cloud resumes at 2
    route = walk(arms[0].plan, CHAIN, lambda block: 0.5)
    assert route.runs == (TierRun(Tier.DEVICE, 1, 1), TierRun(Tier.EDGE, 2, 1), TierRun(Tier.CLOUD, 2, 6))
    # disjoint ranges: the edge cannot resume at 2, so the device runs on to its last block
    disjoint = Chain(
        6,
        {
            Tier.DEVICE: BlockRange(first=1, last=2),
            Tier.EDGE: BlockRange(first=3, last=4),
            Tier.CLOUD: BlockRange(first=5, last=6),
        },
    )
    assert dict(split_plan(disjoint, 1, 0.9).last_block) == {}


def test_splitee_reward_exited_vs_offloaded() -> None:
    splitee = policy("splitee")
    first = splitee.plan(np.zeros(1))
    assert first.arm == (0, 0) and first.policy == "splitee"
    splitee.observe(first, ran(first, [0.95, 0, 0, 0, 0, 0]))  # exits at 1: C_1 − λ·1
    assert splitee.bandits[0].sums[0] == pytest.approx(0.95 - 0.1)
    # offloaded at split 1 with every tier charged: C_L − (λ·1 + o_de + o_ec + λ·5 in the cloud)
    splitee.observe(first, ran(first, [0.5, 0.6, 0.6, 0.6, 0.6, 0.85]))
    assert splitee.bandits[0].sums[0] == pytest.approx(0.85 + (0.85 - 0.8))
    # split 3 exits on the edge: C_3 − (λ·3 + o_de)
    third = splitee.plans[0][2]
    splitee.observe(third, ran(third, [0.5, 0.5, 0.95, 0, 0, 0]))
    assert splitee.bandits[0].sums[2] == pytest.approx(0.95 - 0.4)
    np.testing.assert_array_equal(splitee.bandits[0].counts, [2, 0, 1, 0, 0, 0])  # no side observations


def test_splitee_offload_reward_is_the_papers_with_the_cloud_free() -> None:
    splitee = policy("splitee", CLOUD_FREE)
    plan = splitee.plans[0][1]  # split 2, offloaded: r = C_L − λ·2 − o with o = o_de + o_ec
    splitee.observe(plan, ran(plan, [0.5, 0.6, 0.6, 0.6, 0.6, 0.85]))
    assert splitee.bandits[0].sums[1] == pytest.approx(0.85 - 0.2 - 0.2)


def test_splitee_s_credits_shallower_splits_only_where_their_reward_was_observed() -> None:
    splitee_s = policy("splitee-s", CLOUD_FREE)
    third = splitee_s.plans[0][2]
    # Split 3 exits at 3. Split 1 would have exited at 1 (C_1 > α): observed, C_1 − λ.
    # Split 2 would have offloaded (C_2 ≤ α): that needs C_L, never computed: no credit.
    splitee_s.observe(third, ran(third, [0.95, 0.5, 0.95, 0.99, 0.99, 0.99]))
    np.testing.assert_array_equal(splitee_s.bandits[0].counts, [1, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(splitee_s.bandits[0].sums, [0.95 - 0.1, 0, 0.95 - 0.3 - 0.1, 0, 0, 0])
    # Split 3 offloads: the sample ran to the final exit, so every shallower split's reward is known
    # (C_L − λ·j − o), and no deeper split is credited.
    splitee_s.observe(third, ran(third, [0.5, 0.6, 0.7, 0.75, 0.8, 0.85]))
    np.testing.assert_array_equal(splitee_s.bandits[0].counts, [2, 1, 2, 0, 0, 0])
    np.testing.assert_allclose(
        splitee_s.bandits[0].sums, [0.85 + (0.85 - 0.1 - 0.2), 0.85 - 0.2 - 0.2, 0.55 + (0.85 - 0.3 - 0.2), 0, 0, 0]
    )
    assert splitee_s.bandits[0].rounds == 2  # side observations add counts, not rounds


def test_splitee_d_discounts_past_rewards() -> None:
    splitee_d = policy("splitee-d", discount=0.5)
    for arm in (0, 0, 1):
        plan = splitee_d.plans[0][arm]
        splitee_d.observe(plan, ran(plan, [0.95] * 6))
    np.testing.assert_allclose(splitee_d.bandits[0].counts, [0.75, 1, 0, 0, 0, 0])  # 1·½·½ + 1·½, then 1
    np.testing.assert_allclose(splitee_d.bandits[0].sums, [0.75 * 0.85, 0.75, 0, 0, 0, 0])
    assert policy("splitee").bandits[0].discount == 1.0


# ------------------------------------------------------------------------------------------ DIMEE


def test_cascade_plan_exits_at_the_device_and_edge_ends_and_skips_the_edge_at_alpha_one() -> None:
    plan = cascade_plan(CHAIN, 0.8, 0.9)
    assert plan.thresholds == (1.0, 0.8, 1.0, 0.9, 1.0, 1.0) and dict(plan.last_block) == {}
    assert walk(plan, CHAIN, lambda k: {2: 0.85}.get(k, 0.5)).runs == (TierRun(Tier.DEVICE, 1, 2),)
    assert walk(plan, CHAIN, lambda k: {4: 0.95}.get(k, 0.5)).exit_block == 4
    assert walk(plan, CHAIN, lambda k: {4: 0.85}.get(k, 0.5)).exit_block == 6
    relay = cascade_plan(CHAIN, 0.8, 1.0)
    assert dict(relay.last_block) == {Tier.EDGE: 2}
    assert walk(relay, CHAIN, lambda k: 0.5).runs == (
        TierRun(Tier.DEVICE, 1, 2),
        TierRun(Tier.EDGE, 3, 2),
        TierRun(Tier.CLOUD, 3, 6),
    )


def test_dimee_scores_each_cascade_and_picks_by_ucb() -> None:
    dimee = policy("dimee", grid=[0.8, 1.0])
    assert dimee.labels == ["α_d=0.80 α_e=0.80", "α_d=0.80 α_e=1.00", "α_d=1.00 α_e=0.80", "α_d=1.00 α_e=1.00"]
    sample = [0.5, 0.85, 0.5, 0.95, 0.5, 0.95]
    for arm in range(4):
        plan = dimee.plan(np.zeros(1))
        assert plan.arm == (0, arm)  # every arm once, in order
        dimee.observe(plan, ran(plan, sample))
    # exit on the device: 0.85 − 0.2; on the edge: 0.95 − (0.4 + 0.1); edge relays, cloud: 0.95 − (0.6 + 0.2)
    np.testing.assert_allclose(dimee.bandits[0].sums, [0.65, 0.65, 0.45, 0.15])
    first = dimee.plan(np.zeros(1))
    assert first.arm == (0, 0)  # arms 0 and 1 tie; the lowest wins
    dimee.observe(first, ran(first, [0.5, 0.8125, 0.5, 0.5, 0.5, 0.5]))  # mean (0.65 + 0.6125) / 2
    # t = 5: arm 0 0.63125 + √(ln 5 / 2) = 1.528 < arm 1 0.65 + √(ln 5) = 1.919
    assert dimee.plan(np.zeros(1)).arm == (0, 1)


def test_kmeans_and_router_assign_samples_to_the_nearest_cluster() -> None:
    points = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    centroids = kmeans(points, 2, seed=0)
    assert sorted(map(tuple, np.round(centroids, 6))) == [(0.1, 0.0), (5.1, 5.0)]

    router = make_policy(
        "dimee-router", PolicyParams(clusters=2, calibration=4, grid=[0.8, 1.0]), CHAIN, CostSettings().model()
    )
    assert isinstance(router, ClusterRouter)
    calibration = [router.plan(point) for point in points]
    assert {plan.arm[0] for plan in calibration if plan.arm} == {0} and router.centroids is not None
    near_origin, far = router.plan(np.array([0.3, 0.1])), router.plan(np.array([4.0, 4.5]))
    assert {near_origin.arm[0], far.arm[0]} == {1, 2}
    assert router.group_of(np.array([0.0, 0.1])) == near_origin.arm[0]
    router.observe(near_origin, ran(near_origin, [0.5, 0.85, 0.5, 0.5, 0.5, 0.5]))
    assert router.bandits[near_origin.arm[0]].counts.sum() == 1
    assert router.bandits[far.arm[0]].counts.sum() == 0  # each cluster learns its own cascade


def test_cascade_arms_cover_the_grid_pairs() -> None:
    arms = cascade_arms(CHAIN, [0.7, 0.9])
    assert [a.plan.thresholds[1::2][:2] for a in arms] == [(0.7, 0.7), (0.7, 0.9), (0.9, 0.7), (0.9, 0.9)]


# ---------------------------------------------------------------------------------------- baselines


def test_fixed_baselines() -> None:
    plans = baseline_plans(CHAIN, [0.9])
    sample = [0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    exits = {name: walk(plan, CHAIN, lambda k: sample[k - 1]) for name, plan in plans.items()}
    assert {name: (route.exit_tier, route.exit_block) for name, route in exits.items()} == {
        "final-layer": (Tier.CLOUD, 6),
        "all-device": (Tier.DEVICE, 2),
        "all-edge": (Tier.EDGE, 4),
        "fixed-thresholds": (Tier.DEVICE, 1),
    }
    assert walk(plans["all-device"], CHAIN, lambda k: 0.1).exit_block == 2  # α = 0 there: always
    fixed = FixedPlan("all-edge", plans["all-edge"])
    assert fixed.plan(np.zeros(1)) is fixed.plan(np.zeros(1)) and fixed.plan(np.zeros(1)).policy == "all-edge"
    with pytest.raises(ValueError, match="1 or 6 values"):
        baseline_plans(CHAIN, [0.9, 0.9])


def test_random_split_is_uniform_and_seeded() -> None:
    arms = split_arms(CHAIN, 0.9)

    def draws(seed: int) -> list[int]:
        random_split = RandomSplit("random-split", arms, seed)
        return [random_split.plan(np.zeros(1)).arm[1] for _ in range(600)]

    assert draws(3) == draws(3) == np.random.default_rng(3).integers(6, size=600).tolist()
    assert draws(3) != draws(4)
    counts = np.bincount(draws(3), minlength=6)
    assert counts.min() > 70 and counts.max() < 130  # 100 each expected


# ------------------------------------------------------------------------------------- oracle, regret


def tiny_stream() -> ExitStream:
    """s0 is sure at exit 1, s1 at exit 2, s2 nowhere but the final exit (C_L = 0.875); two phases."""
    confidences = np.array(
        [
            [0.9375, 0.5, 0.5, 0.5, 0.5, 0.875],
            [0.5, 0.9375, 0.5, 0.5, 0.5, 0.875],
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.875],
        ]
    )
    predictions = np.zeros((3, 6), dtype=np.int64)
    return ExitStream(
        confidences=confidences,
        predictions=predictions,
        labels=np.zeros(3, dtype=np.int64),
        embeddings=np.zeros((3, 1)),
        phases=np.array([0, 0, 1]),
    )


def test_oracle_and_regret_on_a_tiny_stream() -> None:
    stream, params = tiny_stream(), PolicyParams()
    arms = [arm.plan for arm in split_arms(CHAIN, params.alpha)]
    rewards = arm_rewards(arms, stream, CHAIN, CostSettings().model(), params.mu)
    offloaded = 0.875 - 0.8  # C_L − every block and both links
    expected = np.full((3, 6), offloaded)
    expected[0, 0], expected[1, 1] = 0.9375 - 0.1, 0.9375 - 0.2
    np.testing.assert_allclose(rewards, expected)
    assert best_arm(rewards) == 0  # split 1: mean 0.329 vs split 2: 0.296

    # SplitEE plays split 1, 2, 3 on the first three samples; the best arm is split 1 in phase 0,
    # anything in phase 1, so regret per step is 0, 0.45625 − 0.40625, 0.
    trace = replay(policy("splitee"), stream, np.array([0, 1, 2]), CHAIN)
    assert trace.arm.tolist() == [0, 1, 2]
    assert trace.exit_block.tolist() == [1, 2, 6] and trace.exit_tier.tolist() == [0, 0, 2]
    np.testing.assert_allclose(regret(trace, rewards, stream.phases), [0.0, 0.05, 0.05])
    np.testing.assert_allclose(trace.cost(CostSettings().model()), [0.1, 0.2, 0.8])
