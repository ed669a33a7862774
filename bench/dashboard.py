"""The docs' picture of the Grafana dashboard, drawn from real data: ``python -m bench.dashboard``.

Starts the three tiers on loopback with their metrics ports, a real Prometheus
scraping them every second (``bench/local_prometheus.py``), and the load
generator sending the shipped Fashion-MNIST test images in three phases --
α = 0.95 at every exit, the tiers' own thresholds, α = 0.6 -- so that the
exit share, the offloaded bytes, the thresholds and the cost move. Then it asks
Prometheus for every panel's PromQL over the run (``/api/v1/query_range``)
and plots the panels, in the dashboard's layout, into ``docs/dashboard.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.axes import Axes  # noqa: E402

from bench.local_prometheus import (  # noqa: E402
    DASHBOARD,
    LocalPrometheus,
    PrometheusUnavailable,
    ensure_prometheus,
    local_config,
)
from splitexit import loadgen  # noqa: E402
from splitexit.samples import load_pack  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402
from splitexit.testbed import Testbed, free_port  # noqa: E402

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"
PHASES: tuple[tuple[str, float | None], ...] = (("α = 0.95", 0.95), ("tier thresholds", None), ("α = 0.6", 0.6))
RATE_WINDOW = "10s"
STEP_S = 2.0
GRID_COLUMNS = 24  # Grafana's grid width
# Grafana unit -> (scale, axis label)
UNITS = {"s": (1e3, "ms"), "percentunit": (100.0, "%"), "Bps": (1e-3, "kB/s"), "reqps": (1.0, "req/s")}


def run_traffic(rate: float, phase_s: float, address: str) -> list[tuple[str, float, float]]:
    """The phases, each ``phase_s`` seconds at ``rate``; returns (name, start, end) in Unix time."""
    images = load_pack()
    phases = []
    for name, threshold in PHASES:
        started = time.time()
        print(f"phase {name}: {phase_s:.0f} s at {rate:g} requests/s", flush=True)
        asyncio.run(loadgen.generate(address, images, rate, phase_s, threshold, report_every_s=phase_s + 1))
        phases.append((name, started, time.time()))
    return phases


def legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def panel_data(prom: LocalPrometheus, panel: dict[str, Any], start: float, end: float) -> list[tuple[str, list, list]]:
    """(legend, times relative to ``start``, values) of every series of every target of ``panel``."""
    series = []
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", RATE_WINDOW).replace("$model", ".*")
        for result in prom.query_range(expr, start, end, STEP_S):
            points = [(float(t) - start, float(v)) for t, v in result["values"] if math.isfinite(float(v))]
            if points:
                times, values = zip(*points, strict=True)
                series.append((legend(target.get("legendFormat", ""), result["metric"]), list(times), list(values)))
    return sorted(series, key=lambda s: s[0])


def draw(ax: Axes, panel: dict[str, Any], series: list[tuple[str, list, list]], phases: list, start: float) -> None:
    scale, unit = UNITS.get(panel["fieldConfig"]["defaults"].get("unit", ""), (1.0, ""))
    stacked = panel["fieldConfig"]["defaults"]["custom"].get("stacking", {}).get("mode") == "normal"
    ax.set_title(panel["title"], fontsize=9, loc="left")
    for _, phase_start, _ in phases[1:]:
        ax.axvline(phase_start - start, color="0.6", linewidth=0.8, linestyle=":")
    if stacked and series:
        grid = sorted({t for _, times, _ in series for t in times})
        stacks = [
            [dict(zip(times, values, strict=True)).get(t, 0.0) * scale for t in grid] for _, times, values in series
        ]
        ax.stackplot(grid, stacks, labels=[name for name, _, _ in series], alpha=0.8)
    else:
        for name, times, values in series:
            ax.plot(times, [v * scale for v in values], label=name, linewidth=1.2)
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_xlim(0, phases[-1][2] - start)
    ax.set_ylim(bottom=0)
    if series:
        ax.legend(fontsize=6, loc="best", ncol=2 if len(series) > 4 else 1, framealpha=0.6)


def render(prom: LocalPrometheus, phases: list[tuple[str, float, float]], output: Path) -> None:
    """Every panel of the dashboard, at its grid position, with the phases marked."""
    dashboard = json.loads(DASHBOARD.read_text())
    start, end = phases[0][1], phases[-1][2]
    panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    rows = sorted({p["gridPos"]["y"] for p in panels})
    figure = plt.figure(figsize=(20, 3.4 * len(rows)), layout="constrained")
    grid = figure.add_gridspec(len(rows), GRID_COLUMNS)
    for panel in panels:
        position = panel["gridPos"]
        row = rows.index(position["y"])
        ax = figure.add_subplot(grid[row, position["x"] : position["x"] + position["w"]])
        draw(ax, panel, panel_data(prom, panel, start, end), phases, start)
    phase_names = ", then ".join(f"{name} ({stop - begin:.0f} s)" for name, begin, stop in phases)
    figure.suptitle(
        f"{dashboard['title']}\nlocal testbed, real Fashion-MNIST test images; phases: {phase_names}; x: seconds",
        fontsize=12,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--phase-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()

    try:
        prometheus_binary, _ = ensure_prometheus()
    except PrometheusUnavailable as missing:
        sys.exit(f"make dashboard: {missing}")
    ports = {tier: free_port() for tier in Tier}
    metrics_ports = {tier: free_port() for tier in Tier}
    with Testbed(ports=ports, metrics_ports=metrics_ports) as bed:
        targets = {tier.value: f"127.0.0.1:{port}" for tier, port in metrics_ports.items()}
        with LocalPrometheus(prometheus_binary, local_config(targets, "1s"), free_port()) as prom:
            phases = run_traffic(args.rate, args.phase_seconds, bed.device_address)
            time.sleep(2.5)  # the last scrapes
            render(prom, phases, args.out)


if __name__ == "__main__":
    main()
