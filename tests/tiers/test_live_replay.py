"""Live = replay: the running three tiers make exactly the decisions an offline replay makes.

A real testbed serves real Fashion-MNIST test images, sent one at a time in a
seeded order, each naming a learning policy (``Plan.name``). The
replay runs a fresh policy with the same params over the same images' per-exit
outcomes (computed once through the same ONNX segments) in the same order. Each
sample must take the same route (the blocks every tier ran, the exit tier and
block), and the policy must end up with the same arm counts and rewards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from lab.scenarios import exit_outcomes
from splitexit.client import AsyncClient, ClientError
from splitexit.device.settings import DeviceSettings
from splitexit.policies.catalog import accuracy_budget, make_policy
from splitexit.policies.chain import Chain
from splitexit.policies.dimee import embed
from splitexit.policies.replay import ExitStream, replay
from splitexit.policy_show import fetch
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import TIERS, Tier
from splitexit.testbed import Testbed, free_port
from tests.conftest import IMAGE_MODEL_DIR

SAMPLES = 80


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three tiers whose device keeps its policy state in a fresh folder (every policy starts afresh)."""
    state_dir = tmp_path_factory.mktemp("policy-state")
    settings = {Tier.DEVICE: {"state_dir": str(state_dir)}}
    with Testbed({tier: free_port() for tier in Tier}, settings, log_dir=tmp_path_factory.mktemp("logs")) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def stream(images: list[LabelledImage], manifest: Manifest) -> ExitStream:
    """The images' outcomes at every exit, batch 1 as the tiers run them."""
    chosen = images[:SAMPLES]
    x = [decode_image(image.png, manifest.input) for image in chosen]
    confidences, predictions = exit_outcomes(IMAGE_MODEL_DIR, manifest, x, batch=1)
    labels = np.array([image.label for image in chosen])
    return ExitStream(
        confidences=confidences,
        predictions=predictions,
        labels=labels,
        embeddings=np.stack([embed(s) for s in x]),
        phases=np.zeros(len(x), int),
    )


def send_one_at_a_time(
    address: str, images: list[LabelledImage], order: np.ndarray, policy: str
) -> list[pb.InferResponse]:
    """Each image in ``order``, the next sent when the previous is answered, naming ``policy``."""

    async def go() -> list[pb.InferResponse]:
        async with AsyncClient(address) as client:
            answers = []
            for index in order:
                request = pb.InferRequest(image=images[index].png, policy=pb.Plan(name=policy))
                answers.append((await client.infer_request(request)).message)
            return answers

    answers = asyncio.run(go())
    degraded = [a.degradation.message for a in answers if a.degraded]
    assert not degraded, f"{len(degraded)} answers degraded (a policy learns nothing from them): {degraded[:3]}"
    return answers


@pytest.mark.parametrize("policy", ["splitee", "dimee", "i-splitee", "splitee-cd", "cascade", "budget"])
def test_live_decisions_equal_replay(
    bed: Testbed, images: list[LabelledImage], stream: ExitStream, manifest: Manifest, policy: str
) -> None:
    order = stream.order(seed=7)
    answers = send_one_at_a_time(bed.device_address, images, order, policy)

    settings = DeviceSettings()  # the device's defaults
    chain = Chain.of(manifest)
    replayed = make_policy(policy, settings.policy, chain, settings.costs.model())
    trace = replay(replayed, stream, order, chain)

    live_routes = [[(Tier.from_proto(h.tier), h.first_block, h.last_block) for h in a.hops] for a in answers]
    replay_routes = [[(run.tier, run.first, run.last) for run in route.runs] for route in trace.routes]
    assert live_routes == replay_routes
    assert [a.exit_block for a in answers] == trace.exit_block.tolist()
    assert [Tier.from_proto(a.exit_tier) for a in answers] == [TIERS[t] for t in trace.exit_tier]
    assert all(a.policy == policy for a in answers)
    assert len({(a.exit_tier, a.exit_block) for a in answers}) > 1, "every sample took the same way"

    state = asyncio.run(fetch(bed.device_address, manifest.name, policy))
    learned = json.loads(state.state_json)
    expected = replayed.to_dict()
    assert learned["samples"] == expected["samples"] == SAMPLES
    if "bandits" in expected:
        assert len(set(trace.arm.tolist())) > 2, "the stream should make the bandit try several arms"
        assert learned["bandits"][0]["counts"] == expected["bandits"][0]["counts"]
        np.testing.assert_allclose(learned["bandits"][0]["sums"], expected["bandits"][0]["sums"], rtol=1e-12)
        assert learned.get("detector") == expected.get("detector")
    else:  # the budget: the same α at every step, so the same dual variable and spend at the end
        assert learned["level"] == pytest.approx(expected["level"], rel=1e-12) and learned["level"] != 0.9
        assert learned["spent"] == pytest.approx(expected["spent"], rel=1e-12)


