"""The device's policies keep what they learned across a restart: saved atomically, restored at start.

A restart is a new :class:`PolicyStore` over the same state folder (what a
device process builds when it starts); the answers it learns from are real
``InferResponse`` messages, built from the route each plan gives a sample.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from splitexit.device.policy_store import MAX_BUDGETS, PolicyStore
from splitexit.device.settings import DeviceSettings
from splitexit.policies.budget import CostBudget
from splitexit.policies.catalog import PolicyParams
from splitexit.policies.chain import Chain, walk
from splitexit.policies.plan import Plan
from splitexit.shared.errors import InvalidInput, Overloaded
from splitexit.shared.manifest import Manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import Tier
from tests.conftest import IMAGE_MODEL_DIR

PARAMS = PolicyParams(clusters=2, calibration=6)


@pytest.fixture(scope="module")
def model(manifest: Manifest) -> HostedModel:
    return HostedModel(IMAGE_MODEL_DIR, manifest, Chain.of(manifest), tier=Tier.DEVICE, onnx_threads=1)


def device_policies(state_dir: Path, model: HostedModel, params: PolicyParams = PARAMS) -> PolicyStore:
    """What a device builds at start."""
    return PolicyStore(DeviceSettings(state_dir=state_dir, state_save_every=5, policy=params), [model])


def answer(chain: Chain, plan: Plan, confidences: np.ndarray) -> pb.InferResponse:
    """The answer the tiers give a sample showing ``confidences`` (C_1..C_L) under ``plan``."""
    route = walk(plan, chain, lambda block: float(confidences[block - 1]))
    hops = [
        pb.Hop(
            tier=run.tier.proto,
            first_block=run.first,
            last_block=run.last,
            exit_confidences=confidences[run.first - 1 : run.last].tolist(),
            exit_labels=[block % 3 for block in range(run.first, run.last + 1)],
        )
        for run in route.runs
    ]
    return pb.InferResponse(exit_block=route.exit_block, hops=hops)


def learn(policies: PolicyStore, model: HostedModel, name: str, samples: int, seed: int = 0) -> None:
    """``samples`` random samples through policy ``name``, each observed as the device does."""
    rng = np.random.default_rng(seed)
    policy = policies.get(model.name, name)
    for _ in range(samples):
        confidences = rng.uniform(0.5, 1.0, 6).astype(np.float32).astype(np.float64)
        plan = policy.plan(rng.normal(size=16))
        policies.settle(model, policy, plan, answer(model.chain, plan, confidences))


@pytest.mark.parametrize(
    "name",
    [
        "splitee-s",
        "dimee-router",
        "dimee-sw",
        "random-split",
        "splitee-cd",
        "cascade",
        "budget",
        "budget@0.3",
        "accuracy-budget",
        "accuracy@0.3",
    ],
)
def test_a_restarted_device_restores_the_same_state(tmp_path: Path, model: HostedModel, name: str) -> None:
    before = device_policies(tmp_path, model)
    learn(before, model, name, 13)
    before.save_all()  # what the device does when it stops
    saved = before.get("fmnist-cnn", name).to_dict()

    after = device_policies(tmp_path, model)
    restored = after.get("fmnist-cnn", name)
    assert restored.to_dict() == saved and restored.samples == 13
    if name.startswith("accuracy"):  # its first samples include shadow runs, whose labels it learned from
        assert restored.shadows > 0 and restored.runs.sum() > 0
        (best,) = after.message("fmnist-cnn", name).best  # the α it plays now, at every exit
        assert list(best.plan.exit_thresholds) == pytest.approx([restored.alpha] * 6)
    # and it carries on exactly as the first one would have
    rng = np.random.default_rng(1)
    for _ in range(5):
        embedding = rng.normal(size=16)
        assert restored.plan(embedding) == before.get("fmnist-cnn", name).plan(embedding)


def test_state_is_saved_every_few_samples_atomically(
    tmp_path: Path, model: HostedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = device_policies(tmp_path, model)
    learn(policies, model, "splitee", 12)  # saved after samples 5 and 10
    path = policies.path("fmnist-cnn", "splitee")
    assert sorted(p.name for p in path.parent.iterdir()) == ["splitee.json"]  # no temporary file left
    assert device_policies(tmp_path, model).get("fmnist-cnn", "splitee").samples == 10

    def crash(*args: object) -> None:
        raise OSError("the device lost power mid-save")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        learn(policies, model, "splitee", 3, seed=1)  # sample 15 saves: written, never put in place
    monkeypatch.undo()
    assert device_policies(tmp_path, model).get("fmnist-cnn", "splitee").samples == 10  # the last complete save


def test_state_from_other_params_or_a_damaged_file_starts_afresh(
    tmp_path: Path, model: HostedModel, caplog: pytest.LogCaptureFixture
) -> None:
    policies = device_policies(tmp_path, model)
    learn(policies, model, "dimee", 10)
    assert device_policies(tmp_path, model).get("fmnist-cnn", "dimee").samples == 10

    with caplog.at_level(logging.WARNING, logger="splitexit.device.policy_store"):
        other = device_policies(tmp_path, model, PARAMS.model_copy(update={"grid": [0.8, 1.0]}))
    assert other.get("fmnist-cnn", "dimee").samples == 0
    assert "other hyperparameters" in caplog.text

    policies.path("fmnist-cnn", "dimee").write_text('{"fingerprint": ')
    assert device_policies(tmp_path, model).get("fmnist-cnn", "dimee").samples == 0


def test_a_request_states_its_own_budget_by_name(tmp_path: Path, model: HostedModel) -> None:
    policies = device_policies(tmp_path, model)
    stated = policies.get("fmnist-cnn", "budget@0.30")
    assert isinstance(stated, CostBudget) and stated.name == "budget@0.3" and stated.share == 0.3
    assert policies.get("fmnist-cnn", "budget@0.3") is stated and "fmnist-cnn/budget@0.3" in list(policies)
    assert policies.get("fmnist-cnn", "budget").share == PARAMS.budget_share  # the configured one
    learn(policies, model, "budget@0.3", 7)
    assert policies.message("fmnist-cnn", "budget@0.3").samples == 7
    for bad in ("budget@0", "budget@1.5", "budget@cheap", "budget@nan"):
        with pytest.raises(InvalidInput, match="states no budget: write budget@<share>"):
            policies.get("fmnist-cnn", bad)
    for share in range(2, MAX_BUDGETS + 1):  # 0.3 and 15 more
        policies.get("fmnist-cnn", f"budget@{share / 100}")
    with pytest.raises(Overloaded, match=f"already keeps {MAX_BUDGETS} stated budgets"):
        policies.get("fmnist-cnn", "budget@0.99")
