"""``make evaluate`` on a tiny budget: the papers' table, the JSON report, the plots, the results page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab import evaluate, policy_tables
from lab.fashion_mnist import default_cache_dir
from lab.policy_eval import BUDGETS, CONVENTIONS, ScenarioResult
from lab.policy_runs import PolicyResult, Setup
from lab.scenarios import SCENARIOS, load_stream
from lab.tuning import budget_name
from splitexit.device.settings import DeviceSettings
from splitexit.policies.catalog import POLICY_NAMES, PolicyParams
from splitexit.policies.costs import CostSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


RELAYS = {"relay after 1", "relay after 2", "relay after 3"}  # after 4 or 5: the final layer's route
BANDITS = {"splitee", "splitee-s", "i-splitee", "splitee-d", "splitee-sw", "splitee-cd", "dimee", "dimee-sw"}
BANDITS |= {"dimee-router", "cascade"}


def test_evaluate_prints_the_table_and_writes_the_report_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = evaluate.run(
        scenarios=["fmnist-clean"],
        seeds=2,
        limit=300,
        sweeps=False,
        plots_dir=tmp_path / "plots",
        json_path=tmp_path / "policies.json",
    )
    printed = capsys.readouterr().out
    for convention in CONVENTIONS:
        assert f"| {convention}: policy | accuracy | drop (pts) | cost reduction |" in printed
    assert "| **splitee** |" in printed and "| oracle-split |" in printed and "| relay after 1 |" in printed
    assert (
        "Accuracy budget 0.5 pt (`accuracy-budget`): true drop" in printed and "Best online policy picked on" in printed
    )

    (result,) = results
    assert result.samples == 300 and not result.sweeps and result.validation == "fmnist-clean-val, 300 samples"
    for convention, policies in result.policies.items():
        check_policies(convention, policies, result)
    assert result.final_cost == pytest.approx({"cloud charged": 0.8, "cloud free": 0.6})
    # every bandit's regret against its own arms: cumulative, so never falling
    assert set(result.regret) == BANDITS
    assert result.regret_at[-1] == 300
    for curve in result.regret.values():
        assert all(later >= earlier - 1e-9 for earlier, later in zip(curve, curve[1:], strict=False)) and curve[-1] > 0

    report = json.loads((tmp_path / "policies.json").read_text())
    assert report["seeds"] == 2 and report["scenarios"][0]["name"] == "fmnist-clean"
    for name in ("regret.png", "frontier.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000

    plots = [tmp_path / "plots" / "regret.png"]
    body = policy_tables.page_body(results, Setup(PolicyParams(), CostSettings()), 2, 1.0, plots, tmp_path / "page")
    assert body.startswith("`make evaluate`") and "![regret](../plots/regret.png)" in body


def check_policies(convention: str, policies: list[PolicyResult], result: ScenarioResult) -> None:
    """One cost convention's rows: every policy once, tuned on validation, relays and baselines as they must be."""
    names = [r.policy for r in policies]
    oracles = {name for name in names if name.startswith("oracle-fixed")}
    accuracy = by_name_of(policies)["accuracy-budget"]
    assert accuracy.kind == "accuracy" and accuracy.shadow_share is not None and 0.0 < accuracy.shadow_share < 0.5
    assert accuracy.tuned.startswith("s=") and accuracy.validation is not None
    assert set(names) == set(POLICY_NAMES) - {"thresholds", "budget"} | {"oracle-split", "oracle-cascade"} | (
        RELAYS | oracles | {budget_name(share) for share in BUDGETS}
    )
    assert oracles, "some fixed α is within 0.5 pt of the final layer"
    by_name = dict(zip(names, policies, strict=True))
    assert by_name["fixed-thresholds"].tuned.startswith("α=") and by_name["budget ≤ 40 %"].tuned.startswith("η=")
    assert by_name["final-layer"].tuned == "" and by_name["oracle-split"].tuned == ""
    for relay in RELAYS:  # no early exit: the final layer's answers
        assert by_name[relay].drop_points == 0.0 and by_name[relay].tier_share["cloud"] == 1.0
    relay_cost = 1 - by_name["relay after 1"].cost_reduction
    assert relay_cost == pytest.approx(0.3 / 0.6 if convention == "cloud free" else 1.0)
    for r in policies:  # the gap is against the frontier of fixed α: none of those rows lies beyond it
        if r.policy.startswith("oracle-fixed"):
            assert r.frontier_gap == 0.0
    final = policies[names.index("final-layer")]
    assert final.drop_points == 0.0 and final.cost_reduction == 0.0 and final.tier_share["cloud"] == 1.0
    device = policies[names.index("all-device")]
    assert device.tier_share["device"] == 1.0
    assert device.cost_reduction == pytest.approx(1 - 0.2 / result.final_cost[convention])
    for r in policies:
        assert sum(r.tier_share.values()) == pytest.approx(1.0)


