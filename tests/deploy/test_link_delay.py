"""Links with a delay: the delay proxy adds what it is set to, the namespace testbed puts it on a link, and the
link-phases runner reports per-phase exits, latency and cost from real tiers and real Fashion-MNIST test images.

The proxy's own tests run on loopback; the testbed's need root and skip, saying why, elsewhere.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench.link_costs import link_cost_settings
from bench.link_phases import LINK, LinkPhase, PhaseStats, run_link_phases
from bench.link_phases_report import slow_phase_verdicts, verdict
from splitexit.delay_proxy import ProxyProcess, send_control
from splitexit.netns import NetnsTestbed
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.testbed import LOOPBACK, free_port
from tests.netns import leftovers, netns_testbed, timed_answers

TO_CLOUD = 1.0  # threshold: every sample runs to the final exit, crossing both links


@pytest.fixture
def echo_address() -> Iterator[str]:
    """A TCP echo server on loopback (one thread per connection), for round trips through the proxy."""
    server = socket.create_server((LOOPBACK, 0))

    def echo(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"{LOOPBACK}:{server.getsockname()[1]}"
    server.close()


def round_trips_s(address: str, count: int = 5) -> list[float]:
    """Seconds for one byte to go through ``address`` and come back, ``count`` times on one connection."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(b"x")
            assert connection.recv(1) == b"x"
            times.append(time.perf_counter() - started)
    return times


def test_the_proxy_delays_each_direction_by_its_delay_and_takes_a_new_one_at_run_time(
    echo_address: str, tmp_path: Path
) -> None:
    listen, control = f"{LOOPBACK}:{free_port()}", f"{LOOPBACK}:{free_port()}"
    proxy = ProxyProcess.start(listen, echo_address, control, 100, tmp_path / "proxy.log")
    try:
        delayed = statistics.median(round_trips_s(listen))
        assert proxy.set_delay(0) == 0.0
        undelayed = statistics.median(round_trips_s(listen))
        with pytest.raises(ValueError, match=r"must lie in \[0, 10000\] ms"):
            proxy.set_delay(-5)
        with pytest.raises(ValueError, match="unknown command 'rate 5'"):
            send_control(control, "rate 5")
        assert proxy.delay_ms() == 0.0, "a refused line leaves the delay as it was"
    finally:
        proxy.stop()
    assert proxy.process.returncode == 0, (tmp_path / "proxy.log").read_text()
    print(f"round trip through the proxy: {delayed * 1e3:.1f} ms at 100 ms each way, {undelayed * 1e3:.1f} ms at 0")
    assert 0.2 <= delayed < 0.35, "100 ms each way: a round trip takes 200 ms and little more"
    assert undelayed < 0.1, "without a delay, a loopback round trip takes far less than one delay"


