"""``make evaluate`` on a tiny budget: the papers' table, the JSON report, the plots, the README section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import evaluate, policy_tables
from lab.policy_eval import CONVENTIONS, Setup
from lab.readme import replace_section
from splitexit.policies.catalog import POLICY_NAMES, PolicyParams
from splitexit.policies.costs import CostSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_evaluate_prints_the_table_and_writes_the_report_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = evaluate.run(
        scenarios=["fmnist-clean"], seeds=2, limit=300, sweeps=False, plots_dir=tmp_path / "plots",
        json_path=tmp_path / "policies.json",
    )  # fmt: skip
    printed = capsys.readouterr().out
    for convention in CONVENTIONS:
        assert f"| {convention}: policy | accuracy | drop (pts) | cost reduction |" in printed
    assert "| **splitee** |" in printed and "| oracle-split |" in printed

    (result,) = results
    assert result.samples == 300 and not result.sweeps
    for convention, policies in result.policies.items():
        names = [r.policy for r in policies]
        assert set(names) == set(POLICY_NAMES) - {"thresholds"} | {"oracle-split", "oracle-cascade"}
        final = policies[names.index("final-layer")]
        assert final.drop_points == 0.0 and final.cost_reduction == 0.0 and final.tier_share["cloud"] == 1.0
        device = policies[names.index("all-device")]
        assert device.tier_share["device"] == 1.0
        assert device.cost_reduction == pytest.approx(1 - 0.2 / result.final_cost[convention])
        for r in policies:
            assert sum(r.tier_share.values()) == pytest.approx(1.0)
    assert result.final_cost == pytest.approx({"cloud charged": 0.8, "cloud free": 0.6})
    # the split bandits' regret: one curve each, cumulative, and random's is the worst by the end
    assert set(result.regret) == {"splitee", "splitee-s", "i-splitee", "random-split"}
    assert result.regret_at[-1] == 300
    assert result.regret["random-split"][-1] > result.regret["splitee-s"][-1] > 0

    report = json.loads((tmp_path / "policies.json").read_text())
    assert report["seeds"] == 2 and report["scenarios"][0]["name"] == "fmnist-clean"
    for name in ("regret.png", "frontier.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000

    readme = "intro\n<!-- results:policies -->\nstale numbers\n<!-- /results:policies -->\nrest\n"
    plots = [tmp_path / "plots" / "regret.png"]
    section = policy_tables.readme_section(results, Setup(PolicyParams(), CostSettings()), 2, 1.0, plots, tmp_path)
    updated = replace_section(readme, "policies", section)
    assert updated.startswith("intro\n<!-- results:policies -->\n`make evaluate`") and updated.endswith("rest\n")
    assert "stale numbers" not in updated and "![regret](plots/regret.png)" in updated


def test_evaluate_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no scenario named nope"):
        evaluate.run(scenarios=["nope"], json_path=tmp_path / "policies.json")
