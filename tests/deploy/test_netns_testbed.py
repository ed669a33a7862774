"""Three tiers in three network namespaces: real processes, real models, real Fashion-MNIST test images.

Requests reach the device over its management veth; offloads must cross the
device-edge and edge-cloud veths, whose shaping, state and processes the tests
change at run time. Skipped, saying why, unless run as root with ``ip`` and ``tc``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from splitexit.cli import main
from splitexit.link_profiles import LINK_PROFILES
from splitexit.netns import NetnsTestbed
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from tests.netns import (
    answer_or_error,
    first_answer_within,
    leftovers,
    marked_processes,
    netns_testbed,
    pids_in,
    require_netns,
    timed_answers,
)

TO_CLOUD, ON_DEVICE = 1.0, 0.0  # thresholds: every sample offloads to the final exit / exits at the first


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsTestbed]:
    with netns_testbed(tmp_path_factory.mktemp("netns-logs")) as testbed:
        yield testbed


def test_real_images_are_answered_and_offloads_cross_both_links(bed: NetnsTestbed, images: list[LabelledImage]) -> None:
    assert bed.network is not None
    device_edge, edge_cloud = bed.network.links["device-edge"].first, bed.network.links["edge-cloud"].first
    sent_before = device_edge.bytes_sent(), edge_cloud.bytes_sent()
    answers = [answer for _, answer in timed_answers(bed.device_address, images[:30], TO_CLOUD)]
    sent = device_edge.bytes_sent() - sent_before[0], edge_cloud.bytes_sent() - sent_before[1]
    for answer in answers:
        assert [hop.tier for hop in answer.hops] == [pb.TIER_NAME_DEVICE, pb.TIER_NAME_EDGE, pb.TIER_NAME_CLOUD]
        assert answer.exit_tier == pb.TIER_NAME_CLOUD
    assert sum(a.label == image.label for a, image in zip(answers, images)) >= 24, "the final exit is ~90% accurate"
    # the activations went over the tier-to-tier veths (the kernel's counters), not over the management links
    assert sent[0] >= sum(a.hops[0].bytes_sent for a in answers) > 0
    assert sent[1] >= sum(a.hops[1].bytes_sent for a in answers) > 0
    ((_, on_device),) = timed_answers(bed.device_address, images[:1], ON_DEVICE)
    assert [hop.tier for hop in on_device.hops] == [pb.TIER_NAME_DEVICE]


def test_a_slow_device_edge_link_slows_offloads_but_not_device_exits(
    bed: NetnsTestbed, images: list[LabelledImage]
) -> None:
    def medians() -> tuple[float, float]:
        to_cloud = timed_answers(bed.device_address, images[:8], TO_CLOUD)
        on_device = timed_answers(bed.device_address, images[:8], ON_DEVICE)
        return statistics.median(s for s, _ in to_cloud), statistics.median(s for s, _ in on_device)

    fast_offload, fast_exit = medians()
    bed.shape("device-edge", "slow")
    try:
        slow_offload, slow_exit = medians()
        ((_, answer),) = timed_answers(bed.device_address, images[:1], TO_CLOUD)
    finally:
        bed.shape("device-edge", "none")
    print(
        f"offload median {fast_offload * 1e3:.1f} -> {slow_offload * 1e3:.1f} ms ({slow_offload / fast_offload:.1f}x); "
        f"device exit {fast_exit * 1e3:.1f} -> {slow_exit * 1e3:.1f} ms"
    )
    assert slow_offload >= 5 * fast_offload
    # 1 Mbit/s cannot carry the activations faster than this, whatever else the machine does (the burst goes free)
    assert slow_offload >= (answer.hops[0].bytes_sent - LINK_PROFILES["slow"].burst_bytes) * 8 / 1e6
    assert slow_exit - fast_exit < 0.1 * (slow_offload - fast_offload), "device exits do not cross the link"


def assert_degraded(outcome: pb.InferResponse | grpc.StatusCode, tier: int, block: int, *reasons: int) -> None:
    """``outcome`` is an answer ``tier`` gave from its exit ``block`` because the next tier could not be used."""
    assert isinstance(outcome, pb.InferResponse), outcome
    assert outcome.degraded and (outcome.exit_tier, outcome.exit_block) == (tier, block), outcome
    assert outcome.degradation.tier == tier and outcome.degradation.reason in reasons, outcome.degradation


def test_a_link_down_degrades_offloads_and_up_again_they_are_answered(
    bed: NetnsTestbed, images: list[LabelledImage]
) -> None:
    bed.set_link("device-edge", False)
    try:
        offloaded = answer_or_error(bed.device_address, images[0], TO_CLOUD, timeout_s=2.0)
        on_device = answer_or_error(bed.device_address, images[0], ON_DEVICE, timeout_s=2.0)
    finally:
        bed.set_link("device-edge", True)
    assert_degraded(
        offloaded,
        pb.TIER_NAME_DEVICE,
        2,
        pb.DEGRADED_REASON_NEXT_TIER_TOO_SLOW,
        pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE,
    )
    assert (
        isinstance(on_device, pb.InferResponse)
        and on_device.exit_tier == pb.TIER_NAME_DEVICE
        and not on_device.degraded
    )
    assert first_answer_within(bed.device_address, images[0], TO_CLOUD, within_s=20).exit_tier == pb.TIER_NAME_CLOUD


def test_a_killed_edge_degrades_offloads_until_it_is_started_again(
    bed: NetnsTestbed, images: list[LabelledImage]
) -> None:
    bed.kill(Tier.EDGE)
    try:
        assert bed.processes[Tier.EDGE].process.returncode == -9
        assert bed.network is not None and pids_in(bed.network.namespaces[Tier.EDGE]) == [], (
            "SIGKILL hit the tier itself"
        )
        offloaded = answer_or_error(bed.device_address, images[0], TO_CLOUD, timeout_s=5.0)
        on_device = answer_or_error(bed.device_address, images[0], ON_DEVICE, timeout_s=5.0)
    finally:
        bed.start(Tier.EDGE)
    assert_degraded(offloaded, pb.TIER_NAME_DEVICE, 2, pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE)
    assert isinstance(on_device, pb.InferResponse) and on_device.exit_tier == pb.TIER_NAME_DEVICE
    assert first_answer_within(bed.device_address, images[0], TO_CLOUD, within_s=20).exit_tier == pb.TIER_NAME_CLOUD


def test_a_paused_cloud_makes_the_edge_answer_degraded_in_time(bed: NetnsTestbed, images: list[LabelledImage]) -> None:
    bed.pause(Tier.CLOUD)
    try:
        offloaded = answer_or_error(bed.device_address, images[0], TO_CLOUD, timeout_s=2.0)
    finally:
        bed.resume(Tier.CLOUD)
    assert_degraded(
        offloaded, pb.TIER_NAME_EDGE, 4, pb.DEGRADED_REASON_NEXT_TIER_TOO_SLOW, pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE
    )
    assert first_answer_within(bed.device_address, images[0], TO_CLOUD, within_s=20).exit_tier == pb.TIER_NAME_CLOUD


def test_http_and_metrics_are_served_on_the_management_links(bed: NetnsTestbed, images: list[LabelledImage]) -> None:
    posted = urllib.request.Request(
        f"{bed.http_url}/v1/infer?threshold=1.0", data=images[0].png, headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(posted, timeout=10) as reply:
        answer = json.load(reply)
    assert answer["exit_tier"] == "CLOUD" and [hop["tier"] for hop in answer["hops"]] == ["DEVICE", "EDGE", "CLOUD"]
    for tier in Tier:
        with urllib.request.urlopen(bed.metrics_url(tier), timeout=5) as reply:
            assert b"splitexit_requests_total{" in reply.read(), f"the {tier.value} has counted no request"


def test_after_exit_no_namespace_veth_or_process_remains(tmp_path: Path, images: list[LabelledImage]) -> None:
    marker = f"exit-{os.getpid()}"
    with netns_testbed(tmp_path, marker=marker) as testbed:
        assert len(marked_processes(marker)) == 3
        ((_, answer),) = timed_answers(testbed.device_address, images[:1], TO_CLOUD)
        assert answer.exit_tier == pb.TIER_NAME_CLOUD
        assert leftovers(testbed), "leftovers() must see a running testbed's namespaces and veths"
    assert leftovers(testbed) == []
    assert marked_processes(marker) == []


def test_a_tier_failing_to_start_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = f"failed-{os.getpid()}"
    testbed = netns_testbed(tmp_path, settings={Tier.EDGE: {"exit_threshold": "2"}}, marker=marker)
    with pytest.raises(RuntimeError, match="the edge exited at start"):
        with testbed:
            pass
    assert "exit_threshold" in (tmp_path / "edge.log").read_text()
    assert leftovers(testbed) == []
    assert marked_processes(marker) == []  # the cloud, started before the edge failed, was stopped


@pytest.mark.parametrize(
    ("euid", "which", "phrase"),
    [(1000, "/usr/sbin/ip", "need root"), (0, None, "apt-get install iproute2")],
)
def test_the_cli_refuses_in_one_line_without_root_or_iproute2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], euid: int, which: str | None, phrase: str
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr("shutil.which", lambda tool: which)
    with pytest.raises(SystemExit) as exited:
        main(["testbed", "--netns", "--link", "4g"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert phrase in error and error.count("\n") == 1 and "Traceback" not in error


def test_the_cli_testbed_puts_its_delays_on_the_links(images: list[LabelledImage], tmp_path: Path) -> None:
    """``splitexit testbed --netns --delay-ms 30 --backhaul-delay-ms 20``: offloads wait both delays, both ways."""
    require_netns()
    command = [sys.executable, "-m", "splitexit", "testbed", "--netns", "--link", "none", "--backhaul", "none"]
    command += ["--delay-ms", "30", "--backhaul-delay-ms", "20", "--log-dir", str(tmp_path)]
    testbed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert testbed.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("device: ")):
            line = testbed.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert lines and lines[-1].startswith("device: "), "".join(lines)
        assert "device-edge none + 30 ms each way, edge-cloud none + 20 ms each way" in lines[0], lines[0]
        address = lines[-1].split()[1]
        answers = [answer for _, answer in timed_answers(address, images[:4], TO_CLOUD)]
    finally:
        testbed.send_signal(signal.SIGTERM)
        out, _ = testbed.communicate(timeout=60)
    assert all(answer.exit_tier == pb.TIER_NAME_CLOUD for answer in answers)
    assert statistics.median(a.hops[0].timings.network_s for a in answers) >= 0.060, "30 ms out, 30 ms back"
    assert statistics.median(a.hops[1].timings.network_s for a in answers) >= 0.040, "20 ms out, 20 ms back"
    assert testbed.returncode == 0 and "splitexit testbed: stopped" in out, out


def test_the_cli_refuses_a_delay_without_netns_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["testbed", "--delay-ms", "30"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert (
        error == "splitexit testbed: --link, --backhaul and their delays shape the links of the --netns testbed only\n"
    )
