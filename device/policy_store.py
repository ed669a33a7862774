"""The device's policies and what they learned: every policy for every model, its state on disk and as a message.

For each model the device serves, :class:`PolicyStore` builds every policy of
:data:`splitexit.policies.catalog.POLICY_NAMES` with the device's ``policy``
hyperparameters, over the model's chain, sharing the model's one
:class:`~splitexit.policies.costs.CostModel` (the device's ``costs``), which is
refreshed from answers when ``costs.measured`` is on. The same cost model
prices every answer (:meth:`PolicyStore.settle`). A request picks a policy by
``Plan.name``, or gets its model's default (``policies``); naming
``budget@<share>`` states its own cost budget, ``accuracy@<points>`` its own
accuracy budget, and the device keeps one such policy per budget stated (at
most :data:`MAX_BUDGETS` of each kind per model).

Learned state survives a restart: every ``state_save_every`` samples and at
shutdown, each learning policy is written to ``<state_dir>/<model>/<policy>.json``
(a temporary file, then ``os.replace``, so a crash never leaves half a file),
and read back at start. The file carries a fingerprint of the model's segments
and the hyperparameters; state learned with other ones is set aside and the
policy starts afresh.

For metrics, the object is a read-only mapping ``"<model>/<policy>" -> policy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from splitexit.device.settings import DeviceSettings
from splitexit.policies.accuracy import ACCURACY_PREFIX, accuracy_points
from splitexit.policies.budget import BUDGET_PREFIX, CostBudget, budget_share
from splitexit.policies.catalog import POLICY_NAMES, LearningPolicy, PolicyParams, accuracy_budget, make_policy
from splitexit.policies.chain import Chain, answer_route, observed_confidences, observed_labels
from splitexit.policies.costs import CostModel, MeasuredCosts
from splitexit.policies.plan import Plan, Policy, TierThresholds, show
from splitexit.shared.errors import InvalidInput, Overloaded
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import Tier

log = logging.getLogger(__name__)
MAX_BUDGETS = 16  # budget@<share> policies per model, and as many accuracy@<points>
STATED = (BUDGET_PREFIX, ACCURACY_PREFIX)  # the policies a request states a budget of its own with
STATED_FORMS = ("budget@<share>", "accuracy@<points>")


class PolicyStore(Mapping[str, Policy]):
    """Every policy of every model, the cost model each model's policies share, and their saved state."""

    def __init__(self, settings: DeviceSettings, models: Iterable[HostedModel]) -> None:
        self.params = settings.policy
        self.state_dir = settings.state_dir
        self.save_every = settings.state_save_every
        self.defaults: dict[str, str] = {}
        self.costs: dict[str, CostModel] = {}
        self._policies: dict[str, dict[str, Policy]] = {}
        self._measured: dict[str, MeasuredCosts] = {}
        self._fingerprints: dict[str, str] = {}
        self._chains: dict[str, Chain] = {}
        self._settings = settings
        for model in models:
            self.add(model)
        unknown = set(settings.policies) - set(self._policies)
        if unknown:
            raise ValueError(f"policies name models this device does not serve: {sorted(unknown)}")

    def add(self, model: HostedModel) -> None:
        """Every policy for ``model`` (restored from its saved state where that fits), replacing any it had."""
        settings = self._settings
        default = settings.policies.get(model.name, TierThresholds.name)
        if default not in POLICY_NAMES:
            raise ValueError(
                f"policies: {model.name} -> {default!r} is no policy; choose from {', '.join(POLICY_NAMES)}"
            )
        self.defaults[model.name] = default
        self._fingerprints[model.name] = _fingerprint(model, self.params, settings)
        self._chains[model.name] = model.chain
        costs = self.costs[model.name] = settings.costs.model()
        measured = settings.costs.measurement(costs)
        if measured is not None:
            self._measured[model.name] = measured
        self._policies[model.name] = {
            name: self._restored(model.name, partial(make_policy, name, self.params, model.chain, costs))
            for name in POLICY_NAMES
        }

    def get(self, model: str, name: str = "") -> Policy:
        """``name`` of ``model``'s policies, or its default; raises :class:`InvalidInput`."""
        policies = self._policies[model]
        name = name or self.defaults[model]
        if name not in policies and name.startswith(STATED):
            return self._stated(model, name)
        if name not in policies:
            raise InvalidInput(
                f"no policy named {name!r}; this device offers {', '.join(policies)}, {', '.join(STATED_FORMS)}"
            )
        return policies[name]

    def _stated(self, model: str, name: str) -> Policy:
        """The ``budget@<share>`` or ``accuracy@<points>`` policy of ``model``, made (or restored) when first stated."""
        prefix = next(prefix for prefix in STATED if name.startswith(prefix))
        try:
            value = budget_share(name) if prefix == BUDGET_PREFIX else accuracy_points(name)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        policies = self._policies[model]
        canonical = f"{prefix}{value:g}"
        if canonical not in policies:
            if sum(name.startswith(prefix) for name in policies) >= MAX_BUDGETS:
                form = STATED_FORMS[STATED.index(prefix)]
                raise Overloaded(f"{model} already keeps {MAX_BUDGETS} stated budgets ({form}); state one of those")
            chain, costs, p = self._chains[model], self.costs[model], self.params
            build: Callable[[], Policy] = (
                partial(CostBudget, canonical, chain, costs, share=value, step=p.budget_step, alpha=p.budget_alpha)
                if prefix == BUDGET_PREFIX
                else partial(accuracy_budget, canonical, p, chain, value)
            )
            policies[canonical] = self._restored(model, build)
        return policies[canonical]

    def settle(self, model: HostedModel, policy: Policy | None, plan: Plan, answer: pb.InferResponse) -> None:
        """Price the answer's route; show the policy (None: a client's own plan) what the sample revealed;
        refresh measured costs; save the policy's state now and then."""
        costs = self.costs[model.name]
        answer.cost = costs.cost(answer_route(answer))
        answer.cost_final_layer = costs.final_layer(model.chain)
        if policy is not None and not answer.degraded:  # a degraded route is not what the plan chose
            show(policy, plan, observed_confidences(answer), partial(observed_labels, answer))
        measured = self._measured.get(model.name)
        if measured is not None:
            measured.update(answer)
        learned = getattr(policy, "samples", 0)  # a LearningPolicy's count (a Protocol isinstance costs ~10 µs)
        if learned and learned % self.save_every == 0:
            self.save(model.name, policy)  # type: ignore[arg-type]

    def state(self, model: str, name: str = "") -> dict[str, Any]:
        """What ``name`` (or the default) has learned: its ``state()``, plus its model and whether it is the default."""
        policy = self.get(model, name)
        state = policy.state() if isinstance(policy, LearningPolicy) else {"policy": policy.name}
        measured = self._measured.get(model)
        extra = {"measured": measured.as_dict()} if measured is not None else {}
        return {**state, **extra, "model": model, "is_default": policy.name == self.defaults[model]}

    def message(self, model: str, name: str = "") -> pb.PolicyState:
        """:meth:`state` as the ``PolicyState`` message of ``Device.GetPolicyState``."""
        policy = self.get(model, name)
        state = self.state(model, name)
        reply = pb.PolicyState(
            model=model,
            policy=policy.name,
            is_default=state["is_default"],
            samples=state.get("samples", 0),
            costs=state.get("costs", {}),
            state_json=json.dumps(policy.to_dict() if isinstance(policy, LearningPolicy) else {}),
        )
        for group in state.get("groups", []):
            for arm, pulls, mean in zip(state["arms"], group["pulls"], group["mean_reward"], strict=True):
                reply.arms.add(group=group["name"], name=arm, pulls=pulls, mean_reward=mean)
            if group["best_arm"] >= 0:
                plan = Plan(
                    policy.name,
                    tuple(group["thresholds"]),
                    {Tier.DEVICE: group["device_last_block"], Tier.EDGE: group["edge_last_block"]},
                )
                reply.best.add(group=group["name"], name=group["best_label"], plan=plan.to_proto())
        if "pulls" in state and "groups" not in state:  # random-split: pulls, no means
            for arm, pulls in zip(state["arms"], state["pulls"], strict=True):
                reply.arms.add(name=arm, pulls=pulls, mean_reward=math.nan)
        if "thresholds" in state and "groups" not in state:  # a fixed plan
            reply.best.add(name=policy.name, plan=Plan(policy.name, tuple(state["thresholds"])).to_proto())
        return reply

    def path(self, model: str, name: str) -> Path:
        return self.state_dir / model / f"{name}.json"

    def save(self, model: str, policy: LearningPolicy) -> None:
        """Write the policy's state atomically: a temporary file, then ``os.replace``."""
        path = self.path(model, policy.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        document = {"fingerprint": self._fingerprints[model], "state": policy.to_dict()}
        temporary.write_text(json.dumps(document))
        os.replace(temporary, path)

    def save_all(self) -> None:
        for model, policies in self._policies.items():
            for policy in policies.values():
                if isinstance(policy, LearningPolicy) and policy.samples:
                    self.save(model, policy)

    def _restored(self, model: str, build: Callable[[], Policy]) -> Policy:
        """A policy from ``build()`` with its saved state loaded, if there is usable state; else fresh."""
        policy = build()
        path = self.path(model, policy.name)
        if not isinstance(policy, LearningPolicy) or not path.is_file():
            return policy
        try:
            document = json.loads(path.read_text())
            if document["fingerprint"] != self._fingerprints[model]:
                raise ValueError("it was learned with another model version or other hyperparameters")
            policy.load_dict(document["state"])
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            log.warning("%s: not restoring %s (%s); the policy starts afresh", path, policy.name, exc)
            return build()
        log.info("%s/%s restored from %s after %d samples", model, policy.name, path, policy.samples)
        return policy

    # Mapping "<model>/<policy>" -> policy, for the metrics collector.
    def __getitem__(self, key: str) -> Policy:
        model, _, name = key.partition("/")
        return self._policies[model][name]

    def __iter__(self) -> Iterator[str]:
        # a snapshot: a request may add a budget@<share> or accuracy@<points> policy while the metrics collector
        # iterates
        return iter([f"{model}/{name}" for model, policies in list(self._policies.items()) for name in list(policies)])

    def __len__(self) -> int:
        return sum(len(policies) for policies in self._policies.values())


def _fingerprint(model: HostedModel, params: PolicyParams, settings: DeviceSettings) -> str:
    """Changes when the model's segments, its chain, the policies' hyperparameters or the costs change."""
    chain = {tier.value: str(hosted) for tier, hosted in model.chain.hosted.items()}
    document = json.dumps(
        [
            [b.sha256 for b in model.manifest.blocks],
            chain,
            params.model_dump(mode="json"),
            settings.costs.model_dump(mode="json"),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(document.encode()).hexdigest()[:16]
