"""The plots of ``make evaluate`` (PNG, matplotlib's Agg backend): regret, and accuracy vs cost."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lab.policy_eval import CONVENTIONS, ScenarioResult  # noqa: E402
from lab.policy_tables import TARGET  # noqa: E402

COLUMNS = 2
FLOOR_POINTS = 3.0  # the frontier's accuracy axis reaches this far below the final layer


def _panels(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = (count + COLUMNS - 1) // COLUMNS
    columns = min(count, COLUMNS)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.6 * rows), squeeze=False)
    panels = list(axes.flat)
    for unused in panels[count:]:
        unused.set_visible(False)
    return figure, panels[:count]


def plot_regret(results: Sequence[ScenarioResult], path: Path) -> Path:
    """Cumulative pseudo-regret vs samples of every bandit, averaged over the stream orders."""
    figure, panels = _panels(len(results))
    for result, ax in zip(results, panels, strict=True):
        for policy, curve in result.regret.items():
            ax.plot(result.regret_at, curve, label=policy, linestyle="--" if policy.startswith("dimee") else "-")
        ax.set_title(f"{result.name} ({len(result.phases)} phase{'s' if len(result.phases) > 1 else ''})")
        ax.set_xlabel("samples")
        ax.set_ylabel("cumulative regret vs its best fixed arm" + (" of each phase" if len(result.phases) > 1 else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("Regret of each bandit against its own best fixed arm (mean over orders, cloud charged)")
    figure.tight_layout()
    return _save(figure, path)


def plot_frontier(results: Sequence[ScenarioResult], path: Path) -> Path:
    """Accuracy vs cost reduction (cloud charged) of every policy, with the sweeps over o and λ as lines.

    The accuracy axis spans ``FLOOR_POINTS`` below the final layer; a policy further down is drawn on
    the floor as a down-pointing triangle.
    """
    figure, panels = _panels(len(results))
    names = list(dict.fromkeys(r.policy for result in results for r in result.policies[CONVENTIONS[0]]))
    colours = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
    for result, ax in zip(results, panels, strict=True):
        final = 100 * result.final_accuracy
        floor = final - FLOOR_POINTS
        ax.axvspan(TARGET[0], 100, color="tab:green", alpha=0.06)
        ax.axhline(final, color="grey", linewidth=0.8)
        ax.axhline(final - TARGET[1], color="grey", linewidth=0.8, linestyle=":")
        frontier = result.frontier[CONVENTIONS[0]]
        ax.plot(
            [100 * c for _, _, c in frontier],
            [max(final - d, floor) for _, d, c in frontier],
            color="black",
            linewidth=1.0,
            alpha=0.6,
            label="fixed α at every exit (test)",
        )
        for knob, marker in (("o", "."), ("λ", "x")):
            for policy in dict.fromkeys(p.policy for p in result.sweeps if p.knob == knob):
                points = [p for p in result.sweeps if p.knob == knob and p.policy == policy]
                ax.plot(
                    [100 * p.cost_reduction for p in points],
                    [max(100 * p.accuracy, floor) for p in points],
                    marker=marker,
                    linewidth=0.8,
                    alpha=0.45,
                    color=colours[policy],
                )
        _draw_policies(ax, result, floor, colours)
        ax.set_ylim(floor - 0.1, max(final, *(100 * r.accuracy for r in result.policies[CONVENTIONS[0]])) + 0.3)
        ax.set_xlim(-3, 100)
        ax.set_title(result.name)
        ax.set_xlabel("cost reduction vs final layer, cloud charged (%)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8)
    figure.suptitle(
        "Accuracy vs cost; circles learn, diamonds keep a budget, squares are fixed, stars are oracles; black: "
        "fixed α;\n"
        f"thin lines: o (•) and λ (x) swept. "
        f"Grey line: final layer; dotted: {TARGET[1]:g} point below; green: ≥ {TARGET[0]:g} % saved"
    )
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(figure, path)


def _draw_policies(ax: plt.Axes, result: ScenarioResult, floor: float, colours: dict[str, Any]) -> None:
    """Each policy (cloud charged) as a marker of its kind; one below the accuracy floor as a triangle on it."""
    for r in result.policies[CONVENTIONS[0]]:
        if r.policy.startswith("relay"):  # as dear as the final layer with the cloud charged
            continue
        below = 100 * r.accuracy < floor
        marker = (
            "v" if below else {"learned": "o", "budget": "D", "accuracy": "P", "baseline": "s", "oracle": "*"}[r.kind]
        )
        ax.scatter(
            100 * r.cost_reduction,
            max(100 * r.accuracy, floor),
            marker=marker,
            s=45,
            zorder=3,
            color=colours[r.policy],
            edgecolors="black",
            linewidths=0.5,
            label=r.policy,
        )


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def draw(results: Sequence[ScenarioResult], folder: Path) -> list[Path]:
    """Both plots into ``folder``; their paths."""
    return [plot_regret(results, folder / "regret.png"), plot_frontier(results, folder / "frontier.png")]
