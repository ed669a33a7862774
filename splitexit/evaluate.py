"""``splitexit evaluate``: every policy replayed over the scenarios' test streams, reported as the papers do.

For each scenario of :data:`splitexit.scenarios.SCENARIOS` the outcomes at every
exit are computed once (and cached), then evaluated (:mod:`splitexit.policy_eval`)
with the device's own hyperparameters (``DeviceSettings().policy``), so the
numbers are those of the live device. The tables are printed
(:mod:`splitexit.policy_tables`); a JSON report, the plots
(:mod:`splitexit.policy_plots`) and, on request, the README's section follow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from device.settings import DeviceSettings
from shared.fashion_mnist import default_cache_dir
from shared.manifest import load_manifest
from shared.replay import ExitStream
from splitexit import policy_plots, policy_tables
from splitexit.policy_eval import ScenarioResult, evaluate_scenario
from splitexit.scenarios import SCENARIOS, ScenarioUnavailable, load_stream

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "bench" / "results" / "policies.json"


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
    readme: bool = False,
    models_dir: Path | None = None,
    json_path: Path = JSON_PATH,
) -> list[ScenarioResult]:
    """Evaluate ``scenarios`` (names; None: all), print the tables, write the JSON, plots and README section."""
    known = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = sorted(set(scenarios or ()) - set(known))
    if unknown:
        raise SystemExit(f"no scenario named {', '.join(unknown)}; choose from {', '.join(known)}")
    if seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    settings = DeviceSettings()
    params, models_dir = settings.policy, models_dir or settings.models_dir
    started = time.perf_counter()
    results = []
    for scenario in [known[name] for name in scenarios] if scenarios else SCENARIOS:
        try:
            stream = subset(load_stream(scenario, models_dir, default_cache_dir()), limit)
        except ScenarioUnavailable as exc:
            print(f"skipping {scenario.name}: {exc}")
            continue
        chain = params.chain(load_manifest(models_dir / scenario.model))
        result = evaluate_scenario(scenario, stream, chain, params, seeds, sweeps)
        print(policy_tables.scenario_section(result), flush=True)
        results.append(result)
    runtime_s = time.perf_counter() - started

    report = {"params": params.model_dump(mode="json"), "seeds": seeds, "limit": limit,
              "runtime_s": runtime_s, "scenarios": [asdict(result) for result in results]}  # fmt: skip
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(f"{len(results)} scenarios in {runtime_s:.0f} s; report: {json_path}")
    plots = policy_plots.draw(results, plots_dir) if plots_dir is not None and results else []
    for path in plots:
        print(f"plot: {path}")
    if readme:
        from bench.readme import replace_section

        path = ROOT / "README.md"
        section = policy_tables.readme_section(results, params, seeds, runtime_s, plots, ROOT)
        path.write_text(replace_section(path.read_text(), "policies", section))
        print(f"updated {path}")
    return results
