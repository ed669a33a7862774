"""Summaries of a batch of answers: accuracy, where samples exited, latency, bytes, cost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import TIERS, Tier


@dataclass(frozen=True)
class Outcome:
    """One answered sample, seen from the client."""

    label: int  # the true label
    response: pb.InferResponse
    latency_s: float  # client-side round trip


def summarize(outcomes: list[Outcome]) -> dict[str, float]:
    """The demo's summary numbers (fractions, seconds, bytes)."""
    if not outcomes:
        raise ValueError("no answers to summarize")
    n = len(outcomes)
    tiers = Counter(Tier.from_proto(o.response.exit_tier) for o in outcomes)
    latencies = np.array([o.latency_s for o in outcomes])
    link_bytes = {"device_to_edge": 0, "edge_to_cloud": 0}
    for o in outcomes:
        for hop in o.response.hops:
            if hop.tier == pb.TIER_NAME_DEVICE:
                link_bytes["device_to_edge"] += hop.bytes_sent
            elif hop.tier == pb.TIER_NAME_EDGE:
                link_bytes["edge_to_cloud"] += hop.bytes_sent
    cost = sum(o.response.cost for o in outcomes)
    final = sum(o.response.cost_final_layer for o in outcomes)
    return {
        "samples": n,
        "accuracy": sum(o.response.label == o.label for o in outcomes) / n,
        **{f"exit_share_{t.value}": tiers[t] / n for t in TIERS},
        "degraded_share": sum(o.response.degraded for o in outcomes) / n,
        "latency_mean_s": float(latencies.mean()),
        "latency_p95_s": float(np.percentile(latencies, 95)),
        **{f"bytes_{link}": total for link, total in link_bytes.items()},
        "cost_relative_to_final_layer": cost / final,
    }


def format_summary(summary: dict[str, float]) -> str:
    """The summary as an aligned two-column table."""
    rows = [
        ("samples", f"{summary['samples']:.0f}"),
        ("accuracy", f"{summary['accuracy']:.2%}"),
        *[(f"exited on {t.value}", f"{summary[f'exit_share_{t.value}']:.1%}") for t in TIERS],
        ("answered degraded", f"{summary['degraded_share']:.1%}"),
        ("latency mean", f"{summary['latency_mean_s'] * 1e3:.2f} ms"),
        ("latency p95", f"{summary['latency_p95_s'] * 1e3:.2f} ms"),
        ("bytes device→edge", f"{summary['bytes_device_to_edge']:,.0f}"),
        ("bytes edge→cloud", f"{summary['bytes_edge_to_cloud']:,.0f}"),
        ("cost vs final layer", f"{summary['cost_relative_to_final_layer']:.1%}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value:>14}" for name, value in rows)


def format_answer(outcome: Outcome, labels: list[str] | None = None) -> str:
    """One line per sample: truth, answer, confidence, where it exited, latency."""
    r = outcome.response
    truth = labels[outcome.label] if labels else str(outcome.label)
    mark = "✓" if r.label == outcome.label else "✗"
    return (
        f"  {mark} {r.label_name:<12} (true {truth:<12}) conf {r.confidence:.3f}  "
        f"exit {Tier.from_proto(r.exit_tier).value:<6} block {r.exit_block}  {outcome.latency_s * 1e3:7.2f} ms"
    )


def tier_times(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Mean seconds each tier spent on the samples that reached it.

    ``own`` is the tier's time without the tiers after it (its total less the
    network wait and the next tier's total); ``compute`` is its onnxruntime time.
    """
    samples: dict[Tier, list[tuple[float, float]]] = {t: [] for t in TIERS}
    for o in outcomes:
        hops = list(o.response.hops)
        for hop, after in zip(hops, [*hops[1:], None]):
            downstream = after.timings.total_s if after is not None else 0.0
            own = hop.timings.total_s - hop.timings.network_s - downstream
            samples[Tier.from_proto(hop.tier)].append((own, hop.timings.compute_s))
    return {
        t.value: {
            "samples": len(v),
            "own_s": float(np.mean([s[0] for s in v])),
            "compute_s": float(np.mean([s[1] for s in v])),
        }
        for t, v in samples.items()
        if v
    }


def latency_by_exit_tier(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Client-side latency (seconds, p50 and p95) of the answers each tier gave, for the tiers that answered."""
    by_tier: dict[Tier, list[float]] = {t: [] for t in TIERS}
    for o in outcomes:
        by_tier[Tier.from_proto(o.response.exit_tier)].append(o.latency_s)
    return {
        t.value: {"answers": len(v), "p50_s": float(np.percentile(v, 50)), "p95_s": float(np.percentile(v, 95))}
        for t, v in by_tier.items()
        if v
    }


def format_tier_times(times: dict[str, dict[str, float]]) -> str:
    """One line per tier: how many samples reached it, its mean own time and compute time."""
    return "\n".join(
        f"  {tier:<6} {t['samples']:>5.0f} samples  own {t['own_s'] * 1e3:6.2f} ms  compute "
        f"{t['compute_s'] * 1e3:6.2f} ms"
        for tier, t in times.items()
    )
