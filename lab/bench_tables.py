"""The ``make bench`` page (``docs/results/bench.md``), rendered from ``bench/results/serving.json``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def bench_section(path: Path) -> str:
    report = json.loads(path.read_text())
    every_path = {**report["paths"], **report["large_model_paths"]}
    parts = [
        f"`make bench` ({'a quick smoke run, not for comparison' if report['quick'] else 'one run'}, "
        f"{report['machine']['cpus']} cores, loopback; every ratio is from the same run). "
        "Bare = the same onnxruntime segments in one process, no gRPC.",
        paths_table(every_path),
        overhead_share_line(every_path),
        package_time_line(report["large_model_package"]),
        throughput_table(report),
        workers_line(report["cloud_workers"]),
        in_process_line(report),
        cpu_split_table(report["cpu_split"]),
        stages_table(report["stage_us"]),
        triton_table(report["triton"]),
        offered_load_line(report["offered_load"]),
        http_line(report["http"]),
        tls_line(report["tls"]),
        codecs_table(report["codecs"]),
        policies_line(report["policy_us"]),
        targets_table(report),
    ]
    return "\n\n".join(parts)


def paths_table(paths: dict[str, dict[str, float]]) -> str:
    rows = [
        "| path (model → answering tier) | exit | served p50 | bare p50 | served ÷ bare | gRPC floor | beyond the "
        "floor, per hop |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in paths.items():
        rows.append(
            f"| {name} | {p['exit_block']} | {p['served_p50_ms']:.2f} ms | {p['bare_p50_ms']:.2f} ms "
            f"| {p['served_over_bare']:.1f}× | {p['floor_ms']:.2f} ms ({p['hops']} "
            f"hop{'s' if p['hops'] > 1 else ''}) | {p['overhead_per_hop_us']:.0f} µs |"
        )
    return "Sequential latency, one request at a time:\n\n" + "\n".join(rows)


def overhead_share_line(paths: dict[str, dict[str, float]]) -> str:
    """How much of the cloud path's served latency is serving rather than the model, per model."""
    shares = [
        f"{name.split(' → ')[0]} {100 * (1 - p['bare_p50_ms'] / p['served_p50_ms']):.0f} %"
        for name, p in paths.items()
        if name.endswith("→ cloud")
    ]
    return "Share of the served latency that is serving, not the model, on the cloud path: " + ", ".join(shares) + "."


def package_time_line(packages: dict[str, dict[str, Any]]) -> str:
    """How long exporting each 12-layer package's slices took in this run."""
    timed = [
        f"`{name}` ({p['backbone']}): its {p['slices']} ONNX slices ({p['megabytes']:,.0f} MB) in {p['seconds']:.1f} s "
        f"on {p['threads']} threads"
        for name, p in packages.items()
    ]
    return (
        "Packaging the 12-layer encoder, as `make models-large` does (every slice exported from the installed "
        "backbone and the trained heads, checked against the manifest's checksums; into a temporary folder): "
        + "; ".join(timed)
        + "."
    )


