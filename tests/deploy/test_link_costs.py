"""With measured costs, a link throttled to 1 Mbit/s becomes dear and routing moves onto the device; then back.

Three real tiers in network namespaces, real images, the sliding-window SplitEE
(see :mod:`bench.link_costs`); the README's figure comes from the same run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.link_costs import link_cost_settings, run_link_cost_shift
from splitexit.netns import NetnsTestbed
from splitexit.samples import load_pack
from tests.netns import netns_testbed


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsTestbed]:
    with netns_testbed(tmp_path_factory.mktemp("link-cost-logs"), link_cost_settings()) as testbed:
        yield testbed


def test_a_slow_link_moves_answers_onto_the_device_and_back(bed: NetnsTestbed) -> None:
    run = run_link_cost_shift(bed, load_pack())
    fast, slow, fast_again = (run.cost_in(phase) for phase in range(3))
    assert slow > 20 * max(fast, fast_again), (fast, slow, fast_again)  # the link's cost follows its transfer time
    before, during, after = run.device_share(0, 150), run.device_share(1, 150), run.device_share(2, 150)
    assert during >= before + 0.15, (before, during, after)
    assert after <= during - 0.1, (before, during, after)
