"""The ``splitexit`` command: serve a tier, classify images and texts, generate load, show what policies learned."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from splitexit.link_profiles import LINK_PROFILES
from splitexit.results import message_json
from splitexit.shared.tiers import Tier

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from splitexit.testbed import Testbed


def _serve(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from splitexit.shared.manifest import PackageError
    from splitexit.shared.security import TlsNotConfigured

    if args.tier == "device":
        from splitexit.device.server import serve
    elif args.tier == "edge":
        from splitexit.edge.server import serve
    else:
        from splitexit.cloud.server import serve
    try:
        asyncio.run(serve())
    except (PackageError, TlsNotConfigured) as exc:  # a package failed its checks, or no TLS: one line
        sys.exit(f"splitexit serve {args.tier}: refusing to start: {exc}")
    except ValidationError as exc:  # a setting out of range: one line per setting, no traceback
        problems = "; ".join(_setting_problem(error) for error in exc.errors())
        sys.exit(f"splitexit serve {args.tier}: refusing to start: {problems}")


def _setting_problem(error: ErrorDetails) -> str:
    """One pydantic error as ``setting: what is wrong`` (no setting named where the check spans several)."""
    message = error["msg"].removeprefix("Value error, ")
    return f"{'.'.join(map(str, error['loc']))}: {message}" if error["loc"] else message


def _package(args: argparse.Namespace) -> None:
    try:
        from splitexit.packaging import PackagingError
        from splitexit.packaging.command import run
    except ImportError as exc:  # torch, onnx or tqdm is not installed
        missing = exc.name or exc
        sys.exit(
            f"splitexit package: needs torch, onnx and tqdm ({missing} is missing): pip install 'splitexit[package]'"
        )
    try:
        print(run(args.target, args.out), flush=True)
    except PackagingError as exc:
        sys.exit(f"splitexit package: {exc}")


def _infer(args: argparse.Namespace) -> None:
    from splitexit import infer_cli

    sys.exit(infer_cli.main(args))


def _models(args: argparse.Namespace) -> None:
    from splitexit.client import Client
    from splitexit.infer_cli import client_options
    from splitexit.results import ClientError

    try:
        with Client(args.address, **client_options(args)) as client:
            listing = client.list_models()
    except ClientError as exc:
        sys.exit(f"splitexit models: {args.address}: {exc}")
    default = listing.default_model
    for info in listing.models:
        if args.json:
            print(json.dumps(message_json(info.message)))
            continue
        prep = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.preprocessing.items())
        mark = " (default)" if info.name == default else ""
        print(
            f"{info.name}{mark}: {info.task}, {info.num_blocks} blocks, {len(info.labels)} labels; "
            f"{info.input_kind}: {prep}"
        )


def _health(args: argparse.Namespace) -> None:
    from splitexit.client import is_serving
    from splitexit.infer_cli import client_options

    serving = asyncio.run(is_serving(args.address, args.timeout, client_options(args)["tls"]))
    print(f"{args.address}: {'SERVING' if serving else 'NOT SERVING'}")
    sys.exit(0 if serving else 1)


def _loadgen(args: argparse.Namespace) -> None:
    from splitexit import loadgen
    from splitexit.infer_cli import client_options
    from splitexit.samples import SAMPLE_PACK, load_pack

    images = load_pack(args.samples or SAMPLE_PACK)
    print(
        f"Sending {len(images)} Fashion-MNIST test images round-robin to {args.address} at {args.rate:g}/s", flush=True
    )
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
                client_options=client_options(args),
            )
        )
    except KeyboardInterrupt:
        pass


def _policy_show(args: argparse.Namespace) -> None:
    from splitexit.policy_show import fetch, format_state
    from splitexit.results import ClientError

    try:
        state = asyncio.run(fetch(args.address, args.model, args.policy))
    except ClientError as exc:
        sys.exit(f"splitexit policy show: {args.address}: {exc}")
    print(format_state(state))


def _certs(args: argparse.Namespace) -> None:
    from splitexit.certs import write_dev_pki

    pki = write_dev_pki(args.out_dir, days=args.days)
    print(f"CA {pki.ca.cert}; " + ", ".join(f"{name} {c.cert}" for name, c in pki.identities.items()))


def _testbed(args: argparse.Namespace) -> None:
    from splitexit.netns import NetnsTestbed, unavailable_reason

    def refuse(message: str) -> NoReturn:
        print(f"splitexit testbed: {message}", file=sys.stderr)
        sys.exit(2)

    if args.netns:
        reason = unavailable_reason() or ("--models-dir serves the loopback testbed only" if args.models_dir else None)
        if reason is not None:
            refuse(f"--netns: {reason}")
        link, backhaul = args.link or "wifi", args.backhaul or "wan"
        shaped = {Tier.DEVICE.link: (link, args.delay_ms), Tier.EDGE.link: (backhaul, args.backhaul_delay_ms)}
        delays = {name: ms for name, (_, ms) in shaped.items() if ms}
        try:
            bed: Testbed | NetnsTestbed = NetnsTestbed(link, backhaul, http=True, log_dir=args.log_dir, delays=delays)
        except ValueError as exc:
            refuse(str(exc))
        links = ", ".join(
            f"{name} {profile}" + (f" + {ms:g} ms each way" if ms else "") for name, (profile, ms) in shaped.items()
        )
    elif args.link or args.backhaul or args.delay_ms or args.backhaul_delay_ms:
        refuse("--link, --backhaul and their delays shape the links of the --netns testbed only")
    elif args.models_dir and not args.models_dir.is_dir():
        refuse(f"--models-dir {args.models_dir} is not a folder")
    else:
        bed, links = _loopback_testbed(args), "loopback" + (" (mutual TLS)" if args.tls_dir else "")
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # each stops it as Ctrl-C does, even where SIGINT was ignored
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        with bed:
            print(f"splitexit testbed up; links: {links}; logs in {args.log_dir.resolve()}")
            for tier in Tier:
                extra = ""
                if isinstance(bed, NetnsTestbed):
                    extra = f"  metrics {bed.metrics_url(tier)}" + (
                        f"  http {bed.http_url}" if tier is Tier.DEVICE else ""
                    )
                print(f"  {tier.value:<6} {bed.processes[tier].address:<21} log {bed.processes[tier].log_path}{extra}")
            print(f"device: {bed.device_address}   (Ctrl-C or SIGTERM stops every tier)", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("splitexit testbed: stopped")


def _loopback_testbed(args: argparse.Namespace) -> Testbed:
    """Three tiers on loopback ports from ``--port``, serving ``--models-dir`` (polled every ``--model-poll-s``)."""
    from splitexit.testbed import Testbed

    ports = {tier: args.port + i for i, tier in enumerate(Tier)}
    served = {"model_poll_s": str(args.model_poll_s)} | (
        {"models_dir": str(args.models_dir)} if args.models_dir else {}
    )
    return Testbed(ports=ports, settings={tier: served for tier in Tier}, log_dir=args.log_dir, tls_dir=args.tls_dir)


def _client_options(command: argparse.ArgumentParser) -> None:
    """``--address``, ``--timeout`` and the TLS / token options of the commands that call a device."""
    command.add_argument("--address", default="127.0.0.1:50051", help="the device's gRPC address")
    command.add_argument("--timeout", type=float, default=30.0, help="seconds each request may take (default 30)")
    _tls_options(command)


def _tls_options(command: argparse.ArgumentParser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--token``."""
    command.add_argument(
        "--tls-ca", type=Path, help="PEM file of the CA that signed the device's certificate (turns TLS on)"
    )
    command.add_argument("--tls-cert", type=Path, help="PEM client certificate, for mutual TLS")
    command.add_argument("--tls-key", type=Path, help="PEM key of --tls-cert")
    command.add_argument(
        "--token", default=os.environ.get("SPLITEXIT_TOKEN"), help="bearer token (default: $SPLITEXIT_TOKEN)"
    )


