"""I-SplitEE as its paper sets it: a device hosting the whole network, images under each distortion, one stream each.

For every phase of :data:`lab.scenarios.DISTORTED` (Gaussian noise and blur at
three strengths) the phase's images are a stream of their own, replayed from a
fresh state on a chain where every tier hosts every block, so the device can
run everything itself (I-SplitEE's device-only arm) and a split relays the
sample over the edge to the cloud. α is chosen per distortion on the same
distortion's validation images (:mod:`lab.tuning`). Next to ``i-splitee``:
``splitee-s`` on the same chain (its reward charges every tier's compute),
the device running every block, and the fixed α at every exit tuned on
validation. Costs are I-SplitEE's (:class:`~splitexit.policies.splitee.DeviceSideCosts`):
the device's compute and the links, relative to running every block on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lab.policy_runs import PolicyResult, Setup, builder, replays, summarize
from lab.scenarios import DISTORTED, Phase
from lab.tuning import FIXED_ALPHAS, SPLIT_ALPHAS, tune_one
from splitexit.policies.baselines import final_layer_plan
from splitexit.policies.chain import Chain
from splitexit.policies.replay import ExitStream
from splitexit.policies.splitee import DeviceSideCosts
from splitexit.shared.manifest import BlockRange
from splitexit.shared.tiers import TIERS

POLICIES = ("i-splitee", "splitee-s")
SCENARIO = DISTORTED[0]


@dataclass(frozen=True, kw_only=True)
class DistortionResult:
    distortion: str
    samples: int
    rows: list[PolicyResult]
    same_routes: float  # share of samples i-splitee and splitee-s sent the same way (first order)


def whole_chain(num_blocks: int) -> Chain:
    """Every tier hosts every block (``hosted:`` 1-L for each): the device can run the whole network."""
    return Chain(num_blocks, {tier: BlockRange(first=1, last=num_blocks) for tier in TIERS})


def one_phase(stream: ExitStream, phase: int) -> ExitStream:
    part = stream.take(np.flatnonzero(stream.phases == phase))
    return ExitStream(
        confidences=part.confidences,
        predictions=part.predictions,
        labels=part.labels,
        embeddings=part.embeddings,
        phases=np.zeros(len(part), int),
    )


def evaluate_distortion(
    name: str, test: ExitStream, validation: ExitStream, setup: Setup, seeds: int
) -> DistortionResult:
    """The policies on one distortion's stream, each tuned on that distortion's validation images."""
    chain = whole_chain(test.num_blocks)
    costs = DeviceSideCosts.of(setup.costs.model())
    final_cost, final_accuracy = costs.final_layer(chain), float((test.predictions[:, -1] == test.labels).mean())
    fixed = tune_one("fixed-thresholds", [{"thresholds": [a]} for a in FIXED_ALPHAS], setup, validation, chain, 1)
    rows, routes = [], {}
    candidates = {
        "device only": None,
        "fixed-thresholds": fixed,
        **{
            policy: tune_one(policy, [{"alpha": a} for a in SPLIT_ALPHAS], setup, validation, chain, 2)
            for policy in POLICIES
        },
    }
    for policy, tuned in candidates.items():
        plan = final_layer_plan(chain) if policy == "device only" else None
        chosen = setup.with_params(**tuned.choice) if tuned else setup
        traces, _ = replays(builder(policy, chain, plan), chosen, test, chain, seeds)
        routes[policy] = traces[0].routes
        result = summarize(
            policy, "learned" if policy in POLICIES else "baseline", traces, [""], final_accuracy, costs, final_cost
        )
        rows.append(result if tuned is None else _with_tuned(result, tuned.describe()))
    same = np.mean([a == b for a, b in zip(routes["i-splitee"], routes["splitee-s"], strict=True)])
    return DistortionResult(distortion=name, samples=len(test), rows=rows, same_routes=float(same))


def _with_tuned(result: PolicyResult, tuned: str) -> PolicyResult:
    return replace(result, tuned=tuned)


def evaluate(
    test: ExitStream, validation: ExitStream, phases: tuple[Phase, ...], setup: Setup, seeds: int
) -> list[DistortionResult]:
    """Every distortion of ``phases`` (the phases of both streams), one after the other."""
    return [
        evaluate_distortion(phase.name, one_phase(test, p), one_phase(validation, p), setup, seeds)
        for p, phase in enumerate(phases)
    ]


def section(results: list[DistortionResult]) -> str:
    """The page's I-SplitEE section: what was run, and the table."""
    return (
        f"**I-SplitEE's setting** (`{SCENARIO.name}`: Fashion-MNIST test images 5000..9999 under Gaussian noise and "
        "blur, three strengths each, a stream of its own per distortion; tuned per distortion on the same "
        "distortion of images 0..4999). Every tier hosts every block, so the device may run the whole network. Cost "
        "is I-SplitEE's: the device's compute plus the offload (the edge and the cloud compute free), relative to "
        "running every block on the device; *offloaded*: share of samples answered in the cloud.\n\n" + table(results)
    )


def table(results: list[DistortionResult]) -> str:
    """One row per distortion and policy: accuracy, drop, cost reduction, share offloaded, and whether the two agree."""
    rows = [
        "| distortion | policy | accuracy | drop (pts) | cost reduction (I-SplitEE's cost) | offloaded | tuned on "
        "validation |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for r in result.rows:
            rows.append(
                f"| {result.distortion} | {r.policy} | {100 * r.accuracy:.2f} % | {r.drop_points:+.2f} | "
                f"{100 * r.cost_reduction:.1f} % | {100 * r.tier_share['cloud']:.0f} % | {r.tuned} |"
            )
    same = ", ".join(f"{r.distortion} {100 * r.same_routes:.0f} %" for r in results)
    return "\n".join(rows) + f"\n\nSamples `i-splitee` and `splitee-s` sent the same way (first order): {same}."
