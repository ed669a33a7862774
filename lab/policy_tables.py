"""The tables of ``make evaluate`` in Markdown: printed per scenario, and written to ``docs/results/policies.md``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.policy_eval import BUDGETS, CONVENTIONS, SWEEPS, ScenarioResult
from lab.policy_runs import PolicyResult, Setup
from lab.policy_targets import ONLINE, accuracy_line, best_on_validation, drift_line
from lab.tuning import BUDGET_SLACK, DROP_LIMIT

TARGET = (60.0, 0.5)  # the target: ≥ 60 % cost reduction at ≤ 0.5 point accuracy drop (clean streams)
FRONTIER_SLACK = 1.0  # points of cost: "on the fixed-threshold frontier"
PHASE_DROP = 1.0  # points: every phase's drop on the drift stream


def _gap(r: PolicyResult) -> str:
    return "—" if r.frontier_gap is None else f"{r.frontier_gap:+.1f}"


def policy_table(policies: Sequence[PolicyResult], convention: str) -> str:
    rows = [
        f"| {convention}: policy | accuracy | drop (pts) | cost reduction | fixed α cheaper by (pts) | device | edge "
        "| cloud | tuned on validation | learned / plan |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in policies:
        name = f"**{r.policy}**" if r.kind in ONLINE else r.policy
        spread = f" ± {100 * r.accuracy_std:.2f}" if round(100 * r.accuracy_std, 2) else ""  # not for fixed plans
        shares = " | ".join(f"{100 * share:.0f} %" for share in r.tier_share.values())
        rows.append(
            f"| {name} | {100 * r.accuracy:.2f} %{spread} | {r.drop_points:+.2f} | {100 * r.cost_reduction:.1f} % "
            f"| {_gap(r)} | {shares} | {r.tuned} | {r.learned} |"
        )
    return "\n".join(rows)


def frontier_table(result: ScenarioResult, convention: str) -> str:
    """One α at every exit, on the test stream: the frontier every policy is held against."""
    points = result.frontier[convention]
    return "\n".join(
        [
            "| fixed α at every exit (test stream) | " + " | ".join(f"{alpha:g}" for alpha, _, _ in points) + " |",
            "|---|" + "---:|" * len(points),
            "| cost reduction / drop (pts) | " + " | ".join(f"{100 * c:.0f} % / {d:+.2f}" for _, d, c in points) + " |",
        ]
    )


def phase_table(policies: Sequence[PolicyResult]) -> str:
    """Per phase, for every policy but the relays: accuracy, drop and cost reduction; for bandits the regret in the
    phase and how it grew."""
    rows = [
        "| policy | phase | accuracy | drop (pts) | cost reduction | regret in phase | 2nd half ÷ 1st half |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in policies:
        if r.policy.startswith("relay"):  # the final layer's answers
            continue
        for p in r.phases:
            regret = "" if p.regret is None else f"{p.regret:.1f}"
            halves = "" if p.regret_halves is None else f"{p.regret_halves:.2f}"
            rows.append(
                f"| {r.policy} | {p.phase} | {100 * p.accuracy:.2f} % | {p.drop_points:+.2f} | "
                f"{100 * p.cost_reduction:.1f} % | {regret} | {halves} |"
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
                + " | ".join(f"{100 * cells[v].cost_reduction:.0f} % / {cells[v].drop_points:+.2f}" for v in values)
                + " |"
            )
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def target_line(policies: Sequence[PolicyResult]) -> str:
    """Whether an online policy reached the target, whether it lies on the frontier, and the budgets kept."""
    reduction, drop = TARGET
    best = best_on_validation(policies)  # picked on validation, reported on the test stream
    met = best is not None and 100 * best.cost_reduction >= reduction and best.drop_points <= drop
    found = f"{best.policy}, {100 * best.cost_reduction:.1f} % at {best.drop_points:+.2f}" if best else "none"
    learned = [r for r in policies if r.kind == "learned" and r.frontier_gap is not None]
    on_frontier = [r.policy for r in learned if r.frontier_gap <= FRONTIER_SLACK]
    lines = [
        f"Best online policy picked on validation (cheapest at ≤ {drop:g} pt validation drop), on the test stream: "
        f"{found}: ≥ {reduction:.0f} % at ≤ {drop:g} pt {'**met**' if met else '**missed**'}"
        + (f"; fixed α cheaper by {_gap(best)} pts" if best else "")
        + ".",
        f"Bandits on or beyond the fixed-α frontier (no fixed α at the same or a lower drop cheaper by more than "
        f"{FRONTIER_SLACK:g} pt): {', '.join(on_frontier) or 'none'}.",
    ]
    budgets = []
    for r in policies:
        if r.kind == "budget":
            share = BUDGETS[[f"budget ≤ {100 * b:g} %" for b in BUDGETS].index(r.policy)]
            over = 100 * (1 - r.cost_reduction - share)
            budgets.append(
                f"{r.policy}: mean cost {100 * (1 - r.cost_reduction):.2f} % of the final layer's "
                f"({'kept' if over <= 100 * BUDGET_SLACK else '**over**'}, {over:+.2f} pt)"
            )
    if budgets:
        lines.append("Budgets: " + "; ".join(budgets) + ".")
    return " ".join(lines)


def phase_line(policies: Sequence[PolicyResult]) -> str:
    """The drift targets: every phase's drop ≤ 1 pt, and regret growing sub-linearly after each shift."""
    online = [r for r in policies if r.kind in ONLINE]
    every = [r.policy for r in online if all(p.drop_points <= PHASE_DROP for p in r.phases)]
    slowing = [
        r.policy
        for r in online
        if r.phases and all(p.regret_halves is not None and p.regret_halves < 1.0 for p in r.phases[1:])
    ]
    return (
        f"Online policies with every phase's drop ≤ {PHASE_DROP:g} pt: {', '.join(every) or 'none'}. "
        f"Bandits whose regret grew more slowly in the second half of every post-shift phase than in the first: "
        f"{', '.join(slowing) or 'none'}."
    )