def _add_client_commands(commands: Any) -> None:
    """``splitexit infer`` and ``splitexit models``."""
    infer = commands.add_parser(
        "infer",
        help="classify image files, folders, globs or texts through a running device",
        description=infer_cli_doc(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    infer.add_argument("inputs", nargs="*", metavar="PATH", help="image files, folders (searched recursively) or globs")
    infer.add_argument(
        "--text", action="append", default=[], help="a text to classify (repeatable; needs a text --model)"
    )
    infer.add_argument(
        "--truncate", action="store_true", help="cut texts over the model's token limit instead of failing"
    )
    _client_options(infer)
    infer.add_argument("--model", default="", help="model name (default: the device's default)")
    infer.add_argument("--threshold", type=float, help="exit threshold at every exit, for these requests")
    infer.add_argument(
        "--policy", default="", help="a device policy by name (splitee, dimee, ...; default: the model's)"
    )
    infer.add_argument("--top-k", type=int, default=0, help="classes to show per answer (0: the device's default, 5)")
    infer.add_argument("--concurrency", type=int, default=16, help="samples in flight at once (default 16)")
    infer.add_argument(
        "--batch", type=int, default=0, metavar="N", help="send N inputs per InferBatch message (0: stream them)"
    )
    infer.add_argument(
        "--json", action="store_true", help="one JSON object per line on stdout (the HTTP answer + input)"
    )
    infer.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="a progress bar on stderr (default: on a terminal)"
    )
    infer.set_defaults(run=_infer)

    models = commands.add_parser("models", help="the models a device serves and how to call them (Device.ListModels)")
    _client_options(models)
    models.add_argument("--json", action="store_true", help="each model's ModelMetadata as one JSON object per line")
    models.set_defaults(run=_models)


def _add_testbed_and_package_commands(commands: Any) -> None:
    """``splitexit testbed`` and ``splitexit package``."""
    testbed = commands.add_parser("testbed", help="run device, edge and cloud locally until Ctrl-C or SIGTERM")
    testbed.add_argument("--netns", action="store_true", help="each tier in a network namespace of its own (root)")
    testbed.add_argument("--link", choices=LINK_PROFILES, help="device-edge link profile (--netns; default: wifi)")
    testbed.add_argument("--backhaul", choices=LINK_PROFILES, help="edge-cloud link profile (--netns; default: wan)")
    testbed.add_argument(
        "--delay-ms", type=float, default=0.0, help="device-edge one-way delay, by a delay proxy (--netns; default 0)"
    )
    testbed.add_argument(
        "--backhaul-delay-ms", type=float, default=0.0, help="edge-cloud one-way delay (--netns; default 0)"
    )
    testbed.add_argument("--log-dir", type=Path, default=Path(".cache/logs/testbed"), help="where the tiers log")
    testbed.add_argument("--tls-dir", type=Path, help="mutual TLS with the certificates `splitexit certs` wrote there")
    testbed.add_argument("--models-dir", type=Path, help="the packages every tier serves (default: the repo's models/)")
    testbed.add_argument(
        "--model-poll-s", type=float, default=0.0, help="look for new or changed packages this often (0: only at start)"
    )
    testbed.add_argument(
        "--port", type=int, default=50051, help="the device's port; the edge and cloud take the next two"
    )
    testbed.set_defaults(run=_testbed)

    package = commands.add_parser(
        "package", help="check an early-exit network against ONNX and write it as a model package (needs [package])"
    )
    package.add_argument(
        "target", metavar="FILE.py:FUNCTION", help="a function returning a splitexit.packaging.EarlyExitNetwork"
    )
    package.add_argument("--out", type=Path, required=True, help="the package folder to write, e.g. models/NAME")
    package.set_defaults(run=_package)


def infer_cli_doc() -> str:
    from splitexit import infer_cli

    return infer_cli.__doc__ or ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="splitexit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one tier (config: SPLITEXIT_<TIER>_* env, $SPLITEXIT_CONFIG YAML)")
    serve.add_argument("tier", choices=["device", "edge", "cloud"])
    serve.set_defaults(run=_serve)

    _add_client_commands(commands)

    health = commands.add_parser("health", help="exit 0 iff the tier at ADDRESS reports SERVING (grpc.health.v1)")
    health.add_argument("address", nargs="?", default="127.0.0.1:50051")
    health.add_argument("--timeout", type=float, default=2.0)
    _tls_options(health)
    health.set_defaults(run=_health)

    loadgen = commands.add_parser("loadgen", help="send real test images to a device at a steady rate (for dashboards)")
    _client_options(loadgen)
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

    _add_testbed_and_package_commands(commands)

    certs = commands.add_parser("certs", help="write a development CA and device/edge/cloud/client certificates")
    certs.add_argument("out_dir", type=Path, help="folder for ca.pem, <name>.pem and <name>-key.pem")
    certs.add_argument("--days", type=int, default=365, help="how long the certificates are valid")
    certs.set_defaults(run=_certs)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.run(args)
