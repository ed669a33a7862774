"""Every hyperparameter is chosen on the validation stream, never on the test stream it is reported on.

For each policy, :data:`CANDIDATES` lists the settings tried (a few values
of the knobs that policy has); each is replayed over the validation stream
in ``seeds`` orders, and the chosen one is

* for the learned policies and the fixed thresholds: the largest cost
  reduction at an accuracy drop of at most :data:`DROP_LIMIT` points on the
  validation stream (if none is within it, the smallest drop);
* for the accuracy budget (its points are the user's): the cheapest setting
  whose drop in every phase of the validation stream kept the budget (if
  none did, the one with the smallest worst phase);
* for a budget (its share is the user's, not tuned): the most accurate
  setting whose mean cost kept the budget on the validation stream (within
  :data:`BUDGET_SLACK`; if none did, the cheapest).

Policies tuned later reuse earlier choices (the split variants take SplitEE's
α; the DIMEE variants DIMEE's grid, μ and c; cascade splitee-cd's h), so each
adds only its own knob.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lab.policy_runs import PolicyResult, Setup, builder, replays, summarize
from splitexit.policies.chain import Chain
from splitexit.policies.replay import ExitStream, Trace

DROP_LIMIT = 0.5  # points: the aim's accuracy drop
BUDGET_SLACK = 0.002  # a budget counts as kept within 0.2 points of the final layer's cost
FIXED_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
SPLIT_ALPHAS = (0.8, 0.9, 0.95, 0.99)
MUS = (0.5, 1.0, 2.0)
UCB_CS = (0.25, 1.0)  # arms' mean rewards differ by hundredths, so c = 1 explores long
DIMEE_GRIDS = ([0.6, 0.7, 0.8, 0.9, 1.0], [0.7, 0.8, 0.9, 0.95, 0.99, 1.0], [0.8, 0.9, 0.95, 0.99, 1.0])
CASCADE_GRIDS = ([0.6, 0.7, 0.8, 0.9, 0.95, 1.0], [0.8, 0.9, 0.95, 0.99, 1.0], [0.9, 0.95, 0.98, 0.99, 0.995, 1.0])
WINDOWS = (200, 500, 1000)
SHADOW_SHARES = (0.03, 0.05)
SYMBOLS = {
    "alpha": "α",
    "mu": "μ",
    "ucb_c": "c",
    "discount": "γ",
    "window": "W",
    "drift_threshold": "h",
    "grid": "grid",
    "cascade_grid": "grid",
    "thresholds": "α",
    "budget_step": "η",
    "budget_alpha": "α₀",
    "shadow_share": "s",
}

Choice = dict[str, Any]


def _split(chosen: dict[str, Choice]) -> Choice:
    return {"alpha": chosen["splitee"]["alpha"]}


def _dimee(chosen: dict[str, Choice]) -> Choice:
    return {key: chosen["dimee"][key] for key in ("grid", "mu", "ucb_c")}


# policy -> the settings to try, given what was chosen before it (in this order)
CANDIDATES: dict[str, Callable[[dict[str, Choice]], list[Choice]]] = {
    "fixed-thresholds": lambda chosen: [{"thresholds": [a]} for a in FIXED_ALPHAS],
    "splitee": lambda chosen: [{"alpha": a} for a in SPLIT_ALPHAS],
    "splitee-s": lambda chosen: [{"alpha": a} for a in SPLIT_ALPHAS],
    "i-splitee": lambda chosen: [{"alpha": a} for a in SPLIT_ALPHAS],
    "splitee-d": lambda chosen: [{**_split(chosen), "discount": g} for g in (0.99, 0.995, 0.998)],
    "splitee-sw": lambda chosen: [{**_split(chosen), "window": w} for w in WINDOWS],
    "splitee-cd": lambda chosen: [{**_split(chosen), "drift_threshold": h} for h in (5.0, 10.0, 20.0)],
    "random-split": lambda chosen: [_split(chosen)],
    "dimee": lambda chosen: [{"grid": g, "mu": mu, "ucb_c": c} for g in DIMEE_GRIDS for mu in MUS for c in UCB_CS],
    "dimee-sw": lambda chosen: [{**_dimee(chosen), "window": w} for w in WINDOWS],
    "dimee-router": lambda chosen: [_dimee(chosen)],
    "cascade": lambda chosen: [
        {"cascade_grid": g, "mu": mu, "ucb_c": c, "drift_threshold": chosen["splitee-cd"]["drift_threshold"]}
        for g in CASCADE_GRIDS
        for mu in MUS
        for c in UCB_CS
    ],
    "accuracy-budget": lambda chosen: [
        {"shadow_share": s, "drift_threshold": h} for s in SHADOW_SHARES for h in (5.0, 10.0, 20.0)
    ],
    "budget": lambda chosen: [
        {"budget_step": s, "budget_alpha": a} for s in (0.02, 0.05, 0.1) for a in (0.8, 0.9, 0.95)
    ],
}


@dataclass(frozen=True)
class Tuned:
    """What was chosen for one policy, and how the choice did on the validation stream."""

    choice: Choice
    validation: PolicyResult

    def describe(self) -> str:
        def show(value: Any) -> str:
            return "{" + ", ".join(f"{v:g}" for v in value) + "}" if isinstance(value, list) else f"{value:g}"

        shown = []
        for key, value in self.choice.items():
            if key != "budget_share":  # the user's, in the policy's name
                shown.append(f"{SYMBOLS.get(key, key)}={show(value[0] if key == 'thresholds' else value)}")
        return ", ".join(shown)


def _best(results: Sequence[PolicyResult], budget_share: float | None, drop_limit: float = DROP_LIMIT) -> int:
    indices = range(len(results))
    if budget_share is not None:
        kept = [i for i in indices if 1.0 - results[i].cost_reduction <= budget_share + BUDGET_SLACK]
        if not kept:
            return max(indices, key=lambda i: results[i].cost_reduction)
        return max(kept, key=lambda i: (results[i].accuracy, results[i].cost_reduction))
    within = [i for i in indices if results[i].drop_points <= drop_limit]
    if not within:
        return min(indices, key=lambda i: results[i].drop_points)
    return max(within, key=lambda i: (results[i].cost_reduction, -results[i].drop_points))


def tune_one(
    name: str,
    options: Sequence[Choice],
    setup: Setup,
    validation: ExitStream,
    chain: Chain,
    seeds: int,
    policy: str = "",
) -> Tuned:
    """Replay each of ``options`` over the validation stream; the one the rule picks."""
    final_accuracy = float((validation.predictions[:, -1] == validation.labels).mean())
    costs = setup.costs.model()
    final_cost = costs.final_layer(chain)
    results, worst = [], []
    for choice in options:
        traces, _ = replays(builder(name, chain, policy=policy), setup.with_params(**choice), validation, chain, seeds)
        results.append(summarize(name, "", traces, [""], final_accuracy, costs, final_cost))
        worst.append(replace(results[-1], drop_points=worst_phase_drop(traces, validation)))
    share = setup.params.model_copy(update=options[0]).budget_share if (policy or name) == "budget" else None
    if (policy or name) == "accuracy-budget":  # its budget holds in every phase: judged by the worst one
        best = _best(worst, None, setup.params.model_copy(update=options[0]).accuracy_points)
    else:
        best = _best(results, share)
    return Tuned(options[best], results[best])


def worst_phase_drop(traces: Sequence[Trace], stream: ExitStream) -> float:
    """The largest drop (points) against the final layer in any phase of ``stream``, averaged over the orders."""
    drops = []
    for p in np.unique(stream.phases):
        final = (stream.predictions[stream.phases == p, -1] == stream.labels[stream.phases == p]).mean()
        drops.append(100.0 * (final - np.mean([t.correct[stream.phases[t.order] == p].mean() for t in traces])))
    return float(max(drops))


def tune(setup: Setup, validation: ExitStream, chain: Chain, seeds: int, budgets: Sequence[float]) -> dict[str, Tuned]:
    """Every policy of :data:`CANDIDATES` tuned on ``validation``; a budget once per share in ``budgets``,
    keyed ``budget ≤ 40 %``."""
    chosen: dict[str, Choice] = {}
    tuned: dict[str, Tuned] = {}
    for name, candidates in CANDIDATES.items():
        if name == "budget":
            continue
        tuned[name] = tune_one(
            name, candidates(chosen), setup, validation, chain, 1 if name == "fixed-thresholds" else seeds
        )
        chosen[name] = tuned[name].choice
    for share in budgets:
        options = [{"budget_share": share, **choice} for choice in CANDIDATES["budget"](chosen)]
        tuned[budget_name(share)] = tune_one(budget_name(share), options, setup, validation, chain, seeds, "budget")
    return tuned


def budget_name(share: float) -> str:
    return f"budget ≤ {100 * share:g} %"
