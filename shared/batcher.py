"""Dynamic batching: samples that resume at the same block run as one batch.

A tier hands every :class:`~splitexit.shared.sample.Sample` to :meth:`Batcher.run`. Samples wait in a queue per
*batch key* (model, first block, per-sample input shape: texts of different
lengths never share a batch, so a batched answer equals the unbatched one; nor
do samples of a package and of the one replacing it)
until a compute worker is free (and at least until the event loop has taken
in every sample that arrived with them); the worker then takes up to ``max_batch``
samples of the key whose head waited longest and runs them with one session
call per block (:meth:`~splitexit.shared.runtime.HostedModel.run`).

So batches form by themselves under load, from the samples that arrived while
the workers were busy, and cost nothing when the tier is idle (a lone sample
runs at once, as a batch of one). ``max_wait_s`` > 0 additionally holds a
partial batch back for up to that long, waiting for company, as Triton's
``max_queue_delay_microseconds`` does: worth it only where arrivals are dense.

A tier with nothing else to do runs a batch it expects (from the compute times
it measured for that key) to take at most ``inline_s`` on the event loop itself:
a thread hop costs ~100 µs, more than a small CNN block; under load, batches go
to the threads.

Deadlines hold inside the queue: a sample whose deadline passes while it waits
is answered DEADLINE_EXCEEDED when its batch starts and takes no compute; one
whose caller gave up is dropped. Every sample gets its own answer, whatever its
place in the batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from splitexit.shared.errors import ServingError
from splitexit.shared.runtime import LocalRun
from splitexit.shared.sample import BatchKey, Sample


class Batcher:
    """Queues of samples per batch key, served by ``workers`` compute threads."""

    def __init__(
        self,
        *,
        workers: int,
        max_batch: int,
        max_wait_s: float,
        thread_name: str,
        on_batch: Callable[[str, int], None] = lambda model, size: None,
        inline_s: float = 0.0,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.inline_s = inline_s  # a batch expected to compute within this runs on the event loop
        self.on_batch = on_batch  # told the model and size of every batch started
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=thread_name)
        self._workers = self._idle_workers = workers
        self._queues: dict[BatchKey, deque[Sample]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._dispatch_due = False
        self._per_sample_s: dict[BatchKey, float] = {}  # moving average of compute seconds per sample

    async def run(self, sample: Sample) -> tuple[float, LocalRun]:
        """Run ``sample`` in the next batch of its key: the seconds it waited, and what its blocks gave."""
        self._queue([sample])
        return await sample.outcome

    async def run_many(self, samples: Sequence[Sample]) -> list[tuple[float, LocalRun] | BaseException]:
        """Run ``samples``, queued together (those of one key share batches): each one's outcome or error, in
        order."""
        self._queue(samples)
        return await asyncio.gather(*(sample.outcome for sample in samples), return_exceptions=True)

    def _queue(self, samples: Sequence[Sample]) -> None:
        loop = asyncio.get_running_loop()
        queued_at = time.perf_counter()
        for sample in samples:
            sample.queued_at = queued_at
            sample.outcome = loop.create_future()
            self._queues.setdefault(sample.key, deque()).append(sample)
        if not self._dispatch_due:  # after the samples that arrived with these (one link message) have queued
            self._dispatch_due = True
            loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Start batches while workers are free and some queue is ready to go."""
        self._dispatch_due = False
        loop = asyncio.get_running_loop()
        while self._idle_workers and self._queues:
            key, queue = min(self._queues.items(), key=lambda item: item[1][0].queued_at)
            hold_until = queue[0].queued_at + self.max_wait_s
            if len(queue) < self.max_batch and time.perf_counter() < hold_until:
                self._wake_at(loop, hold_until)
                return
            batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
            if not queue:
                del self._queues[key]
            batch = [sample for sample in batch if not sample.outcome.done()]  # callers that gave up
            if not batch:
                continue
            self.on_batch(key[0], len(batch))
            if self._cheap(key, len(batch)):
                self._settle(key, batch, _run_batch(batch))  # cheaper here than a thread hop (~100 µs)
                continue
            self._idle_workers -= 1
            done = loop.run_in_executor(self._executor, _run_batch, batch)
            done.add_done_callback(lambda finished, key=key, batch=batch: self._finish(key, batch, finished))

    def _cheap(self, key: BatchKey, size: int) -> bool:
        """Whether the tier is idle otherwise and a batch of ``size`` is expected to compute within ``inline_s``."""
        per_sample = self._per_sample_s.get(key)
        idle = self._idle_workers == self._workers and not self._queues  # under load, batches and threads win
        return idle and per_sample is not None and per_sample * size <= self.inline_s

    def _wake_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(max(when - time.perf_counter(), 0.0), self._dispatch)

    def _finish(
        self, key: BatchKey, batch: list[Sample], finished: asyncio.Future[list[tuple[float, LocalRun] | ServingError]]
    ) -> None:
        self._idle_workers += 1
        if finished.cancelled():  # the batcher was closed
            return
        error = finished.exception()
        self._settle(key, batch, [error] * len(batch) if error is not None else finished.result())
        self._dispatch()

    def _settle(
        self, key: BatchKey, batch: list[Sample], outcomes: list[tuple[float, LocalRun] | BaseException]
    ) -> None:
        """Give every sample its outcome, and learn what a sample of ``key`` costs to compute."""
        runs = [outcome[1] for outcome in outcomes if isinstance(outcome, tuple)]
        if runs:
            per_sample = runs[0].compute_s / len(runs)
            known = self._per_sample_s.get(key, per_sample)
            self._per_sample_s[key] = 0.8 * known + 0.2 * per_sample
        for sample, outcome in zip(batch, outcomes):
            if sample.outcome.done():
                continue
            if isinstance(outcome, BaseException):
                sample.outcome.set_exception(outcome)
            else:
                sample.outcome.set_result(outcome)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _run_batch(batch: list[Sample]) -> list[tuple[float, LocalRun] | ServingError]:
    """Runs on a compute thread (or inline): the batch's live samples as one, each sample's own outcome in batch
    order."""
    started = time.perf_counter()
    late: list[ServingError | None] = []
    for sample in batch:
        try:
            sample.deadline.check("a worker was free to run it")
            late.append(None)
        except ServingError as error:
            late.append(error)
    live = [sample for sample, error in zip(batch, late) if error is None]
    runs = iter(_run_together(live) if live else [])
    return [error or (started - sample.queued_at, next(runs)) for sample, error in zip(batch, late)]


def _run_together(samples: list[Sample]) -> list[LocalRun]:
    """One batch of samples with the same key, stacked on the batch axis."""
    first = samples[0]
    x = first.x if len(samples) == 1 else np.concatenate([sample.x for sample in samples])
    return first.model.run(
        first.start_block, x, [sample.thresholds for sample in samples], [sample.stop_block for sample in samples]
    )
