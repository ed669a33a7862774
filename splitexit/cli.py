"""The ``splitexit`` command: serve a tier, send images, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import grpc

from shared.proto import splitexit_pb2 as pb


def _serve(args: argparse.Namespace) -> None:
    if args.tier == "device":
        from device.server import serve
    elif args.tier == "edge":
        from edge.server import serve
    else:
        from cloud.server import serve
    asyncio.run(serve())


def _infer(args: argparse.Namespace) -> None:
    from splitexit.client import DeviceClient

    async def send() -> int:
        failures = 0
        async with DeviceClient(args.address) as client:
            for path in args.images:
                try:
                    r = await client.infer(path.read_bytes(), model=args.model, threshold=args.threshold)
                except grpc.aio.AioRpcError as exc:
                    print(f"{path}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                    failures += 1
                    continue
                tier = pb.TierName.Name(r.exit_tier).lower()
                total_ms = r.hops[0].timings.total_s * 1e3 if r.hops else 0.0
                print(f"{path}: {r.label_name} ({r.confidence:.3f}) exit {tier} block {r.exit_block} {total_ms:.2f} ms")
        return failures

    sys.exit(1 if asyncio.run(send()) else 0)


def _health(args: argparse.Namespace) -> None:
    from splitexit.client import is_serving

    serving = asyncio.run(is_serving(args.address, timeout_s=args.timeout))
    print(f"{args.address}: {'SERVING' if serving else 'NOT SERVING'}")
    sys.exit(0 if serving else 1)


def _demo(args: argparse.Namespace) -> None:
    from splitexit import demo

    demo.run(samples=args.samples, show=args.show, threshold=args.threshold, seed=args.seed, json_path=args.json)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="splitexit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one tier (config: SPLITEXIT_<TIER>_* env, $SPLITEXIT_CONFIG YAML)")
    serve.add_argument("tier", choices=["device", "edge", "cloud"])
    serve.set_defaults(run=_serve)

    infer = commands.add_parser("infer", help="classify image files through a running device")
    infer.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    infer.add_argument("--address", default="127.0.0.1:50051", help="the device's gRPC address")
    infer.add_argument("--model", default="", help="model name (default: the device's default)")
    infer.add_argument("--threshold", type=float, help="exit threshold at every exit, for these requests")
    infer.set_defaults(run=_infer)

    health = commands.add_parser("health", help="exit 0 iff the tier at ADDRESS reports SERVING (grpc.health.v1)")
    health.add_argument("address", nargs="?", default="127.0.0.1:50051")
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(run=_health)

    demo = commands.add_parser("demo", help="start three local tiers, send real test images, summarize")
    demo.add_argument("--samples", type=int, default=300)
    demo.add_argument("--show", type=int, default=10, help="answers to print one by one")
    demo.add_argument("--threshold", type=float, help="override the tiers' exit threshold")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.run(args)
