"""The dynamic batcher on real onnxruntime segments: parity with unbatched runs, order, deadlines, give-ups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from lab.text_data import sentiment
from splitexit.policies.plan import Plan, TierThresholds
from splitexit.samples import LabelledImage
from splitexit.shared.batcher import Batcher
from splitexit.shared.deadlines import Deadline
from splitexit.shared.errors import DeadlineExceeded
from splitexit.shared.preprocess import decode_image
from splitexit.shared.runtime import HostedModel, LocalRun
from splitexit.shared.sample import Sample
from splitexit.shared.tokenizer import TextTokenizer


@pytest.fixture
def sizes() -> list[int]:
    return []


@pytest.fixture
def batcher(sizes: list[int]) -> Iterator[Batcher]:
    batcher = Batcher(
        workers=1, max_batch=32, max_wait_s=0.0, thread_name="test", on_batch=lambda _, n: sizes.append(n)
    )
    yield batcher
    batcher.close()


def jobs_for(model: HostedModel, inputs: list[np.ndarray], deadline_s: float = 30.0) -> list[Sample]:
    """A mix of exit rules and stop points, so samples of one batch leave it at different blocks."""
    last = model.manifest.num_blocks
    rules = [((0.9,) * last, last), ((1.0,) * last, 3), ((0.0,) * last, last), ((0.99,) * last, 4)]
    return [
        Sample(
            model=model,
            request_id=f"sample-{i}",
            start_block=1,
            x=x,
            plan=Plan(TierThresholds.name),
            top_k=0,
            received_at=time.perf_counter(),
            deadline=Deadline.after(deadline_s),
            thresholds=rules[i % len(rules)][0],
            stop_block=rules[i % len(rules)][1],
        )
        for i, x in enumerate(inputs)
    ]


def assert_same_run(batched: LocalRun, alone: LocalRun) -> None:
    assert (batched.exited, batched.last_block) == (alone.exited, alone.last_block)
    np.testing.assert_allclose(batched.exit_confidences, alone.exit_confidences, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.logits, alone.logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batched.activation, alone.activation, rtol=1e-4, atol=1e-4)
    assert batched.activation.shape[0] == 1


async def run_all(batcher: Batcher, jobs: list[Sample]) -> list[tuple[float, LocalRun]]:
    return await asyncio.gather(*(batcher.run(job) for job in jobs))


def test_images_run_together_answer_as_they_would_alone(
    batcher: Batcher, sizes: list[int], image_model: HostedModel, images: list[LabelledImage]
) -> None:
    inputs = [decode_image(image.png, image_model.manifest.input) for image in images[:40]]
    jobs = jobs_for(image_model, inputs)
    outcomes = asyncio.run(run_all(batcher, jobs))
    assert sizes == [32, 8]  # arrived together: as few batches as max_batch allows, in arrival order
    for job, (queue_s, run) in zip(jobs, outcomes, strict=True):
        assert queue_s >= 0
        assert_same_run(run, image_model.run(1, job.x, [job.thresholds], [job.stop_block])[0])


def test_texts_batch_only_with_texts_of_their_length(
    batcher: Batcher, sizes: list[int], text_model: HostedModel
) -> None:
    tokenizer = TextTokenizer.from_package(text_model.package_dir, text_model.manifest.input)  # type: ignore[arg-type]
    texts = [record.text for record in sentiment("imdb")[:60]]
    inputs = [tokenizer.encode_utf8(text.encode(), truncate=True) for text in texts]
    lengths = {x.shape[1] for x in inputs}
    jobs = jobs_for(text_model, inputs)
    outcomes = asyncio.run(run_all(batcher, jobs))
    assert len(sizes) == len(lengths) and sum(sizes) == len(jobs)
    for job, (_, run) in zip(jobs, outcomes, strict=True):
        assert_same_run(run, text_model.run(1, job.x, [job.thresholds], [job.stop_block])[0])


def test_a_sample_past_its_deadline_takes_no_compute_and_its_batch_goes_on(
    batcher: Batcher, image_model: HostedModel, images: list[LabelledImage]
) -> None:
    inputs = [decode_image(image.png, image_model.manifest.input) for image in images[:4]]
    jobs = jobs_for(image_model, inputs)
    jobs[1].deadline = Deadline.after(-0.001)  # passed while it waited

    async def go() -> list[tuple[float, LocalRun] | BaseException]:
        return await asyncio.gather(*(batcher.run(job) for job in jobs), return_exceptions=True)

    outcomes = asyncio.run(go())
    assert isinstance(outcomes[1], DeadlineExceeded) and "a worker was free" in outcomes[1].message
    assert all(isinstance(outcome, tuple) for i, outcome in enumerate(outcomes) if i != 1)


def test_a_caller_that_gives_up_is_dropped_before_its_batch_starts(
    batcher: Batcher, sizes: list[int], text_model: HostedModel
) -> None:
    long_text = np.full((1, 128), 2000, dtype=np.int64)
    busy = jobs_for(text_model, [long_text] * 32)  # one batch that keeps the only worker busy a while
    waiting = jobs_for(text_model, [long_text[:, :16]] * 3)

    async def go() -> None:
        first = asyncio.gather(*(batcher.run(job) for job in busy))
        await asyncio.sleep(0.001)  # the busy batch has started
        tasks = [asyncio.create_task(batcher.run(job)) for job in waiting]
        await asyncio.sleep(0)  # all three queued
        tasks[1].cancel()
        await first
        await asyncio.gather(tasks[0], tasks[2])

    asyncio.run(go())
    assert sizes == [32, 2]


def test_an_idle_tier_runs_cheap_batches_in_place_with_the_same_answers(
    image_model: HostedModel, images: list[LabelledImage]
) -> None:
    """One sample at a time, as a sequential client sends them: after the first, each runs on the event loop."""
    inputs = [decode_image(image.png, image_model.manifest.input) for image in images[:8]]
    jobs = jobs_for(image_model, inputs)
    batcher = Batcher(workers=1, max_batch=32, max_wait_s=0.0, thread_name="test", inline_s=1.0)

    async def one_by_one() -> list[tuple[float, LocalRun]]:
        return [await batcher.run(job) for job in jobs]

    try:
        outcomes = asyncio.run(one_by_one())
    finally:
        batcher.close()
    for job, (_, run) in zip(jobs, outcomes, strict=True):
        assert_same_run(run, image_model.run(1, job.x, [job.thresholds], [job.stop_block])[0])
