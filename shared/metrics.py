"""Prometheus metrics of one tier, served on its own ``/metrics`` port.

Every tier process owns one :class:`TierMetrics` (on its :class:`TierNode`),
with its own :class:`CollectorRegistry` rather than prometheus_client's global
one, so that tests can build nodes side by side. Names follow Prometheus
conventions: base units (seconds, bytes), ``_total`` on counters, and labels
whose values come from small fixed sets -- never from a request id, and a
model name only if the tier serves that model (anything else is ``unknown``).

=========================================  =========  ==========================================
metric                                     type       labels (besides ``tier``)
=========================================  =========  ==========================================
splitexit_requests_total                   counter    model, method, code (gRPC status name)
splitexit_requests_in_flight               gauge      method
splitexit_request_duration_seconds         histogram  model, method: receipt to answer
splitexit_batch_size                       histogram  model: samples per batch the tier ran
splitexit_stage_duration_seconds           histogram  model, stage: queue, decode, compute, codec,
                                                      network (only stages that took place)
splitexit_exits_total                      counter    model, exit (1-based block): samples answered here
splitexit_exit_confidence                  histogram  model: top probability of those answers
splitexit_exit_threshold                   gauge      model, exit: α applied at the last sample there
splitexit_degraded_total                   counter    model, reason: answers this tier gave from an earlier exit
                                                      because the next tier could not be used
splitexit_next_tier_up                     gauge      1 while the next tier reports SERVING (edge, device)
splitexit_offloads_total                   counter    model, link (``device-edge``, ``edge-cloud``)
splitexit_offload_bytes_total              counter    model, link: ContinueRequest bytes sent
splitexit_plans_total                      counter    model, policy, device_last_block, edge_last_block
                                                      (device; 0 = the end of the tier's hosted range)
splitexit_cost_total                       counter    model, policy, exit_tier (device): Σ answer.cost
splitexit_cost_final_layer_total           counter    model, policy, exit_tier (device): Σ cost_final_layer
splitexit_policy_state                     gauge      policy, key: the numbers in a policy's ``state()``
splitexit_build_info                       info       version, python, onnxruntime
=========================================  =========  ==========================================

Reading them: the share of samples a tier answers is
``sum by (tier) (rate(splitexit_exits_total[5m])) / ignoring(tier) group_left sum(rate(splitexit_exits_total[5m]))``;
the saving against running every sample to the final layer is
``1 - sum(rate(splitexit_cost_total[5m])) / sum(rate(splitexit_cost_final_layer_total[5m]))``.
The process and Python collectors (``process_*``, ``python_*``) come along.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

import grpc
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

from splitexit.policies.plan import Plan
from splitexit.shared.errors import ServingError
from splitexit.shared.lifecycle import Lifecycle
from splitexit.shared.policy_metrics import PolicyStates
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.schema import json_name
from splitexit.shared.tiers import Tier

# Each tier process exposes exactly the metrics below: no ``*_created`` twin per counter.
disable_created_metrics()

# 0.25 ms to 5 s: a block on a small CNN takes well under a millisecond, a 4G round trip tens.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Top softmax probabilities: fine steps where exit thresholds live.
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("queue", "decode", "compute", "codec", "network")
STAGE_FIELDS = tuple((stage, f"{stage}_s") for stage in STAGES)  # and their StageTimings fields
UNKNOWN_MODEL = "unknown"
HopPass = tuple[pb.Hop, Sequence[float], "pb.InferResponse | None"]  # a hop, the α in effect, this tier's answer


class TierMetrics:
    """The metrics one tier process exports, and the hooks that feed them."""

    def __init__(self, tier: Tier, models: Iterable[str]) -> None:
        self.tier = tier.value
        self.link = tier.link
        self._models = frozenset(models)
        self.registry = CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._declare_request_metrics(self.registry)
        self._declare_sample_metrics(self.registry)
        self._declare_route_metrics(self.registry)
        Info("splitexit_build", "Versions this tier runs", ["tier"], registry=self.registry).labels(self.tier).info(
            {
                "version": _version("splitexit"),
                "python": platform.python_version(),
                "onnxruntime": _version("onnxruntime"),
            }
        )

    def _declare_request_metrics(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "splitexit_requests",
            "Requests finished, by gRPC status code (HTTP requests too, under method HTTP)",
            ["tier", "model", "method", "code"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "splitexit_requests_in_flight", "Requests being served now", ["tier", "method"], registry=registry
        )
        self.request_seconds = Histogram(
            "splitexit_request_duration_seconds",
            "Time from receipt to answer on this tier, downstream tiers included",
            ["tier", "model", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def _declare_sample_metrics(self, registry: CollectorRegistry) -> None:
        """What happened to the samples on this tier: stages, batches, exits, thresholds, degraded answers."""
        self.stage_seconds = Histogram(
            "splitexit_stage_duration_seconds",
            "Time a sample spent in each stage on this tier (stages that took place)",
            ["tier", "model", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "splitexit_batch_size",
            "Samples per batch this tier ran (1: no other sample was waiting)",
            ["tier", "model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.exits = Counter(
            "splitexit_exits",
            "Samples this tier answered, by exit (1-based block)",
            ["tier", "model", "exit"],
            registry=registry,
        )
        self.exit_confidence = Histogram(
            "splitexit_exit_confidence",
            "Top softmax probability of the answers this tier gave",
            ["tier", "model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.exit_threshold = Gauge(
            "splitexit_exit_threshold",
            "Exit threshold α applied at this exit to the last sample that reached it",
            ["tier", "model", "exit"],
            registry=registry,
        )
        self.degraded = Counter(
            "splitexit_degraded",
            "Answers this tier gave from an earlier exit because the next tier could not be used",
            ["tier", "model", "reason"],
            registry=registry,
        )
        self.next_tier_up = Gauge(
            "splitexit_next_tier_up",
            "1 while the next tier reports SERVING on its health check, else 0",
            ["tier"],
            registry=registry,
        )

    def _declare_route_metrics(self, registry: CollectorRegistry) -> None:
        """Where samples went, and what their routes cost: offloads, the device's plans, costs."""
        self.offloads = Counter(
            "splitexit_offloads", "Samples sent on to the next tier", ["tier", "model", "link"], registry=registry
        )
        self.offload_bytes = Counter(
            "splitexit_offload_bytes",
            "Bytes of the ContinueRequests sent to the next tier",
            ["tier", "model", "link"],
            registry=registry,
        )
        self.plans = Counter(
            "splitexit_plans",
            "Plans the device's policies made for answered samples (0: end of the hosted range)",
            ["tier", "model", "policy", "device_last_block", "edge_last_block"],
            registry=registry,
        )
        self.cost = Counter(
            "splitexit_cost",
            "Cost of the answered samples (λ per block run, o per link crossed)",
            ["tier", "model", "policy", "exit_tier"],
            registry=registry,
        )
        self.cost_final_layer = Counter(
            "splitexit_cost_final_layer",
            "What the same samples would have cost run to the final layer",
            ["tier", "model", "policy", "exit_tier"],
            registry=registry,
        )

    def child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        """``metric.labels(*labels)``, looked up once per label set (``labels()`` costs ~5 µs a call)."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def serve_model(self, model: str) -> None:
        """Label ``model``'s samples with its name from now on (a package loaded while the tier runs)."""
        self._models = self._models | {model}

    def model_label(self, model: str) -> str:
        """``model`` if this tier serves it, else ``unknown``: clients must not mint label values."""
        return model if model in self._models else UNKNOWN_MODEL

    # -- hooks ----------------------------------------------------------------------------------

    def start(self, method: str, model: str, count: int = 1) -> InFlight:
        """``count`` requests of ``method`` for ``model`` now in flight; :meth:`InFlight.finish` counts each one."""
        return InFlight(self, method, self.model_label(model), count=count)

    @contextlib.contextmanager
    def request(self, method: str, model: str, count: int = 1) -> Iterator[InFlight]:
        """``count`` requests in flight for the body; each one not finished in it is counted by the code set on
        the call, else by what the body raised (OK if nothing)."""
        call = self.start(method, model, count)
        code = grpc.StatusCode.OK
        try:
            yield call
        except ServingError as error:
            code = error.code
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            raise
        finally:
            call.finish(call.code or code, call.open)

    def observe_hops(self, model: str, passes: Sequence[HopPass]) -> None:
        """Samples' passes through this tier, counted together: each one's stages, the α in effect, and its exit
        (its answer, this tier's own) or its offload (answer None; ``hop.bytes_sent`` crossed the link)."""
        stage_seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}  # only stages that took place
        confidences: list[float] = []
        alphas: dict[int, float] = {}
        exits: collections.Counter[int] = collections.Counter()
        offloads = bytes_sent = 0
        for hop, thresholds, answer in passes:
            timings = hop.timings
            for stage, field in STAGE_FIELDS:
                seconds = getattr(timings, field)
                if seconds > 0:
                    stage_seconds[stage].append(seconds)
            for block in range(hop.first_block, hop.last_block + 1):
                alphas[block] = thresholds[block - 1]
            if answer is not None:
                exits[answer.exit_block] += 1
                confidences.append(answer.confidence)
            else:
                offloads += 1
                bytes_sent += hop.bytes_sent
        for stage, observed in stage_seconds.items():
            self._observe_all(observed, self.stage_seconds, model, stage)
        self._observe_all(confidences, self.exit_confidence, model)
        for block, alpha in alphas.items():
            self.child(self.exit_threshold, self.tier, model, str(block)).set(alpha)
        for block, count in exits.items():
            self.child(self.exits, self.tier, model, str(block)).inc(count)
        if offloads:
            self.child(self.offloads, self.tier, model, self.link).inc(offloads)
            self.child(self.offload_bytes, self.tier, model, self.link).inc(bytes_sent)

    def _observe_all(self, values: list[float], histogram: Histogram, *labels: str) -> None:
        """Each of ``values`` in ``histogram``; its series is made only once it has one."""
        if values:
            child = self.child(histogram, self.tier, *labels)
            for value in values:
                child.observe(value)

    def observe_batch(self, model: str, size: int) -> None:
        """The batcher started a batch of ``size`` samples of ``model``."""
        self.child(self.batch_size, self.tier, model).observe(size)

    def observe_degraded(self, model: str, reason: pb.DegradedReason.ValueType) -> None:
        """This tier answered a sample degraded, for ``reason``."""
        self.child(self.degraded, self.tier, model, json_name(pb.DegradedReason.DESCRIPTOR, reason).lower()).inc()

    def observe_next_tier(self, up: bool) -> None:
        """The next tier's health changed."""
        self.child(self.next_tier_up, self.tier).set(1.0 if up else 0.0)

    def observe_answer(self, model: str, policy: str, plan: Plan, answer: pb.InferResponse) -> None:
        """The device's view of an answered sample: the plan its policy made and what the sample cost."""
        last_block = {tier: str(plan.last_block.get(tier, 0)) for tier in (Tier.DEVICE, Tier.EDGE)}
        self.child(self.plans, self.tier, model, policy, last_block[Tier.DEVICE], last_block[Tier.EDGE]).inc()
        exit_tier = Tier.from_proto(answer.exit_tier).value
        self.child(self.cost, self.tier, model, policy, exit_tier).inc(answer.cost)
        self.child(self.cost_final_layer, self.tier, model, policy, exit_tier).inc(answer.cost_final_layer)

    def watch_policies(self, policies: Callable[[], Mapping[str, object]]) -> None:
        """Export, at every scrape, the state of the policies ``policies()`` names (see :class:`PolicyStates`)."""
        self.registry.register(PolicyStates(self.tier, policies))


