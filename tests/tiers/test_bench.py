"""`make bench` runs end to end (a quick pass) and its report renders into docs/results/bench.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.triton import triton_python, unavailable_reason
from bench.workers import ROUNDS
from lab.bench_tables import STAGE_NAMES, bench_section


def test_the_benchmark_runs_and_its_report_renders(tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    subprocess.run([sys.executable, "-m", "bench.serving", "--quick", "--out", str(out)], check=True, timeout=600)
    report = json.loads(out.read_text())
    exits = {name: path["exit_block"] for name, path in report["paths"].items()}
    assert exits == {
        "fmnist-cnn → device": 1,
        "fmnist-cnn → edge": 3,
        "fmnist-cnn → cloud": 6,
        "minilm-sentiment → device": 1,
        "minilm-sentiment → edge": 3,
        "minilm-sentiment → cloud": 6,
    }
    large = {name: path["exit_block"] for name, path in report["large_model_paths"].items()}
    assert large == {"mpnet-sentiment → device": 1, "mpnet-sentiment → edge": 5, "mpnet-sentiment → cloud": 12}
    package = report["large_model_package"]["mpnet-sentiment"]
    assert package["slices"] == 12 and package["seconds"] > 0 and package["megabytes"] > 100
    every_path = [*report["paths"].values(), *report["large_model_paths"].values()]
    assert all(path["served_over_bare"] > 0 and path["floor_ms"] > 0 for path in every_path)
    assert set(report["throughput"]) == set(report["unbatched"]) and all(v > 0 for v in report["throughput"].values())
    int8 = [by_codec["int8"] for by_codec in report["codecs"].values()]
    assert len(int8) == 3 and all(c["bytes_vs_fp32"] > 3.5 for c in int8)
    assert set(report["policy_us"]) >= {"splitee", "dimee", "thresholds"}
    assert report["tls"]["tls_p50_ms"] > 0 and report["tls"]["plaintext_p50_ms"] > 0
    split = report["cpu_split"]
    assert split["blocks"] == {"device": [1, 2], "edge": [3, 4], "cloud": [5, 6]}
    for load in ("batch_64x4", "unary_64"):
        assert set(split[load]) == {"client", "device", "edge", "cloud"} and all(us > 0 for us in split[load].values())
    assert set(split["bare"]) == {"decode", "device", "edge", "cloud"} and all(us > 0 for us in split["bare"].values())
    assert report["cloud_in_process"]["per_s"] > 0 and report["cloud_in_process"]["cpu_us"] > 0
    assert set(report["stage_us"]) == set(STAGE_NAMES) and all(us > 0 for us in report["stage_us"].values())
    pools = report["cloud_workers"]
    assert all(len(pools["rates"][n]) == ROUNDS and min(pools["rates"][n]) > 0 for n in ("1", "2"))
    assert [len(pools["answered_by_worker"][n]) for n in ("1", "2")] == [1, 2] and pools["ratio"] > 0
    assert pools["answered_by_worker"]["1"][0] == sum(pools["answered_by_worker"]["2"]) > 0  # the same samples
    ours, triton = report["triton"]["splitexit"], report["triton"]["triton"]
    assert set(ours) == {"1", "8", "64"} and all(load["p50_ms"] > 0 for load in ours.values())
    can_run = unavailable_reason(triton_python()) is None  # where the PyTriton venv is there, Triton must have run
    assert set(triton) == ({"1", "8", "64"} if can_run else {"unavailable"})
    offered = report["offered_load"]
    assert offered["rate_per_s"] == 0.5 * report["throughput"]["unary_64"]
    assert all(offered[kind]["p95_ms"] >= offered[kind]["p50_ms"] > 0 for kind in ("early_exits", "final_layer"))
    section = bench_section(out)
    assert "a quick smoke run" in section and "| one InferStream, 64 in flight |" in section
    assert (
        "| mpnet-sentiment → cloud | 12 |" in section and "mpnet-sentiment " in section.split("on the cloud path:")[1]
    )
    assert "| InferBatch, 64 images per message, 4 in flight |" in section
    assert "`mpnet-sentiment` (all-mpnet-base-v2): its 12 ONNX slices" in section
    assert "Targets, from this run" in section and section.count(" met |") + section.count(" **missed** |") == 11
    assert "| edge (blocks 3–4) |" in section and "Where a sample's CPU goes" in section
    assert "run inside the bench process" in section and "| read its plan |" in section
    assert "2 workers ÷ 1 worker" in section and "÷ Triton (same segments, one hop)" in section
