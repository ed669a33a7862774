"""Hyperparameters are chosen on validation streams disjoint from the test streams, by the stated rule."""

from __future__ import annotations

import numpy as np
import pytest

from lab.fashion_mnist import default_cache_dir, held_out_half
from lab.policy_runs import Setup, builder, replays, summarize
from lab.scenarios import SCENARIOS, VALIDATION, half_of, load_stream
from lab.text_data import split_indices
from lab.tuning import DROP_LIMIT, FIXED_ALPHAS, tune_one
from splitexit.device.settings import DeviceSettings
from splitexit.policies.catalog import PolicyParams
from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostSettings
from splitexit.shared.manifest import load_manifest


def test_every_test_stream_has_a_validation_stream_drawn_elsewhere() -> None:
    assert set(VALIDATION) == {scenario.name for scenario in SCENARIOS}
    for scenario in SCENARIOS:
        validation = VALIDATION[scenario.name]
        assert validation.model == scenario.model and validation.phases == scenario.phases
        assert validation.options != scenario.options
    for scenario in SCENARIOS[:4]:  # Fashion-MNIST: test images 0..4999 for choices, 5000..9999 reported
        assert (scenario.options, VALIDATION[scenario.name].options) == ({"half": "test"}, {"half": "validation"})
    validation, test = (held_out_half(half)[1] for half in ("validation", "test"))
    assert len(validation) == len(test) == 5000
    assert "imdb" not in VALIDATION["sentiment-imdb"].options["domains"]
    _, held = split_indices(2225, 0.2, 0)
    validation, test = half_of(held, "validation"), half_of(held, "test")
    assert not set(validation) & set(test) and sorted([*validation, *test]) == sorted(held)


def test_fixed_alpha_is_the_cheapest_within_the_drop_limit_on_validation() -> None:
    settings = DeviceSettings()
    scenario = VALIDATION["fmnist-clean"]
    stream = load_stream(scenario, settings.models_dir, default_cache_dir()).take(np.arange(2000))
    chain = Chain.of(load_manifest(settings.models_dir / scenario.model))
    setup = Setup(PolicyParams(), CostSettings())
    options = [{"thresholds": [alpha]} for alpha in FIXED_ALPHAS]
    tuned = tune_one("fixed-thresholds", options, setup, stream, chain, seeds=1)

    final_accuracy = float((stream.predictions[:, -1] == stream.labels).mean())
    costs = setup.costs.model()
    every = []
    for option in options:  # the same replays, by hand
        traces, _ = replays(builder("fixed-thresholds", chain), setup.with_params(**option), stream, chain, 1)
        every.append(summarize("", "", traces, [""], final_accuracy, costs, costs.final_layer(chain)))
    within = [r for r in every if r.drop_points <= DROP_LIMIT]
    assert tuned.validation.drop_points <= DROP_LIMIT
    assert tuned.validation.cost_reduction == pytest.approx(max(r.cost_reduction for r in within))
    assert any(r.cost_reduction > tuned.validation.cost_reduction for r in every), "the limit should bind"
    assert tuned.describe() == f"α={tuned.choice['thresholds'][0]:g}"