def test_policy_state_is_saved_when_the_device_stops(tmp_path: Path, images: list[LabelledImage]) -> None:
    """After a clean stop, the device's learned state is on disk, and a restarted device carries on from it."""
    settings = {Tier.DEVICE: {"state_dir": str(tmp_path), "state_save_every": "1000"}}
    ports = {tier: free_port() for tier in Tier}
    with Testbed(ports, settings, log_dir=tmp_path / "logs") as testbed:
        send_one_at_a_time(testbed.device_address, images, np.arange(7), "splitee-s")
    saved = json.loads((tmp_path / "fmnist-cnn" / "splitee-s.json").read_text())
    assert saved["state"]["samples"] == 7
    with Testbed(ports, settings, log_dir=tmp_path / "logs") as testbed:
        state = asyncio.run(fetch(testbed.device_address, "fmnist-cnn", "splitee-s"))
    assert state.samples == 7 and sum(arm.pulls for arm in state.arms) >= 7


def test_a_request_states_its_budget_and_a_bad_one_is_refused(bed: Testbed, images: list[LabelledImage]) -> None:
    answers = send_one_at_a_time(bed.device_address, images, np.arange(12), "budget@0.3")
    assert {a.policy for a in answers} == {"budget@0.3"}
    assert np.mean([a.cost for a in answers]) < np.mean([a.cost_final_layer for a in answers])
    with pytest.raises(ClientError) as refused:
        send_one_at_a_time(bed.device_address, images, np.arange(1), "budget@7")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "states no budget: write budget@<share>" in refused.value.message


def test_the_accuracy_budget_decides_live_as_its_replay_does(
    bed: Testbed, images: list[LabelledImage], stream: ExitStream, manifest: Manifest
) -> None:
    """Shadow runs included: the same samples run in the shadow, the same estimates after them, the same α."""
    policy = "accuracy@0.3"
    order = stream.order(seed=3)
    answers = send_one_at_a_time(bed.device_address, images, order, policy)

    settings = DeviceSettings()
    chain = Chain.of(manifest)
    replayed = accuracy_budget(policy, settings.policy, chain, 0.3)
    trace = replay(replayed, stream, order, chain)
    live_routes = [[(Tier.from_proto(h.tier), h.first_block, h.last_block) for h in a.hops] for a in answers]
    assert live_routes == [[(run.tier, run.first, run.last) for run in route.runs] for route in trace.routes]
    assert all(a.policy == policy for a in answers)
    shadows = trace.arm == len(replayed.alphas)  # the shadow plan's arm
    assert 0 < shadows.sum() < len(order) and (trace.exit_block[shadows] == manifest.num_blocks).all()
    assert (trace.exit_block[~shadows] < manifest.num_blocks).any(), "some sample should exit early"
    for answer in answers:  # every exit's label travels back with its confidence
        assert all(len(h.exit_labels) == len(h.exit_confidences) for h in answer.hops)
        assert answer.hops[-1].exit_labels[-1] == answer.label

    learned = json.loads(asyncio.run(fetch(bed.device_address, manifest.name, policy)).state_json)
    expected = replayed.to_dict()
    assert learned["shadows"] == expected["shadows"] == shadows.sum() and learned["samples"] == SAMPLES
    np.testing.assert_allclose(learned["runs"], expected["runs"], rtol=1e-12)
    np.testing.assert_allclose(learned["disagreed"], expected["disagreed"], rtol=1e-12)
    assert learned["choice"] == expected["choice"] and learned["detector"] == expected["detector"]
    with pytest.raises(ClientError) as refused:
        send_one_at_a_time(bed.device_address, images, np.arange(1), "accuracy@-1")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "write accuracy@<points>" in refused.value.message
