"""``splitexit loadgen``: real Fashion-MNIST test images, at a steady rate, to a running device.

It keeps the dashboards fed (``docker compose --profile loadgen up``). The
serving image carries no data set, so the images come from the small pack that
ships with the package (:mod:`splitexit.samples`).

Requests leave at ``rate`` per second whatever the answers do (an open loop,
as real clients behave), with at most ``concurrency`` in flight; beyond that
the generator waits, and says so in its reports. Every ``report_every_s``
seconds it prints what the client saw: answers, errors by status code, where
samples exited, accuracy and latency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

from splitexit.client import AsyncClient
from splitexit.report import Outcome, format_summary, summarize
from splitexit.results import ClientError
from splitexit.samples import LabelledImage


class Tally:
    """What the client saw since the last report."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.errors: Counter[str] = Counter()
        self.waits = 0  # requests that waited for a free slot

    def report(self, elapsed_s: float) -> str:
        answered = len(self.outcomes)
        head = f"{elapsed_s:.0f}s: {answered / elapsed_s:.1f} answers/s"
        if self.errors:
            head += ", errors " + ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items()))
        if self.waits:
            head += f", {self.waits} requests waited for a free slot (raise --concurrency or lower --rate)"
        return head if not answered else f"{head}\n{format_summary(summarize(self.outcomes))}"


async def generate(
    address: str,
    images: list[LabelledImage],
    rate: float,
    duration_s: float = 0.0,
    threshold: float | None = None,
    model: str = "",
    concurrency: int = 64,
    report_every_s: float = 10.0,
    client_options: dict[str, Any] | None = None,
) -> None:
    """Send ``images`` round-robin at ``rate`` per second for ``duration_s`` seconds (0: until cancelled).

    ``client_options`` go to :class:`AsyncClient` (``tls=``, ``token=``, ``timeout_s=``).
    """
    slots = asyncio.Semaphore(concurrency)
    tally, tally_started = Tally(), time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def send(client: AsyncClient, image: LabelledImage) -> None:
        try:
            started = time.perf_counter()
            answer = await client.infer(image.png, model=model, threshold=threshold)
            tally.outcomes.append(Outcome(image.label, answer.message, time.perf_counter() - started))
        except ClientError as exc:
            tally.errors[exc.code.name] += 1
        finally:
            slots.release()

    async with AsyncClient(address, **(client_options or {})) as client:
        started = time.monotonic()
        for count, image in enumerate(itertools.cycle(images)):
            due = started + count / rate
            if duration_s and due - started >= duration_s:
                break
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            if slots.locked():
                tally.waits += 1
            await slots.acquire()
            task = asyncio.create_task(send(client, image))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if time.monotonic() - tally_started >= report_every_s:
                print(tally.report(time.monotonic() - tally_started), flush=True)
                tally, tally_started = Tally(), time.monotonic()
        await asyncio.gather(*tasks)
    print(tally.report(max(time.monotonic() - tally_started, 1e-3)), flush=True)