class InFlight:
    """Requests being served: in the in-flight gauge until :meth:`finish` counts each by its status code."""

    def __init__(self, metrics: TierMetrics, method: str, model: str, *, count: int = 1) -> None:
        self._metrics, self._method, self._model = metrics, method, model
        self._gauge = metrics.child(metrics.in_flight, metrics.tier, method)
        self._gauge.inc(count)
        self._started = time.perf_counter()
        self.code: grpc.StatusCode | None = None  # what a single request ended with, once known
        self.open = count  # requests not counted yet

    def finish(self, code: grpc.StatusCode, count: int = 1) -> None:
        """Count ``count`` of the requests still open under ``code``, each taking the time since they started."""
        count = min(count, self.open)
        if count <= 0:
            return
        self.open -= count
        self._gauge.dec(count)
        m = self._metrics
        m.child(m.requests, m.tier, self._model, self._method, code.name).inc(count)
        seconds, histogram = (
            time.perf_counter() - self._started,
            m.child(m.request_seconds, m.tier, self._model, self._method),
        )
        for _ in range(count):
            histogram.observe(seconds)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[Lifecycle], Awaitable[None]]:
    """Bind ``host:port`` now and serve ``/metrics`` from a thread; the coroutine stops it when the tier stops.

    Pass the coroutine to ``run_tier(..., helpers=[...])``: binding here makes
    a taken port fail the tier at start, with a message that says what to change.
    """
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise OSError(
            f"cannot bind the metrics endpoint to {host}:{port} ({exc.strerror}); set the tier's "
            "SPLITEXIT_<TIER>_METRICS_PORT to a free port, or 0 to turn it off"
        ) from None

    async def serve(lifecycle: Lifecycle) -> None:
        await lifecycle.stopping.wait()
        await asyncio.to_thread(server.shutdown)  # returns once serve_forever has left its loop
        server.server_close()
        thread.join()

    return serve


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
