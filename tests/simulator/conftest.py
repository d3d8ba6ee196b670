from __future__ import annotations

import pytest
from _clock import ManualClock

from simulator import Fleet, FleetConfig, InterfaceConfig, RouterConfig


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def small_fleet(clock: ManualClock) -> Fleet:
    """One router, ``r1``, with three interfaces of known rates; ephemeral port."""
    config = FleetConfig(
        base_port=0,
        routers=[
            RouterConfig(
                name="r1",
                interfaces=[
                    InterfaceConfig(
                        name="ge-0/0/0",
                        customer="cust-0001",
                        in_rate=1000,
                        out_rate=250,
                        in_initial=2**32 - 500,
                    ),
                    InterfaceConfig(
                        name="ge-0/0/1", customer="cust-0002", resource="bw", in_rate=10**9
                    ),
                    InterfaceConfig(name="xe-1/0/0", alias="uplink", in_rate=5, in_ramp=2),
                ],
            )
        ],
    )
    return Fleet(config, clock=clock)
