"""``make evaluate`` (``python -m lab.evaluate``): every policy replayed over the test streams, reported as the
papers do.

For each scenario of :data:`lab.scenarios.SCENARIOS` the outcomes at every
exit are computed once (and cached), then evaluated (:mod:`lab.policy_eval`)
with the device's own hyperparameters, cost model and chain (``DeviceSettings()``), so the
numbers are those of the live device. The tables are printed
(:mod:`lab.policy_tables`); a JSON report, the plots
(:mod:`lab.policy_plots`) and, with ``--page``, ``docs/results/policies.md`` follow.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lab import policy_isplitee, policy_plots, policy_tables
from lab.fashion_mnist import default_cache_dir
from lab.policy_eval import ScenarioResult, evaluate_scenario
from lab.policy_runs import Setup
from lab.results_pages import write_page
from lab.scenarios import DISTORTED, SCENARIOS, VALIDATION, ScenarioUnavailable, load_stream
from splitexit.device.settings import DeviceSettings
from splitexit.policies.chain import Chain
from splitexit.policies.replay import ExitStream
from splitexit.shared.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "bench" / "results" / "policies.json"
VALIDATION_DISTORTED = DISTORTED[1]
SWEPT = ("fmnist-clean", "fmnist-drift", "sentiment-imdb", "bbc-topic")  # the sweeps over o and λ run on these


def subset(stream: ExitStream, limit: int) -> ExitStream:
    """``limit`` samples drawn at random (seed 0), kept in stream order, so every phase stays."""
    if not 0 < limit < len(stream):
        return stream
    return stream.take(np.sort(np.random.default_rng(0).permutation(len(stream))[:limit]))


def run(
    scenarios: Sequence[str] | None = None,
    seeds: int = 5,
    limit: int = 0,
    sweeps: bool = True,
    plots_dir: Path | None = Path("docs/policies"),
    page: bool = False,
    models_dir: Path | None = None,
    json_path: Path = JSON_PATH,
) -> list[ScenarioResult]:
    """Evaluate ``scenarios`` (names; None: all), print the tables, write the JSON, plots and results page."""
    known = {scenario.name: scenario for scenario in SCENARIOS}
    distorted = scenarios is None or policy_isplitee.SCENARIO.name in scenarios
    scenarios = [name for name in scenarios if name != policy_isplitee.SCENARIO.name] if scenarios else None
    unknown = sorted(set(scenarios or ()) - set(known))
    if unknown:
        raise SystemExit(
            f"no scenario named {', '.join(unknown)}; choose from {', '.join([*known, policy_isplitee.SCENARIO.name])}"
        )
    if seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    settings = DeviceSettings()
    setup, models_dir = Setup(settings.policy, settings.costs), models_dir or settings.models_dir
    started = time.perf_counter()
    results = []
    for scenario in [known[name] for name in scenarios] if scenarios is not None else SCENARIOS:
        validation = VALIDATION[scenario.name]
        try:
            stream = subset(load_stream(scenario, models_dir, default_cache_dir()), limit)
            tuning = subset(load_stream(validation, models_dir, default_cache_dir()), limit)
        except ScenarioUnavailable as exc:
            print(f"skipping {scenario.name}: {exc}")
            continue
        chain = Chain.of(load_manifest(scenario.package_dir(models_dir)), settings.hosted.get(scenario.model))
        swept = sweeps and scenario.name in SWEPT
        result = evaluate_scenario(scenario, stream, (validation.name, tuning), chain, setup, seeds, swept)
        print(policy_tables.scenario_section(result), flush=True)
        results.append(result)
    distortions = i_splitee(setup, models_dir, seeds, limit) if distorted else []
    runtime_s = time.perf_counter() - started

    write_report(json_path, setup, seeds, limit, runtime_s, results, distortions)
    plots = policy_plots.draw(results, plots_dir) if plots_dir is not None and results else []
    for path in plots:
        print(f"plot: {path}")
    if page:
        body = policy_tables.page_body(results, setup, seeds, runtime_s, plots, ROOT / "docs" / "results")
        if distortions:
            body += "\n\n" + policy_isplitee.section(distortions)
        print(f"wrote {write_page('policies', 'Policies on the test streams', 'make evaluate', body)}")
    return results


def write_report(
    json_path: Path,
    setup: Setup,
    seeds: int,
    limit: int,
    runtime_s: float,
    results: list[ScenarioResult],
    distortions: list[policy_isplitee.DistortionResult],
) -> None:
    """The evaluation as JSON: its settings, every scenario's result and I-SplitEE's distortions."""
    report = {
        "params": setup.params.model_dump(mode="json"),
        "costs": setup.costs.model_dump(mode="json"),
        "seeds": seeds,
        "limit": limit,
        "i_splitee": [asdict(result) for result in distortions],
        "runtime_s": runtime_s,
        "scenarios": [asdict(result) for result in results],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"{len(results)} scenarios in {runtime_s:.0f} s; report: {json_path}")


def i_splitee(setup: Setup, models_dir: Path, seeds: int, limit: int) -> list[policy_isplitee.DistortionResult]:
    """I-SplitEE's setting (:mod:`lab.policy_isplitee`), printed; empty if its streams cannot be had."""
    test, validation = policy_isplitee.SCENARIO, VALIDATION_DISTORTED
    try:
        streams = [subset(load_stream(s, models_dir, default_cache_dir()), limit) for s in (test, validation)]
    except ScenarioUnavailable as exc:
        print(f"skipping {test.name}: {exc}")
        return []
    results = policy_isplitee.evaluate(*streams, test.phases, setup, seeds)
    print(policy_isplitee.section(results), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.evaluate", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"{', '.join([*(s.name for s in SCENARIOS), policy_isplitee.SCENARIO.name])}; "
        "repeat for several (default: all)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="random stream orders per policy")
    parser.add_argument("--limit", type=int, default=0, help="samples per scenario (0: all)")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the sweeps over o and λ")
    parser.add_argument("--plots", type=Path, default=Path("docs/policies"), help="where the PNG plots go")
    parser.add_argument("--page", action="store_true", help="write the tables to docs/results/policies.md")
    parser.add_argument("--models-dir", type=Path, help="model packages (default: the device's models_dir)")
    args = parser.parse_args(argv)
    run(
        scenarios=args.scenario,
        seeds=args.seeds,
        limit=args.limit,
        sweeps=not args.no_sweeps,
        plots_dir=args.plots,
        page=args.page,
        models_dir=args.models_dir,
    )


if __name__ == "__main__":
    main()