def test_the_proxy_refuses_a_bad_command_line_in_one_line() -> None:
    command = [sys.executable, "-m", "splitexit.delay_proxy", "--listen", "127.0.0.1:1", "--target", "nowhere"]
    result = subprocess.run([*command, "--control", "127.0.0.1:2"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stderr == "delay proxy: 'nowhere' is no host:port\n"


def test_a_testbed_refuses_a_delay_on_no_link_or_out_of_range() -> None:
    with pytest.raises(ValueError, match="no link 'device-cloud' to delay"):
        NetnsTestbed(delays={"device-cloud": 5.0})
    with pytest.raises(ValueError, match=r"the device-edge delay must lie in \[0, 10000\] ms"):
        NetnsTestbed(delays={"device-edge": -1.0})
    with pytest.raises(ValueError, match="the edge-cloud link has no delay proxy"):
        NetnsTestbed(delays={"device-edge": 5.0}).set_delay("edge-cloud", 5.0)


def stats(policy: str, accuracy: float, latencies_ms: list[float]) -> PhaseStats:
    """A slow phase's stats with only what a verdict reads: accuracy and latencies."""
    p95 = float(max(latencies_ms))
    return PhaseStats(
        phase="slow",
        policy=policy,
        samples=len(latencies_ms),
        failed=0,
        degraded=0,
        shares={},
        accuracy=accuracy,
        p50_ms=0.0,
        p95_ms=p95,
        mean_cost=0.0,
        cost_vs_final_layer=0.0,
        offload_p50_ms=None,
        latencies_ms=latencies_ms,
    )


def test_the_verdict_compares_at_the_same_accuracy_only() -> None:
    fast, slow = [10.0] * 50, [200.0] * 50
    fixed = [stats("fixed@0.8", 0.900, fast), stats("fixed@0.9", 0.930, slow)]
    assert verdict(stats("p", 0.932, fast), fixed).met, "as fast as fixed@0.8 but as accurate as fixed@0.9"
    assert not verdict(stats("p", 0.902, slow), fixed).met, "slower than fixed@0.8 at its accuracy"
    far = verdict(stats("p", 0.915, fast), fixed)
    assert not far.met and far.gap_interval_ms is None, "no fixed α within 0.3 pt: nothing shows the target met"


BACKHAUL = "edge-cloud"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsTestbed]:
    """A testbed with both links delayed; once it is stopped, neither proxy, namespace nor veth may remain."""
    testbed = netns_testbed(tmp_path_factory.mktemp("link-delay-logs"), link_cost_settings())
    with replace(testbed, link="wifi", delays={LINK: 30.0, BACKHAUL: 20.0}) as delayed:
        proxies = list(delayed.proxies.values())
        yield delayed
    assert len(proxies) == 2 and all(proxy.process.returncode is not None for proxy in proxies)
    assert leftovers(delayed) == []


def test_offloads_wait_the_link_delay_both_ways_and_not_once_it_is_removed(
    bed: NetnsTestbed, images: list[LabelledImage]
) -> None:
    def waits_s() -> tuple[float, float]:
        """Median seconds the device and the edge waited on their next tier, minus its own time."""
        answers = [answer for _, answer in timed_answers(bed.device_address, images[:6], TO_CLOUD)]
        assert all(answer.exit_tier == pb.TIER_NAME_CLOUD for answer in answers)
        device = statistics.median(answer.hops[0].timings.network_s for answer in answers)
        return device, statistics.median(answer.hops[1].timings.network_s for answer in answers)

    delayed, backhaul = waits_s()
    bed.set_delay(LINK, 0.0)
    try:
        undelayed, _ = waits_s()
    finally:
        bed.set_delay(LINK, 30.0)
    print(f"device's wait on the link: {delayed * 1e3:.1f} ms at 30 ms each way, {undelayed * 1e3:.1f} ms at 0")
    assert delayed >= 0.060, "the activation waits 30 ms on its way out, the answer 30 ms on its way back"
    assert undelayed < 0.030
    assert backhaul >= 0.040, "the edge-cloud link: 20 ms each way"


def test_the_phase_runner_reports_per_phase_exits_that_add_up_and_applies_each_phase(
    bed: NetnsTestbed, images: list[LabelledImage]
) -> None:
    phases = [
        LinkPhase(name="fast", profile="wifi", delay_ms=5.0, samples=12),
        LinkPhase(name="slow", profile="3g", delay_ms=60.0, samples=12),
    ]
    run = run_link_phases(bed, images[: 1 + 24], ["fixed@0.9", "splitee-sw"], phases)
    assert len(run.stats) == 4 and len(run.link_cost) == 2
    for phase_stats in run.stats:
        assert phase_stats.samples == 12 and phase_stats.failed == 0
        assert sum(phase_stats.shares.values()) == pytest.approx(1.0)
        assert phase_stats.p50_ms <= phase_stats.p95_ms and phase_stats.mean_cost > 0
    slow = run.of(1, "fixed@0.9")
    assert slow.shares["device"] < 1.0, "α = 0.9 offloads some of the images"
    assert max(slow.latencies_ms) >= 120.0, "an offload over the slow phase's link waits 60 ms each way"
    assert run.link_cost[1] > run.link_cost[0], "the device measured the slower link as dearer"
    (only,) = slow_phase_verdicts(run)
    assert only.policy == "splitee-sw" and only.line().startswith(("met", "MISSED"))