def throughput_table(report: dict[str, Any]) -> str:
    bare, batched, unbatched = report["bare"], report["throughput"], report["unbatched"]
    best_all, best_cloud = _best(bare["all_blocks"]), _best(bare["cloud_blocks"])
    rows = [
        "| load (image, all to cloud) | samples/s | ÷ bare best | batching off | batcher gain |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, rate in batched.items():
        clients = key.rsplit("_", 1)[1]
        base = best_cloud if key.startswith("cloud") else best_all
        per_message, _, in_flight = clients.partition("x")
        label = {
            "unary": f"{clients} unary clients",
            "stream": f"one InferStream, {clients} in flight",
            "batch": f"InferBatch, {per_message} images per message, {in_flight} in flight",
            "cloud_requests": f"the same, one request per sample on the link (`link_columns` off), {clients} in flight",
        }.get(key.rsplit("_", 1)[0], f"the cloud tier alone, fed by a link, {clients} in flight")
        rows.append(
            f"| {label} | {rate:,.0f} | {rate / base[1]:.2f}× | {unbatched[key]:,.0f} | {rate / unbatched[key]:.2f}× |"
        )
    return (
        "Throughput (bare best: all six blocks "
        f"{best_all[1]:,.0f}/s at batch {best_all[0]}, the cloud's blocks {best_cloud[1]:,.0f}/s at batch "
        f"{best_cloud[0]}, one process per core; inputs decoded beforehand):\n\n" + "\n".join(rows)
    )


def _best(rates: dict[str, float]) -> tuple[str, float]:
    batch = max(rates, key=lambda b: rates[b])
    return batch, rates[batch]


def workers_line(pools: dict[str, Any]) -> str:
    """The cloud pools' rounds, their median ratio, and how the kernel spread the connections over the workers."""
    rates, answered = pools["rates"], pools["answered_by_worker"]
    spread = " / ".join(f"{count / sum(answered['2']):.0%}" for count in answered["2"])
    return (
        "The cloud tier alone as a pool of worker processes on one port (`workers`), fed by "
        f"{pools['feeders']} client processes with {pools['links_per_feeder']} links each, on connections of their "
        f"own, {pools['in_flight']} in flight, {len(rates['1'])} rounds each, alternating: 1 worker "
        + ", ".join(f"{rate:,.0f}" for rate in rates["1"])
        + "/s; 2 workers "
        + ", ".join(f"{rate:,.0f}" for rate in rates["2"])
        + f"/s; {pools['ratio']:.2f}× (the median of the rounds' ratios). The two workers answered {spread} of "
        "the samples sent to the pool of 2."
    )


def in_process_line(report: dict[str, Any]) -> str:
    """The cloud tier without gRPC beside the cloud tier fed by a link, and its CPU per sample beside bare's."""
    inside, linked = report["cloud_in_process"], report["throughput"]["cloud_alone_64"]
    batch, bare = _best(report["bare"]["cloud_blocks"])
    cores = report["machine"]["cpus"]
    return (
        "The cloud tier run inside the bench process (its pipeline, `Tier` servicer, batcher and onnxruntime; no "
        "gRPC, no sockets), fed the same requests as a link sends them, columns of 32, 64 in flight: "
        f"{inside['per_s']:,.0f}/s, "
        f"{inside['per_s'] / linked:.2f}× the cloud tier fed by a link, at {inside['cpu_us']:,.0f} µs of CPU per "
        f"sample; bare onnxruntime takes {1e6 * cores / bare:,.1f} µs of CPU per sample on the same blocks "
        f"(batch {batch}). The rest is the tier's own work per sample, timed stage by stage below."
    )


CPU_LOADS = {"batch_64x4": "InferBatch of 64, 4 in flight", "unary_64": "64 unary clients"}


def cpu_split_table(split: dict[str, Any]) -> str:
    """CPU µs per sample in each process of the served path beside bare onnxruntime's on the same part."""
    bare, blocks = split["bare"], split["blocks"]

    def cells(us: Callable[[dict[str, float]], float]) -> str:
        return " | ".join(f"{us(split[load]):,.0f}" for load in CPU_LOADS)

    rows = [
        f"| process | {' | '.join(CPU_LOADS.values())} | bare, batch 64 |",
        "|---|" + "---:|" * (len(CPU_LOADS) + 1),
        f"| the client (the bench) | {cells(lambda load: load['client'])} | — |",
    ]
    for tier, (first, last) in blocks.items():
        device = tier == "device"
        work = f"blocks {first}–{last}" + (", decoding the PNG" if device else "")
        own = bare[tier] + (bare["decode"] if device else 0.0)
        rows.append(f"| {tier} ({work}) | {cells(lambda load, tier=tier: load[tier])} | {own:,.0f} |")
    every = ["client", *blocks]
    bare_total = bare["decode"] + sum(bare[tier] for tier in blocks)
    rows.append(f"| all | {cells(lambda load: sum(load[name] for name in every))} | {bare_total:,.0f} |")
    return (
        "Where a sample's CPU goes, all to the cloud: µs of CPU per answered sample in each process (every thread: "
        "event loop, onnxruntime, gRPC's), beside bare onnxruntime on the same blocks and Pillow decoding the same "
        "PNGs in one process. What a tier spends beyond its bare part is its per-sample Python and gRPC's work per "
        "message:\n\n" + "\n".join(rows)
    )


STAGE_NAMES = {  # what bench.tier_cost.stage_costs times: a sample of a column, in the order it meets them ...
    "unpack_column": "unpack its `ContinueColumns` of 32 (activations decoded and checked, plans parsed), per sample",
    "pipeline_group": "the request pipeline for the group (metrics, validation, admission, deadline) around a "
    "handler that does nothing, per sample",
    "answer": "build its answer and its hop",
    "metrics_hops": "count the group's hops in metrics (stage times, α, exits), per sample",
    "serialize_answer": "serialize the `InferResponse`",
    "parse_answer": "parse it on the tier before",
    # ... and a lone ContinueRequest's own stages instead of the first two
    "parse_request": "parse a `ContinueRequest` off the wire",
    "pipeline": "the request pipeline around a handler that does nothing, for one request",
    "decode_activation": "decode and check its activation",
    "parse_plan": "read its plan",
}
COLUMN_STAGES = tuple(STAGE_NAMES)[:6]
REQUEST_STAGES = tuple(STAGE_NAMES)[6:]
STAGE_BOUND_US = 10.0  # issue 20: what stays per sample is small


def stages_table(stage_us: dict[str, float]) -> str:
    def rows(names: Sequence[str]) -> list[str]:
        return [f"| {STAGE_NAMES[name]} | {stage_us[name]:.1f} |" for name in names]

    head = ["| per-sample stage (cloud, one image's activation) | µs |", "|---|---:|"]
    return (
        "What each per-sample stage of a resuming tier costs, timed alone in the bench process. A sample that comes "
        "in a column (what a link sends):\n\n"
        + "\n".join([*head, *rows(COLUMN_STAGES)])
        + "\n\nA lone `ContinueRequest` (a link with `link_columns` off, `ContinueStream`) meets these instead of "
        "the column's first two:\n\n" + "\n".join([*head, *rows(REQUEST_STAGES)])
    )


def triton_table(triton: dict[str, Any]) -> str:
    """The tiers all to the cloud against Triton on the same six segments, one sample per request."""
    if "unavailable" in triton["triton"]:
        return f"Triton Inference Server: not run: {triton['triton']['unavailable']}."
    rows = [
        "| in flight | splitexit, all to cloud (3 hops) | p50 | Triton (PyTriton, dynamic batcher, 1 hop) | p50 | "
        "÷ Triton |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for load, ours in triton["splitexit"].items():
        theirs = triton["triton"][load]
        rows.append(
            f"| {load} | {ours['per_s']:,.0f}/s | {ours['p50_ms']:.2f} ms | {theirs['per_s']:,.0f}/s "
            f"| {theirs['p50_ms']:.2f} ms | {ours['per_s'] / theirs['per_s']:.2f}× |"
        )
    return (
        "One sample per request, unary gRPC, the six fmnist segments (Triton is sent the decoded tensor, "
        "the device the PNG):\n\n" + "\n".join(rows)
    )


def offered_load_line(load: dict[str, Any]) -> str:
    early, final = load["early_exits"], load["final_layer"]
    return (
        f"At a fixed offered load of {load['rate_per_s']:,.0f} requests/s (half of 64 unary clients' all-to-cloud "
        f"rate in this run), through the same tiers: with the device's policy (early exits) p50 "
        f"{early['p50_ms']:.2f} ms, p95 {early['p95_ms']:.2f} ms; every sample to the final layer p50 "
        f"{final['p50_ms']:.2f} ms, p95 {final['p95_ms']:.2f} ms ({1 - early['p50_ms'] / final['p50_ms']:.0%} "
        f"lower median with exits)."
    )


def http_line(http: dict[str, float]) -> str:
    return (
        f"HTTP, all to cloud: the gateway {http['gateway_p50_ms']:.2f} ms p50 and "
        f"{http['gateway_8_clients_per_s']:,.0f} "
        f"requests/s at 8 clients; LitServe serving the six segments chained in one process "
        f"{http['litserve_p50_ms']:.2f} ms and {http['litserve_8_clients_per_s']:,.0f}/s "
        f"(gateway ÷ LitServe: {http['gateway_8_clients_per_s'] / http['litserve_8_clients_per_s']:.2f}×)."
    )


def tls_line(tls: dict[str, float]) -> str:
    return (
        f"TLS, all to cloud, one request at a time: plaintext {tls['plaintext_p50_ms']:.2f} ms p50, mutual TLS on "
        f"every hop {tls['tls_p50_ms']:.2f} ms: {tls['tls_per_hop_us']:.0f} µs per hop."
    )


def codecs_table(codecs: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = [
        "| test set | codec | bytes/sample device→edge | edge→cloud | fewer than fp32 | final-exit accuracy | "
        "change | worst exit behind a link |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for test_set, by_codec in codecs.items():
        for codec, c in by_codec.items():
            rows.append(
                f"| {test_set} ({c['samples']:,}) | {codec} | {c['device_edge_bytes']:,.0f} | "
                f"{c['edge_cloud_bytes']:,.0f} "
                f"| {c['bytes_vs_fp32']:.2f}× | {c['final_accuracy']:.2f} % | {c['final_change_points']:+.2f} "
                f"| {c['worst_exit_change_points']:+.2f} |"
            )
    return "Activation codecs on the full test sets (changes in points against fp32):\n\n" + "\n".join(rows)


def policies_line(policy_us: dict[str, float]) -> str:
    listed = ", ".join(f"{name} {us:.0f}" for name, us in policy_us.items())
    return f"µs per policy decision (plan, route, learn; replayed exits): {listed}."


@dataclass(frozen=True, kw_only=True)
class Target:
    """One serving target: what is measured, its value in this run (None: not run), the bound and which side."""

    what: str
    value: float | None
    bound: float
    at_least: bool = True  # False: at most
    shape: str = "{:.2f}×"  # how the value and the bound are written

    @property
    def met(self) -> bool:
        return self.value is not None and (self.value >= self.bound if self.at_least else self.value <= self.bound)

    def row(self) -> str:
        measured = "not run" if self.value is None else self.shape.format(self.value)
        wanted = f"{'≥' if self.at_least else '≤'} {self.shape.format(self.bound)}"
        return f"| {self.what} | {measured} | {wanted} | {'met' if self.met else '**missed**'} |"


def targets(report: dict[str, Any]) -> list[Target]:
    """Every serving target of ``make bench``, measured in this run."""
    bare, batched, http = report["bare"], report["throughput"], report["http"]
    channel = [by_codec["int8-channel"] for by_codec in report["codecs"].values()]
    workers = report["cloud_workers"]
    return [
        *(
            Target(
                what=f"all to cloud, {load} ÷ bare best",
                value=batched[key] / _best(bare["all_blocks"])[1],
                bound=0.5,
            )
            for key, load in (
                ("stream_64", "one InferStream, 64 in flight"),
                ("batch_64x4", "InferBatch of 64, 4 in flight"),
            )
        ),
        Target(
            what="the cloud tier alone, 64 in flight ÷ bare on its blocks",
            value=batched["cloud_alone_64"] / _best(bare["cloud_blocks"])[1],
            bound=0.7,
        ),
        *_per_hop_targets(report["paths"]),
        Target(
            what="HTTP gateway ÷ LitServe at 8 clients",
            value=http["gateway_8_clients_per_s"] / http["litserve_8_clients_per_s"],
            bound=1,
        ),
        Target(
            what="int8-channel: fewest fewer-bytes factor over the test sets",
            value=min(c["bytes_vs_fp32"] for c in channel),
            bound=3.5,
        ),
        Target(
            what="int8-channel: worst final-exit change (points)",
            value=min(c["final_change_points"] for c in channel),
            bound=-0.2,
            shape="{:+.2f}",
        ),
        Target(
            what=f"slowest per-sample stage of a column's sample ({_slowest(report['stage_us'])})",
            value=max(report["stage_us"][name] for name in COLUMN_STAGES),
            bound=STAGE_BOUND_US,
            at_least=False,
            shape="{:.1f} µs",
        ),
        Target(what="the cloud tier alone, 2 workers ÷ 1 worker", value=workers["ratio"], bound=1.5),
        Target(
            what="all to cloud, one sample per message, 64 in flight ÷ Triton (same segments, one hop)",
            value=_over_triton(report["triton"]),
            bound=1,
        ),
    ]


def _slowest(stage_us: dict[str, float]) -> str:
    return STAGE_NAMES[max(COLUMN_STAGES, key=lambda name: stage_us[name])].split(" (")[0]


def _per_hop_targets(paths: dict[str, dict[str, float]]) -> list[Target]:
    """What serving adds beyond the gRPC floor per hop, on the worst path of each small model."""
    return [
        Target(
            what=f"beyond the gRPC floor per hop, {kind} (worst path)",
            value=max(p["overhead_per_hop_us"] for name, p in paths.items() if name.startswith(model)),
            bound=300,
            at_least=False,
            shape="{:.0f} µs",
        )
        for model, kind in (("fmnist-cnn", "image"), ("minilm-sentiment", "text"))
    ]


def targets_table(report: dict[str, Any]) -> str:
    """Each serving target against what this run measured, and whether it was met."""
    rows = ["| target | measured | wanted | |", "|---|---:|---:|---|", *(t.row() for t in targets(report))]
    return "Targets, from this run:\n\n" + "\n".join(rows)


def _over_triton(triton: dict[str, Any]) -> float | None:
    """The tiers' rate ÷ Triton's at 64 in flight; None where Triton was not run."""
    if "unavailable" in triton["triton"]:
        return None
    return triton["splitexit"]["64"]["per_s"] / triton["triton"]["64"]["per_s"]
