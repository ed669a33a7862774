"""`make bench`: what serving across three tiers costs over bare onnxruntime, all ratios from one run.

In one run on this machine: served ÷ bare latency per path (image and text, and
the 12-layer all-mpnet-base-v2 of models-large/; device, edge and cloud exits)
with the gRPC transport floor and the overhead beyond it per hop
(:mod:`bench.paths`); how long exporting the 12-layer package's slices takes
(``make models-large``'s path); throughput all to the cloud at 1, 8 and 64
clients, unary and streamed, 64 images per ``InferBatch`` with 4 in flight, and the cloud tier
alone fed by a link, each ÷ bare onnxruntime at its best batch on the same cores;
the dynamic batcher's gain (the same loads with batching off); the cloud tier
alone with 1 and 2 worker processes (:mod:`bench.workers`); the cloud tier run
inside the bench process, without gRPC, and the µs of each per-sample stage
(:mod:`bench.tier_cost`); one sample per
request at 1, 8 and 64 in flight against Triton on the same segments
(:mod:`bench.triton`); latency with early exits and to the final layer at half
the all-to-cloud capacity; the HTTP gateway against LitServe serving the same
model in one process; what TLS adds per hop (:mod:`bench.tls_cost`); the
activation codecs' bytes and accuracy on the full test sets
(:mod:`bench.codec_accuracy`); and µs per policy decision.
Writes ``bench/results/serving.json``; ``make bench`` renders it into ``docs/results/bench.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.bare import BareChain, best_batch_rate
from bench.codec_accuracy import codec_report
from bench.http_rates import http_latency, http_rate
from bench.paths import PathInputs, exit_plans, measure_path
from bench.policy_speed import microseconds_per_decision
from bench.process_cpu import bare_cpu_us, cpu_us_per_sample, parts_to_cloud
from bench.rates import batch_rate, link_rate, offered_load, stream_rate, unary_load, unary_rate
from bench.services import echo_service, litserve_service
from bench.tier_cost import in_process_rate, stage_costs
from bench.tls_cost import tls_cost
from bench.triton import triton_rates
from bench.workers import cloud_workers_rates
from lab.scenarios import LARGE_MODELS_DIR, ROOT
from lab.text_data import sentiment
from splitexit.policies.chain import Chain
from splitexit.samples import load_pack
from splitexit.shared.manifest import load_manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tensors import encode
from splitexit.shared.tiers import Tier
from splitexit.shared.tokenizer import TextTokenizer
from splitexit.testbed import Testbed, free_port

RESULTS = Path(__file__).parent / "results" / "serving.json"
LOGS = Path(".cache/logs/bench")
CLIENTS = (1, 8, 64)
BATCH, BATCHES_IN_FLIGHT = 64, 4  # InferBatch: images per message, messages in flight
UNBATCHED = {tier: {"max_batch": "1"} for tier in Tier}


def image_inputs(count: int) -> PathInputs:
    package = DEFAULT_MODELS_DIR / "fmnist-cnn"
    manifest = load_manifest(package)
    pngs = [image.png for image in load_pack()][:count]
    requests = [pb.InferRequest(model=manifest.name, image=png) for png in pngs]
    prepare = functools.partial(decode_image, spec=manifest.input)
    return PathInputs(
        model=manifest.name,
        chain=BareChain(package),
        tiers=Chain.of(manifest),
        requests=requests,
        raw=pngs,
        prepare=prepare,
    )


def text_inputs(count: int, package: Path = DEFAULT_MODELS_DIR / "minilm-sentiment") -> PathInputs:
    manifest = load_manifest(package)
    texts = [record.text.encode() for record in sentiment("imdb")[:count]]
    tokenizer = TextTokenizer.from_package(package, manifest.input)  # type: ignore[arg-type]
    requests = [pb.InferRequest(model=manifest.name, text=text, truncate=True) for text in texts]
    prepare = functools.partial(tokenizer.encode_utf8, truncate=True)
    return PathInputs(
        model=manifest.name,
        chain=BareChain(package),
        tiers=Chain.of(manifest),
        requests=requests,
        raw=texts,
        prepare=prepare,
    )


async def paths(device: str, echo: str, inputs: list[PathInputs]) -> dict[str, dict[str, float]]:
    report = {}
    for model_inputs in inputs:
        for tier, plan in exit_plans(model_inputs.tiers).items():
            report[f"{model_inputs.model} → {tier}"] = await measure_path(device, echo, model_inputs, plan)
    return report


def large_model_paths(count: int) -> dict[str, dict[str, float]]:
    """The 12-layer encoder's paths (imdb sentences), on tiers that serve its package in models-large/."""
    package = ROOT / LARGE_MODELS_DIR / "mpnet-sentiment"
    if not (package / "block1.onnx").is_file():
        raise SystemExit(f"{package} has no ONNX slices: run `make models-large` first")
    settings = {tier: {"models_dir": str(package.parent)} for tier in Tier}
    with (
        echo_service(LOGS) as echo,
        Testbed({tier: free_port() for tier in Tier}, settings=settings, log_dir=LOGS) as bed,
    ):
        return asyncio.run(paths(bed.device_address, echo, [text_inputs(count, package)]))


