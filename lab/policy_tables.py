"""The tables of ``make evaluate`` in Markdown: printed per scenario, and written into the README."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.policy_eval import CONVENTIONS, SWEEPS, PolicyResult, ScenarioResult, Setup

TARGET = (50.0, 1.0)  # the target: ≥ 50 % cost reduction at ≤ 1 point accuracy drop
AIM = (60.0, 0.5)


def policy_table(policies: Sequence[PolicyResult], convention: str) -> str:
    rows = [
        f"| {convention}: policy | accuracy | drop (pts) | cost reduction | device | edge | cloud "
        "| learned split / thresholds |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in policies:
        name = f"**{r.policy}**" if r.kind == "learned" else r.policy
        spread = f" ± {100 * r.accuracy_std:.2f}" if round(100 * r.accuracy_std, 2) else ""  # not for fixed plans
        shares = " | ".join(f"{100 * share:.0f} %" for share in r.tier_share.values())
        rows.append(
            f"| {name} | {100 * r.accuracy:.2f} %{spread} | {r.drop_points:+.2f} | {100 * r.cost_reduction:.1f} % "
            f"| {shares} | {r.learned} |"
        )
    return "\n".join(rows)


def sweep_tables(result: ScenarioResult) -> str:
    """One table per knob: cost reduction (cloud charged) and accuracy drop per policy and value."""
    tables = []
    for knob, values in SWEEPS.items():
        rows = [
            f"| {knob} = | " + " | ".join(f"{value:g}" for value in values) + " |",
            "|---|" + "---:|" * len(values),
        ]
        for policy in dict.fromkeys(point.policy for point in result.sweeps if point.knob == knob):
            cells = {p.value: p for p in result.sweeps if p.knob == knob and p.policy == policy}
            rows.append(
                f"| {policy} | "
                + " | ".join(
                    f"{100 * cells[v].cost_reduction:.0f} % / {cells[v].drop_points:+.2f}" for v in values
                )
                + " |"
            )
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def best_within(policies: Sequence[PolicyResult], drop_points: float) -> PolicyResult | None:
    """The learned policy with the highest cost reduction whose accuracy drop is at most ``drop_points``."""
    within = [r for r in policies if r.kind == "learned" and r.drop_points <= drop_points]
    return max(within, key=lambda r: r.cost_reduction, default=None)


def target_line(policies: Sequence[PolicyResult]) -> str:
    """Whether a learned policy reached the target, and the aim."""
    verdicts = []
    for reduction, drop in (TARGET, AIM):
        best = best_within(policies, drop)
        met = best is not None and 100 * best.cost_reduction >= reduction
        found = f"{best.policy}, {100 * best.cost_reduction:.1f} % at {best.drop_points:+.2f}" if best else "none"
        verdicts.append(f"≥ {reduction:.0f} % at ≤ {drop:g} pt {'**met**' if met else 'not met'} ({found})")
    return "Best learned policy: " + "; ".join(verdicts) + "."


def scenario_section(result: ScenarioResult) -> str:
    phases = f", phases in turn: {', '.join(result.phases)}" if len(result.phases) > 1 else ""
    final = ", ".join(f"{result.final_cost[c]:.2f} ({c})" for c in CONVENTIONS)
    parts = [
        f"**{result.title}** (`{result.name}`, {result.samples:,} samples{phases}). "
        f"Final layer: accuracy {100 * result.final_accuracy:.2f} %, cost per sample {final}.",
        *(f"{policy_table(result.policies[c], c)}\n\n{target_line(result.policies[c])}" for c in CONVENTIONS),
    ]
    if result.sweeps:
        parts.append(f"Sweeps, {CONVENTIONS[0]} (cost reduction / accuracy drop in points):\n\n" + sweep_tables(result))
    return "\n\n".join(parts)


def readme_section(
    results: Sequence[ScenarioResult], setup: Setup, seeds: int, runtime_s: float,
    plots: Sequence[Path], root: Path,
) -> str:  # fmt: skip
    params, costs = setup.params, setup.costs
    weights = " / ".join(f"{tier.value} {weight:g}" for tier, weight in costs.tier_weights.items())
    header = (
        f"`make evaluate` (`python -m lab.evaluate --readme`, {runtime_s:.0f} s on this machine) replays each test "
        f"stream through every policy in {seeds} seeded random orders, from a fresh state each time, and averages. "
        f"Costs: λ = {costs.lam:g} per block, o_de = {costs.o_de:g}, o_ec = {costs.o_ec:g} per link crossed; "
        f"μ = {params.mu:g}, SplitEE's α = {params.alpha:g}, DIMEE's grid {params.grid}, UCB c = {params.ucb_c:g}, "
        f"I-SplitEE's discount γ = {params.discount:g}; configured tier weights {weights}. Two cost conventions, "
        "each a separate run in which the policies both learn and pay with it: **cloud charged** (every tier's "
        "compute counts) and **cloud free** (the cloud's compute costs nothing, SplitEE's convention). Cost "
        "reduction is against the final layer (every block run, both links crossed) in the same convention. "
        "Learned policies in bold; `oracle-*` is the best fixed arm in hindsight; device / edge / cloud: share of "
        "samples answered there; the learned arm is the most pulled one."
    )
    images = " ".join(f"![{path.stem}]({os.path.relpath(path.resolve(), root)})" for path in plots)
    return "\n\n".join([header, images, *(scenario_section(result) for result in results)])