def test_drift_stream_is_reported_per_phase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Per phase, every policy: accuracy, drop and cost add up to the whole stream's; bandits get a regret per phase;
    each online policy's margin over the fixed α tuned on validation."""
    (result,) = evaluate.run(
        scenarios=["fmnist-shift-back"], seeds=1, limit=300, sweeps=False, plots_dir=None, json_path=tmp_path / "p.json"
    )
    printed = capsys.readouterr().out
    assert "| policy | phase | accuracy | drop (pts) | cost reduction | regret in phase |" in printed
    assert result.phases == ["clean", "blur σ=1.5", "clean again"]
    stream = evaluate.subset(load_stream(SCENARIOS[3], DeviceSettings().models_dir, default_cache_dir()), 300)
    weights = np.bincount(stream.phases) / len(stream)
    for r in result.policies["cloud charged"]:
        assert [p.phase for p in r.phases] == result.phases
        assert float(weights @ [p.accuracy for p in r.phases]) == pytest.approx(r.accuracy)
        assert float(weights @ [p.cost_reduction for p in r.phases]) == pytest.approx(r.cost_reduction)
        assert (r.phases[0].regret is not None) == (r.policy in result.regret)
    assert "Against the fixed α tuned on validation (α=" in printed and "accuracy-budget " in printed
    assert (
        "Picked on validation: " in printed and "Target (every phase ≤ 1 pt and no dearer than the fixed α)" in printed
    )
    assert "| final-layer | blur σ=1.5 |" in printed and "| all-device | clean again |" in printed


def by_name_of(policies: list[PolicyResult]) -> dict[str, PolicyResult]:
    return {r.policy: r for r in policies}


def test_i_splitee_is_replayed_per_distortion_on_a_device_hosting_the_whole_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate.run(scenarios=["fmnist-distortions"], seeds=1, limit=600, plots_dir=None, json_path=tmp_path / "p.json")
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "p.json").read_text())
    distortions = report["i_splitee"]
    assert [d["distortion"] for d in distortions] == [
        "noise σ=0.1",
        "noise σ=0.2",
        "noise σ=0.3",
        "blur σ=0.5",
        "blur σ=1",
        "blur σ=1.5",
    ]
    for d in distortions:
        rows = {r["policy"]: r for r in d["rows"]}
        assert set(rows) == {"device only", "fixed-thresholds", "i-splitee", "splitee-s"}
        assert rows["device only"]["tier_share"]["device"] == 1.0 and rows["device only"]["cost_reduction"] == 0.0
        assert 0.0 <= d["same_routes"] <= 1.0
    assert any(d["same_routes"] < 0.9 for d in distortions), "I-SplitEE should decide unlike SplitEE-S somewhere"
    assert "| blur σ=1.5 | i-splitee |" in printed


def test_evaluate_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no scenario named nope"):
        evaluate.run(scenarios=["nope"], json_path=tmp_path / "policies.json")
