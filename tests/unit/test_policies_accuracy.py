"""The accuracy budget's rules on hand-computed cases: shadow runs, the disagreement estimate, the α it plays."""

from __future__ import annotations

import numpy as np
import pytest

from lab.fashion_mnist import default_cache_dir
from lab.scenarios import SCENARIOS, load_stream
from splitexit.device.settings import DeviceSettings
from splitexit.policies.accuracy import AccuracyBudget, accuracy_points, disagreements
from splitexit.policies.catalog import PolicyParams, accuracy_budget
from splitexit.policies.drift import PageHinkley
from splitexit.policies.replay import replay
from tests.unit.test_policies import CHAIN


def budget(points: float = 5.0, share: float = 0.25, burst: int = 0, threshold: float = 100.0) -> AccuracyBudget:
    return AccuracyBudget(
        "accuracy@5",
        CHAIN,
        points=points,
        alphas=[0.5, 0.9],
        share=share,
        burst_share=0.5,
        burst=burst,
        memory=1e9,
        prior=1.0,
        detector=PageHinkley(0.0, threshold),
    )


def test_a_stated_accuracy_budget_is_read_or_refused_in_words() -> None:
    assert accuracy_points("accuracy@0.5") == 0.5 and accuracy_points("accuracy@2") == 2.0
    for bad in ("accuracy@", "accuracy@0", "accuracy@-1", "accuracy@nan", "accuracy@101"):
        with pytest.raises(ValueError, match="write accuracy@<points>"):
            accuracy_points(bad)


def test_disagreement_is_the_early_answer_under_each_alpha_against_the_final_one() -> None:
    alphas = np.array([0.5, 0.9, 1.0])
    # α 0.5: exit 1 (C_1 0.6), label 3 ≠ final 7; α 0.9: exit 3 (C_3 0.95), label 7; α 1: the final exit
    differ = disagreements(alphas, [0.6, 0.8, 0.95, 0.3, 0.3, 0.3], [3, 3, 7, 1, 1, 7])
    assert differ.tolist() == [True, False, False]


def test_shadow_runs_are_spread_evenly_and_raise_to_the_burst_share_at_first() -> None:
    steady = budget(share=0.25)
    assert [steady.plan(None).shadow for _ in range(8)] == [False, False, False, True] * 2
    bursting = budget(share=0.0, burst=4)  # 0.5 for four samples, then none
    assert [bursting.plan(None).shadow for _ in range(8)] == [False, True, False, True, False, False, False, False]
    shadow = steady.shadow_plan
    assert shadow.thresholds == (1.0,) * 6 and shadow.shadow and not shadow.last_block


def test_alpha_falls_as_shadow_runs_show_agreement_and_rises_when_they_show_disagreement() -> None:
    policy = budget(points=5.0)
    # prior only: D̂(0.5) = 0.5, D̂(0.9) = 0.1, both over 5 %: no early exit
    np.testing.assert_allclose(policy.estimates(), [0.5, 0.1, 0.0])
    assert policy.alpha == 1.0
    confidences = dict(enumerate([0.6, 0.8, 0.85, 0.3, 0.3, 0.3], start=1))
    labels = dict(enumerate([3, 3, 3, 1, 1, 7], start=1))  # α 0.5 exits at 1 with label 3 ≠ 7; α 0.9 runs to the end
    policy.observe_shadow(policy.shadow_plan, confidences, labels)
    # D̂(0.5) = (1 + 0.5) / 2, D̂(0.9) = (0 + 0.1) / 2 = 5 %: within the budget
    np.testing.assert_allclose(policy.estimates(), [0.75, 0.05, 0.0])
    assert policy.alpha == 0.9 and policy.plan(None).thresholds == (0.9,) * 6
    policy.observe_shadow(policy.shadow_plan, confidences, {**labels, 6: 3})  # now exit 1 agrees with the final one
    np.testing.assert_allclose(policy.estimates(), [1.5 / 3, 0.1 / 3, 0.0])
    assert policy.alpha == 0.9 and policy.shadows == 2 and policy.samples == 2
    restored = budget(points=5.0)
    restored.load_dict(policy.to_dict())
    assert restored.to_dict() == policy.to_dict() and restored.alpha == 0.9


def test_a_change_in_c1_forgets_the_estimates_and_shadows_more_for_a_while() -> None:
    policy = budget(points=5.0, burst=2, threshold=0.5)
    confidences = dict(enumerate([0.95, 0.8, 0.85, 0.3, 0.3, 0.3], start=1))
    policy.observe_shadow(policy.shadow_plan, confidences, dict(enumerate([7] * 6, start=1)))
    assert policy.alpha == 0.9
    policy.plan(None), policy.plan(None)  # the burst is spent
    policy.observe(policy.plans[1], {1: 0.05})  # C_1 falls: mean 0.5, D = −0.45, 0.45 below its max: not yet
    assert policy.detector.changes == 0 and policy.alpha == 0.9
    policy.observe(policy.plans[1], {1: 0.05})  # mean 0.35, D = −0.75: a change
    assert policy.detector.changes == 1 and policy.alpha == 1.0 and policy.burst_left == 2
    assert not policy.runs.any()


def test_on_a_real_stream_the_budget_holds_and_shadow_runs_answer_at_the_final_exit() -> None:
    stream = load_stream(SCENARIOS[0], DeviceSettings().models_dir, default_cache_dir()).take(np.arange(600))
    policy = accuracy_budget("accuracy-budget", PolicyParams(), CHAIN, 0.5)
    trace = replay(policy, stream, stream.order(0), CHAIN)
    shadows = trace.arm == len(policy.alphas)
    assert 0.03 < shadows.mean() < 0.25 and (trace.exit_block[shadows] == 6).all()
    final = (stream.predictions[:, -1] == stream.labels).mean()
    assert 100 * (final - trace.correct.mean()) <= 0.7 and (trace.exit_block < 6).mean() > 0.3
