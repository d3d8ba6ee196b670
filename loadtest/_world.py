"""The simulated network of a scenario, and what should happen in it.

:func:`build_world` turns a :class:`~loadtest.Scenario` into a simulator
fleet configuration (deterministic: the same scenario gives the same fleet),
one resource per interface with its limit, and the ground truth the run is
judged against: exact bytes per resource and, for resources whose limit is
crossed, the moments usage reaches the warning and critical thresholds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator import Fleet, FleetConfig, InterfaceConfig, RouterConfig, UserConfig

from ._scenario import Scenario

__all__ = ["Resource", "World", "build_world", "crossing_time", "set_limits"]

NS = 1_000_000_000


@dataclass
class Resource:
    """One customer resource: the interface behind it and what it should bill."""

    customer: str
    router: str
    router_index: int
    interface: str
    limit: int
    breach: bool = False
    key: str = ""
    #: ns after the fleet epoch when usage reaches the warning / critical threshold
    #: (breaches only); the same for every fleet built from the same configuration
    warning_at_ns: int | None = None
    critical_at_ns: int | None = None
    truth: int = 0  #: bytes (in + out) carried while traffic flowed


@dataclass
class World:
    scenario: Scenario
    config: FleetConfig
    resources: list[Resource] = field(default_factory=list)
    #: routers polled over SNMPv3, with the user they are polled as
    v3_routers: frozenset[str] = frozenset()
    v3_user: UserConfig | None = None

    def by_customer(self) -> dict[str, Resource]:
        return {r.customer: r for r in self.resources}


def build_world(scenario: Scenario, run_id: str) -> World:
    """The fleet configuration and resources of ``scenario`` (customers prefixed ``run_id``)."""
    s = scenario
    rnd = random.Random(s.name)
    out_rate = s.rate // 2 if s.out_rate is None else s.out_rate
    start, stop = s.warmup_s, s.warmup_s + s.traffic_s
    total_if = s.routers * s.interfaces
    # which interfaces get which profile / wrap / breach: deterministic shuffles
    order = list(range(total_if))
    rnd.shuffle(order)
    profile_of: dict[int, int] = {}
    pos = 0
    for k, mix in enumerate(s.profiles):
        n = round(mix.fraction * total_if)
        for i in order[pos : pos + n]:
            profile_of[i] = k
        pos += n
    wrap32 = set(rnd.sample(range(total_if), round(s.wrap32_fraction * total_if)))
    wrap64 = set(
        rnd.sample(sorted(set(range(total_if)) - wrap32), round(s.wrap64_fraction * total_if))
    )
    breach = set(rnd.sample(range(total_if), round(s.breach_fraction * total_if)))
    routers: list[RouterConfig] = []
    resources: list[Resource] = []
    half = int(s.rate * s.traffic_s / 2)
    for r in range(s.routers):
        name = f"rtr-{r + 1:05d}"
        ifaces: list[InterfaceConfig] = []
        for j in range(s.interfaces):
            n = r * s.interfaces + j
            customer = f"{run_id}-c{n + 1:06d}"
            extra: dict[str, object] = {}
            if n in profile_of:
                mix = s.profiles[profile_of[n]]
                extra = {
                    "diurnal_amplitude": mix.diurnal_amplitude,
                    "diurnal_period_s": mix.diurnal_period_s,
                    "burst_every_s": mix.burst_every_s,
                    "burst_length_s": mix.burst_length_s,
                    "burst_factor": mix.burst_factor,
                    "anomalies": list(mix.anomalies),
                }
            initial = 0
            if n in wrap32:
                initial = 2**32 - half
            elif n in wrap64:
                initial = 2**64 - half
            ifaces.append(
                InterfaceConfig(
                    name=f"ge-0/0/{j}",
                    customer=customer,
                    in_rate=s.rate,
                    out_rate=out_rate,
                    in_initial=initial,
                    out_initial=initial,
                    active_from_s=start,
                    active_until_s=stop,
                    **extra,  # type: ignore[arg-type]
                )
            )
            resources.append(Resource(customer, name, r, f"ge-0/0/{j}", 0, breach=n in breach))
        routers.append(RouterConfig(name=name, interfaces=ifaces))
    # v3 routers spread evenly over the fleet: position r is v3 when the running share
    # of v3 routers steps up there
    v3 = frozenset(
        f"rtr-{r + 1:05d}"
        for r in range(s.routers)
        if int((r + 1) * s.v3_fraction) > int(r * s.v3_fraction)
    )
    user = None
    if v3:  # keys of this run only (the simulator localises them per router engine)
        user = UserConfig(
            name="resmon-loadtest",
            auth="sha",
            auth_key=f"resmon-loadtest-auth-{run_id}",
            priv="aes",
            priv_key=f"resmon-loadtest-priv-{run_id}",
        )
    config = FleetConfig(routers=routers, base_port=0, v3_users=[user] if user else [])
    return World(s, config, resources, v3_routers=v3, v3_user=user)


def crossing_time(usage: Callable[[int], int], threshold: int, lo: int, hi: int) -> int | None:
    """The first ns in ``(lo, hi]`` where the non-decreasing ``usage`` reaches ``threshold``."""
    if usage(hi) < threshold:
        return None
    while hi - lo > 1_000:  # microsecond resolution is plenty
        mid = (lo + hi) // 2
        if usage(mid) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi


def set_limits(world: World) -> None:
    """Ground truth per resource, and limits: breached ones reach critical at the
    scheduled time, the others never come near theirs.

    Traffic depends only on the time since the epoch, so this uses a fleet of
    its own with epoch 0; the run's fleet, created later, has the same truth.
    """
    s = world.scenario
    fleet = Fleet(world.config, clock=lambda: 0)
    t0 = round(s.warmup_s * NS)
    t1 = t0 + round(s.traffic_s * NS)

    for res in world.resources:

        def usage(t: int, res: Resource = res) -> int:
            return sum(
                fleet.bytes_between(res.router, res.interface, d, t0, t) for d in ("in", "out")
            )

        res.truth = usage(t1)
        if not res.breach:
            # far away: not even a month-end forecast at the peak rate reaches it
            res.limit = max(res.truth, 10**6) * 10**7
            continue
        tb = t0 + round(min(s.breach_at_s, s.traffic_s) * NS)
        at_breach = usage(tb)
        res.limit = max(at_breach * 100 // s.critical_percent, 1)
        # thresholds compare usage * 100 >= limit * percent
        res.warning_at_ns = crossing_time(usage, -(-res.limit * s.warning_percent // 100), t0, t1)
        res.critical_at_ns = crossing_time(usage, -(-res.limit * s.critical_percent // 100), t0, t1)
