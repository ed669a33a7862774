"""``make faults``: every fault scenario, the fuzz run, a soak and the slow-link run; JSON, a figure, the results page.

Runs, in one go on this machine: :data:`bench.faults.FAULTS` on a namespace
testbed, the hostile-message fuzz (:mod:`bench.hostile`) and a soak
(:mod:`bench.soak`) on a loopback testbed, the fuzz again on one serving mutual TLS, and the slow-link run
(:mod:`bench.link_costs`) on a second namespace testbed. Writes
``bench/results/faults.json``, ``docs/link_costs.png`` and ``docs/results/faults.md``.
Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from bench.faults import FAULTS, ScenarioResult, run_scenario
from bench.hostile import FuzzReport, fuzzed_testbed, run_fuzz
from bench.link_costs import LinkCostRun, link_cost_settings, plot, run_link_cost_shift
from bench.soak import SoakReport, run_soak
from lab.results_pages import PAGES, write_page
from splitexit.netns import NetnsTestbed
from splitexit.samples import load_pack
from splitexit.shared.manifest import load_manifest
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tiers import Tier

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "faults.json"
FIGURE = ROOT / "docs" / "link_costs.png"
DRAIN_GRACE_S = "1"


def fault_table(results: list[ScenarioResult]) -> str:
    rows = [
        "| fault (4 s, under 20 requests/s) | sent | answered | degraded (flagged) | failed, by status | past deadline "
        "| answered during the fault | full answers back after SERVING | NOT_SERVING before refusing |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        failed = ", ".join(f"{code} {n}" for code, n in sorted(r.failed.items())) or "0"
        recovery = f"{r.recovery_s:.2f} s" if r.recovery_s is not None else "–"
        drain = f"{r.not_serving_before_refusal_s:.2f} s" if r.not_serving_before_refusal_s is not None else "–"
        rows.append(
            f"| {r.fault} | {r.sent} | {r.answered} | {r.degraded} | {failed} | {r.late} "
            f"| {100 * r.answered_during_fault:.1f} % | {recovery} | {drain} |"
        )
    return "\n".join(rows)


def fuzz_lines(report: FuzzReport, transport: str) -> str:
    statuses = ", ".join(f"{code} {n:,}" for code, n in sorted(report.by_status.items(), key=lambda item: -item[1]))
    delay = report.delay_ms()
    return (
        f"Fuzz: {report.messages:,} answers to hostile messages over all {len(report.seconds)} RPCs of the tiers "
        f"({transport}): {statuses}; "
        f"INTERNAL or UNKNOWN: {len(report.bad)}; no tier crashed. A good image sent every 50 ms meanwhile (from "
        "its own "
        f"process) was delayed, against its median without the fuzz, by {delay['p50']:.1f} ms at the median, "
        f"{delay['p99']:.1f} ms at p99 and {delay['max']:.1f} ms at most; {report.good_failed} good requests failed."
    )


def soak_lines(report: SoakReport) -> str:
    growth = report.growth()
    tiers = "; ".join(
        f"{tier} {g['rss_mb_after_warmup']:.0f} MB {g['rss_mb_growth']:+.1f} MB, {g['fds_after_warmup']:.0f} fds "
        f"{g['fds_growth']:+.0f}"
        for tier, g in growth.items()
    )
    answered = sum(o.answered for o in report.outcomes)
    return (
        f"Soak: {report.seconds:.0f} s at 40 requests/s ({len(report.outcomes):,} sent, {answered:,} answered). After "
        f"{report.warmup_s:.0f} s of warm-up, resident memory and open descriptors, and the most either grew "
        f"since: {tiers}."
    )


def link_lines(run: LinkCostRun) -> str:
    shares = [100 * run.device_share(phase, 150) for phase in range(3)]
    costs = [run.cost_in(phase) for phase in range(3)]
    return (
        "With measured costs, the device-edge link's cost followed its transfer time "
        f"({costs[0]:.3f} → {costs[1]:.2f} → {costs[2]:.3f}), and `splitee-sw` moved answers onto the device while the "
        f"link was slow: the device answered {shares[0]:.0f} % → {shares[1]:.0f} % → {shares[2]:.0f} % of the last 150 "
        f"samples of each phase.\n\n![a slow link moves answers onto the device]({os.path.relpath(FIGURE, PAGES)})"
    )


def run_all(soak_s: float) -> dict[str, object]:
    images = load_pack()
    manifest = load_manifest(DEFAULT_MODELS_DIR / "fmnist-cnn")
    activations = {str(block): [1, *manifest.block(block).input.per_sample_shape()] for block in (3, 4, 5, 6)}
    settings = {tier: {"drain_grace_s": DRAIN_GRACE_S} for tier in Tier}
    with NetnsTestbed(settings=settings, log_dir=Path(".cache/logs/faults")) as bed:
        scenarios = [run_scenario(bed, fault, images) for fault in FAULTS]
    with fuzzed_testbed(Path(".cache/logs/fuzz"), tls=False) as (bed, dial):
        fuzz = run_fuzz(dial, images[0].png, activations)
        pids = {tier.value: process.process.pid for tier, process in bed.processes.items()}
        soak = run_soak(bed.device_address, pids, images, soak_s)
    with fuzzed_testbed(Path(".cache/logs/fuzz-tls"), tls=True) as (_, dial):
        fuzz_tls = run_fuzz(dial, images[0].png, activations)
    with NetnsTestbed(settings=link_cost_settings(), log_dir=Path(".cache/logs/link-costs")) as bed:
        link = run_link_cost_shift(bed, images)
    plot(link, FIGURE)
    return {"scenarios": scenarios, "fuzz": fuzz, "fuzz_tls": fuzz_tls, "soak": soak, "link": link}


def page_body(results: dict[str, object], runtime_s: float) -> str:
    header = (
        f"`make faults` ({runtime_s:.0f} s on this machine) runs each fault on three tiers in their own network "
        "namespaces under steady load: 20 requests/s, each with a 1 s deadline, every other one asking for the final "
        "exit (so it needs the edge and the cloud); 2 s of normal traffic, 4 s of fault, then the fix and 4 s more. "
        "A drained tier had `drain_grace_s` = 1. *Full answers back after SERVING*: from the moment the recovered tier "
        "(or the link) was back, to the first request that got a full answer through it."
    )
    parts = [
        header,
        fault_table(results["scenarios"]),
        fuzz_lines(results["fuzz"], "plaintext"),  # type: ignore[arg-type]
        fuzz_lines(results["fuzz_tls"], "mutual TLS, with the device's bearer token"),  # type: ignore[arg-type]
        soak_lines(results["soak"]),
        link_lines(results["link"]),
    ]  # type: ignore[arg-type]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults_report", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--soak-s", type=float, default=180.0, help="seconds of soak")
    args = parser.parse_args()
    started = time.perf_counter()
    results = run_all(args.soak_s)
    runtime_s = time.perf_counter() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({name: _plain(value) for name, value in results.items()}, indent=1, default=str))
    page = write_page("faults", "Faults, fuzz and soak", "make faults", page_body(results, runtime_s))
    print(f"wrote {RESULTS}, {FIGURE} and {page} ({runtime_s:.0f} s)")


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