def scenario_section(result: ScenarioResult) -> str:
    phases = f", phases in turn: {', '.join(result.phases)}" if len(result.phases) > 1 else ""
    final = ", ".join(f"{result.final_cost[c]:.2f} ({c})" for c in CONVENTIONS)
    parts = [
        f"**{result.title}** (`{result.name}`, {result.samples:,} samples{phases}; tuned on `{result.validation}`). "
        f"Final layer: accuracy {100 * result.final_accuracy:.2f} %, cost per sample {final}."
    ]
    for convention in CONVENTIONS:
        policies = result.policies[convention]
        parts += [
            policy_table(policies, convention),
            frontier_table(result, convention),
            target_line(policies),
            accuracy_line(policies, result.accuracy_points),
        ]
        if len(result.phases) > 1 and convention == CONVENTIONS[0]:
            parts += [f"Per phase, {convention}:", phase_table(policies), phase_line(policies), drift_line(policies)]
    if result.sweeps:
        parts.append(f"Sweeps, {CONVENTIONS[0]} (cost reduction / accuracy drop in points):\n\n" + sweep_tables(result))
    return "\n\n".join(parts)


def page_body(
    results: Sequence[ScenarioResult],
    setup: Setup,
    seeds: int,
    runtime_s: float,
    plots: Sequence[Path],
    page_dir: Path,
) -> str:
    """The policies page: how the streams were replayed and priced, the plots (linked from ``page_dir``), every
    table."""
    costs = setup.costs
    weights = " / ".join(f"{tier.value} {weight:g}" for tier, weight in costs.tier_weights.items())
    header = (
        f"`make evaluate` (`python -m lab.evaluate --page`, {runtime_s:.0f} s on this machine) replays each test "
        f"stream through every policy in {seeds} seeded random orders, from a fresh state each time, and averages. "
        f"Costs: λ = {costs.lam:g} per block, o_de = {costs.o_de:g}, o_ec = {costs.o_ec:g} per link crossed, "
        f"configured tier weights {weights}; the final-layer cost (every block run, both links crossed) is the one "
        "answers, metrics, the demo and these tables divide by. Two cost conventions, each a separate run in which "
        "the policies both learn and pay with it: **cloud charged** (the primary one: every tier's compute counts) "
        "and **cloud free** (SplitEE's convention). **Tuning**: every hyperparameter (α, μ, grids, γ, windows, "
        "change-detection thresholds, the budget's step) was chosen on the scenario's validation stream, disjoint "
        f"from the test stream (column *tuned on validation*): the largest cost reduction at ≤ {DROP_LIMIT:g} pt "
        "validation drop; for a budget the most accurate setting that kept it; for the accuracy budget the cheapest "
        "that kept its points in every validation phase. The line *best online policy* is picked on validation too. "
        "Fashion-MNIST's validation streams are the test set's images 0..4999, its test streams images 5000..9999. "
        "Only the rows named `oracle-*` are "
        "chosen on the test stream (hindsight). *fixed α cheaper by*: how many points of cost the cheapest fixed α "
        "at every exit with the same or a lower drop on the test stream saves beyond the row (negative: the row is "
        "beyond that frontier; —: no fixed α is as accurate). Online policies in bold; relays send every sample on "
        "after block k with no early exit; device / edge / cloud: share of samples answered there; the learned arm "
        "is the most pulled one. Drifting streams also get a table per phase: accuracy, drop and cost reduction "
        "within the phase, and for bandits the pseudo-regret accumulated in it against the phase's best fixed arm "
        "(among the policy's own arms), with the regret of the phase's second half over its first (below 1: it "
        "grew sub-linearly). A budget is kept when its mean cost is within 0.2 points of its stated share of the "
        "final layer's cost (it is a ceiling: below is kept too)."
    )
    images = " ".join(f"![{path.stem}]({os.path.relpath(path.resolve(), page_dir)})" for path in plots)
    return "\n\n".join([header, images, *(scenario_section(result) for result in results)])
