"""``splitexit policy show``: what a running device's policy has learned, as a table."""

from __future__ import annotations

import math

from splitexit.client import AsyncClient
from splitexit.results import PolicyState
from splitexit.shared.proto.splitexit_views import Plan


async def fetch(address: str, model: str = "", policy: str = "", timeout_s: float = 5.0) -> PolicyState:
    """``Device.GetPolicyState`` of the device at ``address``."""
    async with AsyncClient(address, timeout_s=timeout_s) as client:
        return await client.policy_state(model, policy)


def describe_plan(plan: Plan | None) -> str:
    """``exit if C > α at 2 (0.9); device stops after 2``, say."""
    if plan is None:
        return "no plan"
    early = [f"{k} ({a:g})" for k, a in enumerate(plan.exit_thresholds, start=1) if a < 1.0]
    parts = [f"exit if C > α at {', '.join(early)}" if early else "no early exit"]
    if plan.device_last_block:
        parts.append(f"device stops after {plan.device_last_block}")
    if plan.edge_last_block:
        parts.append(f"edge stops after {plan.edge_last_block}")
    return "; ".join(parts)


def format_state(state: PolicyState) -> str:
    default = " (default)" if state.is_default else ""
    lines = [f"{state.model} / {state.policy}{default}: {state.samples} samples observed"]
    if state.costs:
        lines.append("costs: " + "  ".join(f"{key} {value:g}" for key, value in sorted(state.costs.items())))
    best = {(b.group, b.name) for b in state.best}
    if state.arms:
        lines.append(f"  {'group':<12} {'arm':<22} {'pulls':>9} {'mean reward':>12}")
        for arm in state.arms:
            mark = " *" if (arm.group, arm.name) in best else ""
            mean = "-" if math.isnan(arm.mean_reward) else f"{arm.mean_reward:.4f}"
            lines.append(f"  {arm.group:<12} {arm.name + mark:<22} {arm.pulls:>9.1f} {mean:>12}")
    for b in state.best:
        group = f"[{b.group}] " if b.group else ""
        lines.append(f"best {group}{b.name}: {describe_plan(b.plan)}")
    return "\n".join(lines)
