"""One tier's work on one sample, whatever the tier.

:meth:`TierNode.process` resumes a sample at a block, runs the hosted blocks on
a worker thread while the policy watches the exits, and then either answers
(the policy said exit, or this tier holds the final block) or encodes the
activation and sends it over the link to the next tier. On the way back it
puts its own :class:`Hop` in front of the answer. (Pricing the route is the
device's job: it holds the one cost model.)

A sample whose deadline passed while it waited for a worker is dropped before
compute. When the next tier cannot be reached, is overloaded or cannot answer
within what the deadline leaves (a :class:`~splitexit.shared.errors.LinkFailure`),
the tier answers from the deepest exit it ran, flagged ``degraded`` with the
reason, unless the request forbids it; a tier that ran no block (it only relayed
the sample) passes the failure back, and the tier before answers degraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from splitexit.policies.plan import check_thresholds
from splitexit.shared.admission import InFlightLimit
from splitexit.shared.batcher import Batcher
from splitexit.shared.deadlines import ANSWER_RESERVE_S
from splitexit.shared.errors import LinkFailure, NextTierTooSlow, ServingError
from splitexit.shared.lifecycle import Drain
from splitexit.shared.link import Link
from splitexit.shared.link_pool import open_link
from splitexit.shared.metrics import HopPass, TierMetrics
from splitexit.shared.pipeline import Pipeline
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel, LocalRun, ModelRegistry
from splitexit.shared.sample import Sample
from splitexit.shared.security import link_dialer
from splitexit.shared.settings import TierSettings, tier_env_prefix
from splitexit.shared.tensors import check_shape, encode

log = logging.getLogger(__name__)
DEFAULT_TOP_K = 5
Outcome = pb.InferResponse | BaseException  # a sample's answer, or the error it is answered with
Going = tuple[int, Sample, LocalRun, pb.StageTimings]  # a sample to send on: its index, its run here, its timings


class TierNode:
    """A tier's models, thresholds, admission limit and link to the next tier."""

    def __init__(self, settings: TierSettings, registry: ModelRegistry, link: Link | None) -> None:
        self.tier = settings.tier
        self.settings = settings
        self.registry = registry
        self.link = link
        self._thresholds = {model.name: self._configured_thresholds(model) for model in registry}
        self.model_hooks: list[Callable[[HostedModel], None]] = []  # told of a package before it goes into service
        self._poller: asyncio.Task[None] | None = None
        self.metrics = TierMetrics(self.tier, [model.name for model in registry])
        self.batcher = Batcher(
            workers=settings.compute_threads,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_batch_wait_us / 1e6,
            thread_name=f"{self.tier.value}-onnx",
            on_batch=self.metrics.observe_batch,
            inline_s=settings.inline_compute_us / 1e6,
        )
        self.admission = InFlightLimit(
            settings.max_in_flight, f"the {self.tier.value}", f"{tier_env_prefix(self.tier)}MAX_IN_FLIGHT"
        )
        self.drain = Drain()
        self.pipeline = Pipeline(
            metrics=self.metrics,
            admission=self.admission,
            where=self.tier.value,
            default_timeout_s=settings.default_timeout_s,
        )

    @classmethod
    def from_settings(cls, settings: TierSettings) -> TierNode:
        """Load the hosted segments of every model and open the link to the next tier."""
        registry = ModelRegistry.load(
            settings.models_dir, settings.tier, settings.hosted, settings.onnx_threads, settings.package_public_key
        )
        link = None
        if settings.next_tier:
            link = open_link(
                settings.next_tier,
                settings.max_message_bytes,
                link_dialer(settings),
                columns=settings.link_columns,
                connections=settings.link_connections,
            )
        return cls(settings, registry, link)

    def start(self) -> None:
        """Start watching the next tier, and ``models_dir`` every ``model_poll_s`` (needs the running event loop)."""
        if self.link is not None:
            self.link.start()
        if self.settings.model_poll_s > 0:
            self._poller = asyncio.create_task(self._poll_models(self.settings.model_poll_s))

    async def _poll_models(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload_models()
            except Exception:  # a look that fails (the folder vanished, say) is logged and tried again
                log.exception("the %s could not look for new packages in %s", self.tier.value, self.settings.models_dir)

    async def reload_models(self) -> None:
        """Serve every package in ``models_dir`` that is new or changed, once it checks out; log each one refused.

        A package is verified (integrity, signature, manifest), its hosted segments
        loaded and checked against this tier's settings before it replaces the model
        of its name; a broken one is refused and the old model, if any, keeps serving.
        Requests already running keep the model they started on.
        """
        for package_dir, loaded in await asyncio.to_thread(self.registry.load_changed):
            try:
                if isinstance(loaded, Exception):
                    raise loaded
                thresholds = self._configured_thresholds(loaded)
                for hook in self.model_hooks:
                    hook(loaded)
            except Exception as exc:  # a package is refused whatever is wrong with it; the tier serves on
                log.warning(
                    "the %s refuses the package %s: %s; it serves on as before", self.tier.value, package_dir, exc
                )
                continue
            self._thresholds[loaded.name] = thresholds
            self.metrics.serve_model(loaded.name)
            replaced = self.registry.install(loaded)
            verb = "now serves" if replaced is None else "replaced, now serves"
            version = loaded.manifest.version
            log.info("the %s %s %s version %s from %s", self.tier.value, verb, loaded.name, version, package_dir)

    def _configured_thresholds(self, model: HostedModel) -> tuple[float, ...]:
        """The model's α per exit; :class:`ValueError` if the settings do not fit it, or a last tier cannot finish
        it."""
        if self.settings.next_tier is None and model.hosted.last != model.manifest.num_blocks:
            raise ValueError(
                f"the {self.tier.value} has no next tier, so it must host {model.name} "
                f"through its final block {model.manifest.num_blocks}, not {model.hosted}"
            )
        exits = model.manifest.num_blocks
        thresholds = self.settings.exit_thresholds.get(model.name, [self.settings.exit_threshold] * exits)
        if len(thresholds) != exits:
            raise ValueError(f"exit_thresholds for {model.name} needs {exits} values, got {len(thresholds)}")
        check_thresholds(thresholds)
        return tuple(thresholds)

    async def process(self, sample: Sample) -> pb.InferResponse:
        """Run this tier's part of ``sample`` and return the whole answer: :meth:`process_many` for a lone sample
        (a unary call, a stream's message), in this task and without chunks."""
        self._prepare(sample)
        queue_s, run = await self.batcher.run(sample)
        timings = _timings(sample, queue_s, run)
        if run.exited:
            answer, hop_pass = self._with_hop(sample, run, timings, self._answer(sample, run), 0)
        else:
            async with contextlib.aclosing(self._sent_on([(0, sample, run, timings)])) as chunks:
                [(_, outcome, passed)] = await anext(chunks)
            if isinstance(outcome, BaseException):
                raise outcome
            assert passed is not None, "an answer comes with its hop"
            answer, hop_pass = outcome, passed
        self._observe([sample], [hop_pass])
        return answer

    async def process_many(self, samples: Sequence[Sample]) -> AsyncIterator[list[tuple[int, Outcome]]]:
        """Run this tier's part of every sample (all of one model), together: (index, answer or error) of each,
        in chunks as they are ready.

        Their blocks run in shared batches. The first chunk holds the samples that exit here
        and those that failed; then come the ones sent on, as the next tier answers them.
        Hops are counted in metrics per chunk.
        """
        ready: list[tuple[int, Outcome]] = []
        queued: list[int] = []
        for i, sample in enumerate(samples):
            try:
                self._prepare(sample)
                queued.append(i)
            except ServingError as error:
                ready.append((i, error))
        runs = await self.batcher.run_many([samples[i] for i in queued])
        passes: list[HopPass] = []
        going_on: list[Going] = []
        for i, ran in zip(queued, runs):
            if isinstance(ran, BaseException):
                ready.append((i, ran))
                continue
            queue_s, run = ran
            sample = samples[i]
            timings = _timings(sample, queue_s, run)
            if run.exited:
                answer, hop_pass = self._with_hop(sample, run, timings, self._answer(sample, run), 0)
                ready.append((i, answer))
                passes.append(hop_pass)
            else:
                going_on.append((i, sample, run, timings))
        # The samples going on leave when the next chunk is asked for, which the callers do at once.
        async with contextlib.aclosing(self._sent_on(going_on)) as chunks:
            if ready:
                self._observe(samples, passes)
                yield ready
            async for chunk in chunks:
                self._observe(samples, [hop_pass for _, _, hop_pass in chunk if hop_pass is not None])
                yield [(i, outcome) for i, outcome, _ in chunk]

    async def process_each(
        self, prepared: Sequence[Sample | BaseException]
    ) -> AsyncIterator[list[tuple[int, Outcome]]]:
        """:meth:`process_many` for a group some of whose requests failed before they became samples: those
        errors first, under their index, then the samples' outcomes."""
        failed = [(i, error) for i, error in enumerate(prepared) if isinstance(error, BaseException)]
        if failed:
            yield failed
        index = [i for i, sample in enumerate(prepared) if isinstance(sample, Sample)]
        if not index:
            return
        async with contextlib.aclosing(self.process_many([prepared[i] for i in index])) as chunks:
            async for chunk in chunks:
                yield [(index[j], outcome) for j, outcome in chunk]

    def _prepare(self, sample: Sample) -> None:
        """Check ``sample`` and set this tier's exit rule for it; :class:`ServingError` if it cannot run here."""
        model = sample.model
        model.check_resumable(sample.start_block)
        what = f"the input to block {sample.start_block}"
        check_shape(sample.x.shape, sample.x.dtype, model.manifest.block(sample.start_block).input, what)
        sample.thresholds = sample.plan.thresholds or self._thresholds[model.name]
        sample.stop_block = sample.plan.stop_block(self.tier, model.hosted)
        sample.deadline.check(f"the {self.tier.value} could start on it")

    async def _sent_on(self, going: Sequence[Going]) -> AsyncIterator[list[tuple[int, Outcome, HopPass | None]]]:
        """Send every sample of ``going`` on in one link call and yield (index, answer or error, hop) of each as
        the next tier answers; a sample the next tier cannot answer gets this tier's own answer, degraded, where
        it may. A sample whose deadline leaves no time to pass it on is not sent."""
        if not going:
            return
        assert self.link is not None, f"the {self.tier.value} passes samples on but has no next tier"
        requests, budgets, sending, too_late = [], [], [], []
        for entry in going:
            _, sample, run, timings = entry
            encode_started = time.perf_counter()
            request = self._continue_request(sample, run)
            timings.codec_s += time.perf_counter() - encode_started
            budget = sample.deadline.remaining() - ANSWER_RESERVE_S  # the next tier's whole budget; the rest is ours
            if budget <= 0:
                failure = NextTierTooSlow("the request's deadline leaves no time to pass it on to the next tier")
                too_late.append(self._settled(entry, failure, 0, 0.0))
                continue
            request.timeout_s = budget
            requests.append(request)
            budgets.append(budget)
            sending.append(entry)
        if too_late:
            yield too_late
        if not requests:
            return
        sizes = [request.ByteSize() for request in requests]
        sent = time.perf_counter()
        async with contextlib.aclosing(self.link.call_many(requests, budgets)) as chunks:
            async for chunk in chunks:
                yield [self._settled(sending[j], outcome, sizes[j], sent) for j, outcome in chunk]

    def _continue_request(self, sample: Sample, run: LocalRun) -> pb.ContinueRequest:
        """The request that resumes ``sample`` on the next tier after the blocks of ``run`` (its timeout unset)."""
        return pb.ContinueRequest(
            model=sample.model.name,
            request_id=sample.request_id,
            next_block=run.last_block + 1,
            activation=encode(run.activation, self.settings.codec),
            policy=sample.plan.to_proto(),
            top_k=sample.top_k,
            forbid_degraded=not sample.allow_degraded,
        )

    def _settled(
        self, going: Going, outcome: Outcome, bytes_sent: int, sent: float
    ) -> tuple[int, Outcome, HopPass | None]:
        """A sample sent on, once its outcome is known: the next tier's answer behind this tier's hop; this tier's
        own answer, degraded, if the link failed it and it may be; or its error."""
        index, sample, run, timings = going
        if isinstance(outcome, pb.InferResponse):
            downstream_s = outcome.hops[0].timings.total_s if outcome.hops else 0.0
            timings.network_s = max(time.perf_counter() - sent - downstream_s, 0.0)
            return index, *self._with_hop(sample, run, timings, outcome, bytes_sent)
        if not isinstance(outcome, LinkFailure) or not sample.allow_degraded or run.last_block < sample.start_block:
            return index, outcome, None  # not the link's failure, or forbidden, or it ran no block here
        answer = self._answer(sample, run)
        answer.degraded = True
        answer.degradation.CopyFrom(
            pb.Degradation(reason=outcome.reason, tier=self.tier.proto, message=outcome.message)
        )
        self.metrics.observe_degraded(sample.model.name, outcome.reason)
        return index, *self._with_hop(sample, run, timings, answer, 0)

    def _with_hop(
        self,
        sample: Sample,
        run: LocalRun,
        timings: pb.StageTimings,
        answer: pb.InferResponse,
        bytes_sent: int,
    ) -> tuple[pb.InferResponse, HopPass]:
        """``answer`` with this tier's hop in front of the hops after it, and the hop as metrics count it."""
        timings.total_s = time.perf_counter() - sample.received_at
        downstream = list(answer.hops)  # the next tiers' hops (none if the sample exits here)
        if downstream:
            del answer.hops[:]
        hop = answer.hops.add(
            tier=self.tier.proto,
            first_block=sample.start_block,
            last_block=run.last_block,
            timings=timings,
            bytes_sent=bytes_sent,
            exit_confidences=run.exit_confidences,
            exit_labels=run.exit_labels,
        )
        if downstream:
            answer.hops.extend(downstream)
        return answer, (hop, sample.thresholds, answer if answer.exit_tier == self.tier.proto else None)

    def _observe(self, samples: Sequence[Sample], passes: list[HopPass]) -> None:
        if passes:
            self.metrics.observe_hops(samples[0].model.name, passes)

    def _answer(self, sample: Sample, run: LocalRun) -> pb.InferResponse:
        """The answer of the exit where ``run`` stopped (its cost is the device's to add)."""
        labels = sample.model.manifest.labels
        probabilities = run.probabilities
        k = min(sample.top_k or DEFAULT_TOP_K, len(labels))
        ranked = run.ranked[:k]
        best = probabilities[ranked].tolist()
        ranked_labels = ranked.tolist()
        label = ranked_labels[0]
        answer = pb.InferResponse(
            request_id=sample.request_id,
            model=sample.model.name,
            label=label,
            label_name=labels[label],
            confidence=best[0],
            logits=run.logits.tolist(),
            exit_tier=self.tier.proto,
            exit_block=run.last_block,
            policy=sample.plan.policy,
        )
        add = answer.top_k.add  # in place: a list of ClassProbability would be built, then copied
        for i, p in zip(ranked_labels, best):
            add(label=i, label_name=labels[i], probability=p)
        return answer

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.link is not None:
            await self.link.close()
        self.batcher.close()


def _timings(sample: Sample, queue_s: float, run: LocalRun) -> pb.StageTimings:
    """The stages of ``sample`` known once its blocks ran here (the network's and the total come later)."""
    return pb.StageTimings(queue_s=queue_s, decode_s=sample.decode_s, compute_s=run.compute_s, codec_s=sample.codec_s)
