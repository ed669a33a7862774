"""The ``splitexit`` command: serve a tier, classify images and texts, generate load, show what policies learned."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

import grpc

from splitexit.link_profiles import LINK_PROFILES
from splitexit.shared.tiers import Tier


def _serve(args: argparse.Namespace) -> None:
    from splitexit.shared.manifest import PackageError

    if args.tier == "device":
        from splitexit.device.server import serve
    elif args.tier == "edge":
        from splitexit.edge.server import serve
    else:
        from splitexit.cloud.server import serve
    try:
        asyncio.run(serve())
    except PackageError as exc:  # a model package failed its checks: one line, no traceback
        sys.exit(f"splitexit serve {args.tier}: refusing to start: {exc}")


def _infer(args: argparse.Namespace) -> None:
    from splitexit.client import DeviceClient, request, text_request

    if not args.images and not args.text:
        sys.exit("splitexit infer: give IMAGE files, or --text \"...\" (with --model naming a text model)")

    async def send() -> int:
        failures = 0
        async with DeviceClient(args.address) as client:
            messages = [
                (str(path), request(path.read_bytes(), args.model, args.threshold, policy=args.policy))
                for path in args.images
            ]
            messages += [
                (repr(text), text_request(text, args.model, args.threshold, truncate=args.truncate, policy=args.policy))
                for text in args.text
            ]
            for name, message in messages:
                try:
                    r = await client.stub.Infer(message, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    print(f"{name}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                    failures += 1
                    continue
                tier = Tier.from_proto(r.exit_tier).value
                total_ms = r.hops[0].timings.total_s * 1e3 if r.hops else 0.0
                degraded = f"  DEGRADED: {r.degradation.message}" if r.degraded else ""
                print(f"{name}: {r.label_name} ({r.confidence:.3f}) exit {tier} block {r.exit_block} {total_ms:.2f} ms{degraded}")
        return failures

    sys.exit(1 if asyncio.run(send()) else 0)


def _health(args: argparse.Namespace) -> None:
    from splitexit.client import is_serving

    serving = asyncio.run(is_serving(args.address, timeout_s=args.timeout))
    print(f"{args.address}: {'SERVING' if serving else 'NOT SERVING'}")
    sys.exit(0 if serving else 1)


def _loadgen(args: argparse.Namespace) -> None:
    from splitexit import loadgen
    from splitexit.samples import SAMPLE_PACK, load_pack

    images = load_pack(args.samples or SAMPLE_PACK)
    print(f"Sending {len(images)} Fashion-MNIST test images round-robin to {args.address} at {args.rate:g}/s", flush=True)
    try:
        asyncio.run(
            loadgen.generate(
                args.address,
                images,
                args.rate,
                duration_s=args.duration,
                threshold=args.threshold,
                model=args.model,
                concurrency=args.concurrency,
                report_every_s=args.report_every,
            )
        )
    except KeyboardInterrupt:
        pass


def _policy_show(args: argparse.Namespace) -> None:
    from splitexit.policy_show import fetch, format_state

    try:
        state = asyncio.run(fetch(args.address, args.model, args.policy))
    except grpc.aio.AioRpcError as exc:
        sys.exit(f"{args.address}: {exc.code().name}: {exc.details()}")
    print(format_state(state))


def _testbed(args: argparse.Namespace) -> None:
    from splitexit.netns import NetnsTestbed, unavailable_reason
    from splitexit.testbed import Testbed

    def refuse(message: str) -> NoReturn:
        print(f"splitexit testbed: {message}", file=sys.stderr)
        sys.exit(2)

    if args.netns:
        reason = unavailable_reason()
        if reason is not None:
            refuse(f"--netns: {reason}")
        link, backhaul = args.link or "wifi", args.backhaul or "wan"
        bed: Testbed | NetnsTestbed = NetnsTestbed(link, backhaul, http=True, log_dir=args.log_dir)
        links = f"device-edge {link}, edge-cloud {backhaul} (rate only, no delay)"
    elif args.link or args.backhaul:
        refuse("--link and --backhaul shape the links of the --netns testbed only")
    else:
        bed, links = Testbed(log_dir=args.log_dir), "loopback"
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # each stops it as Ctrl-C does, even where SIGINT was ignored
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        with bed:
            print(f"splitexit testbed up; links: {links}; logs in {args.log_dir.resolve()}")
            for tier in Tier:
                extra = ""
                if isinstance(bed, NetnsTestbed):
                    extra = f"  metrics {bed.metrics_url(tier)}" + (f"  http {bed.http_url}" if tier is Tier.DEVICE else "")
                print(f"  {tier.value:<6} {bed.processes[tier].address:<21} log {bed.processes[tier].log_path}{extra}")
            print(f"device: {bed.device_address}   (Ctrl-C or SIGTERM stops every tier)", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("splitexit testbed: stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="splitexit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one tier (config: SPLITEXIT_<TIER>_* env, $SPLITEXIT_CONFIG YAML)")
    serve.add_argument("tier", choices=["device", "edge", "cloud"])
    serve.set_defaults(run=_serve)

    infer = commands.add_parser("infer", help="classify image files or texts through a running device")
    infer.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    infer.add_argument("--text", action="append", default=[], help="a text to classify (repeatable; needs a text --model)")
    infer.add_argument("--truncate", action="store_true", help="cut texts over the model's token limit instead of failing")
    infer.add_argument("--address", default="127.0.0.1:50051", help="the device's gRPC address")
    infer.add_argument("--model", default="", help="model name (default: the device's default)")
    infer.add_argument("--threshold", type=float, help="exit threshold at every exit, for these requests")
    infer.add_argument("--policy", default="", help="a device policy by name (splitee, dimee, ...; default: the model's)")
    infer.set_defaults(run=_infer)

    health = commands.add_parser("health", help="exit 0 iff the tier at ADDRESS reports SERVING (grpc.health.v1)")
    health.add_argument("address", nargs="?", default="127.0.0.1:50051")
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(run=_health)

    loadgen = commands.add_parser("loadgen", help="send real test images to a device at a steady rate (for dashboards)")
    loadgen.add_argument("--address", default="127.0.0.1:50051", help="the device's gRPC address")
    loadgen.add_argument("--rate", type=float, default=20.0, help="requests per second")
    loadgen.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0: until interrupted")
    loadgen.add_argument("--threshold", type=float, help="exit threshold at every exit (default: the tiers' own)")
    loadgen.add_argument("--model", default="", help="model name (default: the device's default)")
    loadgen.add_argument("--concurrency", type=int, default=64, help="most requests in flight")
    loadgen.add_argument("--report-every", type=float, default=10.0, help="seconds between summaries")
    loadgen.add_argument("--samples", type=Path, help="an .npz image pack (default: the 200 shipped test images)")
    loadgen.set_defaults(run=_loadgen)

    policy = commands.add_parser("policy", help="what a running device's policies have learned")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_commands.add_parser("show", help="arms, pulls, mean rewards, the best arm and its plan")
    show.add_argument("--address", default="127.0.0.1:50051", help="the device's gRPC address")
    show.add_argument("--model", default="", help="model name (default: the device's default)")
    show.add_argument("--policy", default="", help="policy name (default: the model's default)")
    show.set_defaults(run=_policy_show)

    testbed = commands.add_parser("testbed", help="run device, edge and cloud locally until Ctrl-C or SIGTERM")
    testbed.add_argument("--netns", action="store_true", help="each tier in a network namespace of its own (root)")
    testbed.add_argument("--link", choices=LINK_PROFILES, help="device-edge link profile (--netns; default: wifi)")
    testbed.add_argument("--backhaul", choices=LINK_PROFILES, help="edge-cloud link profile (--netns; default: wan)")
    testbed.add_argument("--log-dir", type=Path, default=Path(".cache/logs/testbed"), help="where the tiers log")
    testbed.set_defaults(run=_testbed)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.run(args)
