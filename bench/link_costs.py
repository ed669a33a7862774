"""A link that slows down becomes dearer, and the device's policy routes around it, then back.

The device runs with measured costs (``costs.measured``: a link costs what its
transfer time costs, an EWMA over answers) and the sliding-window SplitEE
(``splitee-sw``) as its default policy. Real test images go through three
phases on the namespace testbed: the device-edge link unshaped, throttled to
1 Mbit/s, unshaped again. Recorded per sample: the tier that answered; every
few samples: the device-edge link's cost in the policy's cost model. With a
slow link, offloading costs seconds' worth, so the bandit moves to the split
that exits most on the device, and back once the link is fast again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from splitexit.netns import NetnsTestbed
from splitexit.policy_show import fetch
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier

POLICY = "splitee-sw"
PHASES = (("link fast", "none", 300), ("link at 1 Mbit/s", "slow", 300), ("link fast again", "none", 400))
DEVICE_SETTINGS = {
    "costs": json.dumps({"measured": True, "per_ms": 0.01}),  # 1 ms of compute or network costs 0.01
    "policies": json.dumps({"fmnist-cnn": POLICY}),
    "policy": json.dumps({"window": 150}),
}
COST_EVERY = 10  # samples between reads of the policy's cost model
CONCURRENCY = 4


@dataclass
class LinkCostRun:
    phases: list[tuple[str, int, int]] = field(default_factory=list)  # name, first sample, end
    on_device: list[bool] = field(default_factory=list)  # per sample: answered by the device
    link_cost: list[tuple[int, float]] = field(default_factory=list)  # (sample, device-edge link cost)

    def device_share(self, phase: int, last: int) -> float:
        """Share of the phase's last ``last`` samples the device answered."""
        _, start, end = self.phases[phase]
        window = self.on_device[max(start, end - last) : end]
        return sum(window) / len(window)

    def cost_in(self, phase: int) -> float:
        """The device-edge link's cost at the end of the phase."""
        _, start, end = self.phases[phase]
        return [cost for sample, cost in self.link_cost if start <= sample < end][-1]


async def _phase(address: str, images: list[LabelledImage], count: int, run: LinkCostRun) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)
    first = len(run.on_device)
    run.on_device.extend([False] * count)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DeviceStub(channel)

        async def one(k: int) -> None:
            async with slots:
                request = pb.InferRequest(image=images[k % len(images)].png, timeout_s=30)
                answer = await stub.Infer(request, timeout=35)
                run.on_device[first + k] = answer.exit_tier == pb.TIER_NAME_DEVICE
                if k % COST_EVERY == 0:
                    state = await fetch(address, "fmnist-cnn", POLICY)
                    run.link_cost.append((first + k, state.costs["device.link"]))

        await asyncio.gather(*(one(k) for k in range(count)))


def run_link_cost_shift(bed: NetnsTestbed, images: list[LabelledImage]) -> LinkCostRun:
    """The three phases on ``bed`` (whose device has :data:`DEVICE_SETTINGS`)."""
    run = LinkCostRun()
    for name, profile, count in PHASES:
        bed.shape("device-edge", profile)
        start = len(run.on_device)
        asyncio.run(_phase(bed.device_address, images, count, run))
        run.phases.append((name, start, len(run.on_device)))
    bed.shape("device-edge", "none")
    return run


def link_cost_settings() -> dict[Tier, dict[str, str]]:
    return {Tier.DEVICE: dict(DEVICE_SETTINGS)}


def plot(run: LinkCostRun, path: Path) -> Path:
    """Device-exit share (rolling 50 samples) and the link's measured cost, by sample, phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    share = np.convolve(np.array(run.on_device, float), np.ones(50) / 50, mode="valid")
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    top.plot(np.arange(49, len(run.on_device)), share, color="tab:blue")
    top.set_ylabel("answered on the device\n(rolling 50 samples)")
    top.set_ylim(0, 1)
    samples, costs = zip(*run.link_cost, strict=True)
    bottom.semilogy(samples, costs, color="tab:red")
    bottom.set_ylabel("device→edge link cost\n(measured, policy's model)")
    bottom.set_xlabel("sample")
    for axis in (top, bottom):
        for k, (name, start, end) in enumerate(run.phases):
            if k % 2:
                axis.axvspan(start, end, color="0.9")
            if axis is top:
                axis.text((start + end) / 2, 0.93, name, ha="center", va="top")
    figure.suptitle(f"{POLICY} with measured costs: a slow link moves the split onto the device, and back")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