def large_model_package() -> dict[str, dict[str, object]]:
    """How long ``make models-large``'s export of each 12-layer package takes (every slice from the installed
    backbone, checksum-verified, into a temporary folder), timed in a process of its own."""
    command = [sys.executable, "-m", "training.text_export", "--models-dir", str(ROOT / LARGE_MODELS_DIR), "--timed"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"timing the export of {LARGE_MODELS_DIR}/ failed: {done.stderr.strip().splitlines()[-1:]}")
    timed: dict[str, dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return timed


async def throughput(device: str, cloud: str, images: PathInputs, count: int) -> dict[str, float]:
    """Samples/s all to the cloud by clients and mode, and the cloud tier alone fed by a link."""
    many = all_to_cloud_requests(images, count)
    rates = {}
    for clients in CLIENTS:
        share = many[: max(count * clients // max(CLIENTS), 200)]
        rates[f"unary_{clients}"] = await unary_rate(device, share, clients)
        rates[f"stream_{clients}"] = await stream_rate(device, share, clients)
    rates[f"batch_{BATCH}x{BATCHES_IN_FLIGHT}"] = await batch_rate(
        device, batch_requests(images, count), BATCHES_IN_FLIGHT
    )
    rates["cloud_alone_64"] = await link_rate(cloud, cloud_requests(images, count), 64)
    rates["cloud_requests_64"] = await link_rate(cloud, cloud_requests(images, count), 64, columns=False)
    return rates


def cpu_split(bed: Testbed, images: PathInputs, count: int) -> dict[str, dict[str, float]]:
    """CPU µs per sample in each process (this client, the device, the edge, the cloud), all to the cloud, for
    InferBatch and for 64 unary clients; and bare onnxruntime's on each tier's blocks at the batch's size."""
    pids = {"client": os.getpid(), **{tier.value: running.process.pid for tier, running in bed.processes.items()}}
    batches = batch_requests(images, count)
    many = all_to_cloud_requests(images, count)

    def batched() -> int:
        asyncio.run(batch_rate(bed.device_address, batches, BATCHES_IN_FLIGHT))
        return sum(len(batch.images) for batch in batches)

    def unary() -> int:
        asyncio.run(unary_load(bed.device_address, many, max(CLIENTS)))
        return len(many)

    return {
        f"batch_{BATCH}x{BATCHES_IN_FLIGHT}": cpu_us_per_sample(pids, batched),
        f"unary_{max(CLIENTS)}": cpu_us_per_sample(pids, unary),
        "bare": bare_cpu_us(images, BATCH, repeats=max(count // BATCH, 5)),
        "blocks": {tier.value: list(blocks) for tier, blocks in parts_to_cloud(images.tiers).items()},
    }


def batch_requests(images: PathInputs, count: int) -> list[pb.InferBatchRequest]:
    """``count`` images all to the cloud, ``BATCH`` per ``InferBatch`` message."""
    pngs = [image for image in images.raw if isinstance(image, bytes)]
    many = (pngs * (count // len(pngs) + 1))[:count]
    plan = pb.Plan(threshold=1.0)
    return [
        pb.InferBatchRequest(model=images.model, images=many[i : i + BATCH], policy=plan)
        for i in range(0, count, BATCH)
    ]


def cloud_requests(images: PathInputs, count: int) -> list[pb.ContinueRequest]:
    """What the edge sends the cloud for each image: the activation before the cloud's first block."""
    first = images.tiers.hosted[Tier.EDGE].last + 1
    activations = [images.chain.run(images.prepare(raw), 1, first - 1)[1] for raw in images.raw]
    return [
        pb.ContinueRequest(model=images.model, next_block=first, activation=encode(activations[i % len(activations)]))
        for i in range(count)
    ]


def all_to_cloud_requests(images: PathInputs, count: int) -> list[pb.InferRequest]:
    """``count`` of the images' requests (repeated as needed), each planned all the way to the cloud."""
    requests = [_all_to_cloud(request) for request in images.requests]
    return (requests * (count // len(requests) + 1))[:count]


def _all_to_cloud(request: pb.InferRequest) -> pb.InferRequest:
    copy = pb.InferRequest()
    copy.CopyFrom(request)
    copy.policy.threshold = 1.0
    return copy


def bare_rates(images: PathInputs, processes: int) -> dict[str, dict[int, float]]:
    """Bare onnxruntime samples/s by batch size: all six blocks, and the cloud's blocks alone."""
    package = DEFAULT_MODELS_DIR / images.model
    decoded = np.concatenate([images.prepare(raw) for raw in images.raw])
    first = images.tiers.hosted[Tier.EDGE].last + 1
    before_cloud = np.concatenate([images.chain.run(x[None], 1, first - 1)[1] for x in decoded])
    return {
        "all_blocks": best_batch_rate(package, decoded, 1, images.tiers.num_blocks, processes),
        "cloud_blocks": best_batch_rate(package, before_cloud, first, images.tiers.num_blocks, processes),
    }


async def http_comparison(gateway: str, litserve: str, images: PathInputs, count: int) -> dict[str, float]:
    """p50 one at a time and requests/s at 8 clients, all to the cloud, for the gateway and for LitServe."""
    bodies = [{"image_base64": base64.b64encode(png).decode(), "threshold": 1.0} for png in images.raw]  # type: ignore[arg-type]
    many = (bodies * (count // len(bodies) + 1))[:count]
    report = {}
    for name, url in (("gateway", gateway), ("litserve", litserve)):
        await http_latency(url, bodies[:10])
        report[f"{name}_p50_ms"] = 1e3 * float(np.median(await http_latency(url, bodies)))
        report[f"{name}_8_clients_per_s"] = await http_rate(url, many, 8)
    return report


def triton_comparison(device: str, images: PathInputs, count: int) -> dict[str, dict[str, Any]]:
    """One sample per request at 1, 8 and 64 in flight, all to the cloud: the tiers, then Triton on the same
    segments."""
    many = all_to_cloud_requests(images, count)
    tiers = {str(n): asyncio.run(unary_load(device, many, n)) for n in CLIENTS}
    decoded = np.concatenate([images.prepare(raw) for raw in images.raw])
    return {"splitexit": tiers, "triton": triton_rates(decoded, count, CLIENTS, DEFAULT_MODELS_DIR, LOGS)}


async def early_exits_at_half_load(
    device: str, images: PathInputs, report: dict[str, Any], count: int
) -> dict[str, float | dict[str, float]]:
    """At a fixed offered load, half the all-to-cloud capacity of this run (64 unary clients): latency with
    the device's policy (early exits) and with every sample run to the final layer, through the same tiers."""
    rate = 0.5 * report["throughput"]["unary_64"]
    final_only = [_all_to_cloud(request) for request in images.requests]
    cycle = count // len(images.requests) + 1
    return {
        "rate_per_s": rate,
        "early_exits": await offered_load(device, (images.requests * cycle)[:count], rate),
        "final_layer": await offered_load(device, (final_only * cycle)[:count], rate),
    }


def measure(quick: bool) -> dict[str, object]:
    scale = 10 if quick else 1
    images, texts = image_inputs(300 // scale), text_inputs(100 // scale)
    count = 3000 // scale
    ports = {tier: free_port() for tier in Tier}
    report: dict[str, object] = {}
    with echo_service(LOGS) as echo, Testbed(ports, http_port=free_port(), log_dir=LOGS) as bed:
        report["paths"] = asyncio.run(paths(bed.device_address, echo, [images, texts]))
        report["throughput"] = asyncio.run(
            throughput(bed.device_address, bed.processes[Tier.CLOUD].address, images, count)
        )
        report["cpu_split"] = cpu_split(bed, images, count)
        report["triton"] = triton_comparison(bed.device_address, images, count)
        report["offered_load"] = asyncio.run(early_exits_at_half_load(bed.device_address, images, report, count))
        with litserve_service(LOGS) as litserve:
            gateway = f"http://127.0.0.1:{bed.http_port}/v1/infer"
            report["http"] = asyncio.run(http_comparison(gateway, litserve, images, 800 // scale))
    report["large_model_paths"] = large_model_paths(100 // scale)
    report["large_model_package"] = large_model_package()
    with Testbed({tier: free_port() for tier in Tier}, settings=UNBATCHED, log_dir=LOGS) as unbatched:
        report["unbatched"] = asyncio.run(
            throughput(unbatched.device_address, unbatched.processes[Tier.CLOUD].address, images, count)
        )
    report["cloud_workers"] = cloud_workers_rates(cloud_requests(images, count), LOGS)
    report["cloud_in_process"] = asyncio.run(in_process_rate(cloud_requests(images, count), 64))
    report["stage_us"] = stage_costs(cloud_requests(images, 1)[0], 2000 // scale)
    report["tls"] = tls_cost([_all_to_cloud(request) for request in images.requests], LOGS)
    report["bare"] = bare_rates(images, processes=os.cpu_count() or 1)
    report["codecs"] = codec_report(DEFAULT_MODELS_DIR, limit=200 if quick else None)
    report["policy_us"] = microseconds_per_decision(DEFAULT_MODELS_DIR, 300 if quick else 3000)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the samples (a smoke run, not for the results page)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "quick": args.quick,
        **measure(args.quick),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
