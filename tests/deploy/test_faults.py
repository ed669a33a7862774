"""Faults under steady load, three tiers in three network namespaces: nothing lost, nothing hung, quick recovery.

In turn: the edge killed, the cloud killed, the device-edge link cut, the edge
frozen (SIGSTOP), the device-edge link throttled to 1 Mbit/s, the edge drained
(SIGTERM), the device drained (SIGTERM); then each is undone. For every
scenario: every request got an answer or an explicit status within its
deadline; no answer came from an earlier exit than asked for without saying so;
while a tier behind the device was out, at least 99 % of requests were answered
(degraded ones flagged); full answers through the recovered tier came back
within a second of it reporting SERVING; no tier died that was not killed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.faults import FAULTS, Fault, run_scenario
from splitexit.netns import NetnsTestbed
from splitexit.samples import LabelledImage, load_pack
from splitexit.shared.tiers import Tier
from tests.netns import netns_testbed

DRAIN_GRACE_S = 1.0


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsTestbed]:
    settings = {tier: {"drain_grace_s": str(DRAIN_GRACE_S)} for tier in Tier}
    with netns_testbed(tmp_path_factory.mktemp("fault-logs"), settings) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def pack() -> list[LabelledImage]:
    return load_pack()


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_a_fault_loses_nothing_and_traffic_returns(bed: NetnsTestbed, pack: list[LabelledImage], fault: Fault) -> None:
    result = run_scenario(bed, fault, pack)
    assert result.sent >= 150 and result.not_sent == 0, result
    assert result.late == 0, f"{result.late} requests had neither answer nor status by their deadline"
    assert result.unflagged_early == 0, result
    assert result.answered + sum(result.failed.values()) == result.sent
    assert result.dead_tiers == [], result
    if fault.outage:
        assert result.answered_during_fault >= 0.99, result
        assert result.degraded > 0, "the outage should have shown as degraded answers"
    if fault.recovers:
        assert result.recovery_s is not None and result.recovery_s <= 1.0, result
    if "SIGTERM" in fault.name:
        assert result.not_serving_before_refusal_s is not None
        assert result.not_serving_before_refusal_s >= DRAIN_GRACE_S - 0.1, result
