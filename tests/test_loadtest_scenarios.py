"""Every shipped scenario loads, and builds a deterministic world with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import ScenarioError, build_world, list_scenarios, load_scenario
from loadtest._world import set_limits


def test_the_five_scenarios_ship() -> None:
    assert {"smoke", "isp-10k", "burst", "faults", "scale-out"} <= set(list_scenarios())


@pytest.mark.parametrize("name", ["smoke", "isp-10k", "burst", "faults", "scale-out"])
def test_each_shipped_scenario_loads_and_builds_its_fleet(name: str) -> None:
    scenario = load_scenario(name)
    world = build_world(scenario, "t")
    assert len(world.resources) == scenario.routers * scenario.interfaces
    assert len(world.config.routers) == scenario.routers


def test_isp_10k_drives_at_least_ten_thousand_resources() -> None:
    assert len(build_world(load_scenario("isp-10k"), "t").resources) >= 10_000


def test_breached_resources_reach_critical_at_the_scheduled_time() -> None:
    scenario = load_scenario("smoke")
    world = build_world(scenario, "t")
    set_limits(world)
    breached = [r for r in world.resources if r.breach]
    assert len(breached) == 2
    due = round((scenario.warmup_s + scenario.breach_at_s) * 1e9)
    for r in breached:
        assert r.warning_at_ns is not None
        assert r.critical_at_ns is not None
        assert r.warning_at_ns < r.critical_at_ns <= due + 1_000  # 1 us search resolution
        assert due - r.critical_at_ns < 1e9  # within a second of the schedule
    quiet = [r for r in world.resources if not r.breach]
    assert all(r.truth * 100 <= r.limit for r in quiet)


def test_an_unknown_key_in_a_scenario_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrouterz: 3\n")
    with pytest.raises(
        ScenarioError, match=r"bad\.yaml: \$: Object contains unknown field `routerz`"
    ):
        load_scenario(bad)


def test_an_event_for_a_router_that_does_not_exist_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrouters: 2\nevents: [{at_s: 1, action: dead, routers: [5]}]\n")
    with pytest.raises(ScenarioError, match=r"events\[0\]\.routers"):
        load_scenario(bad)


def test_overlapping_gaps_count_each_missing_byte_once() -> None:
    from loadtest._collect import _union

    assert _union([(5, 9), (0, 4), (3, 6), (20, 20), (12, 15)]) == [(0, 9), (12, 15)]


def test_crossing_time_finds_the_first_moment_usage_reaches_the_threshold() -> None:
    from loadtest._world import crossing_time

    def usage(t: int) -> int:
        return t // 1000  # one byte per microsecond

    at = crossing_time(usage, 5_000, 0, 10**8)
    assert at is not None
    assert usage(at) >= 5_000
    assert at - 5_000_000 < 1_000
    assert crossing_time(usage, 10**9, 0, 10**8) is None


def test_the_loadtest_package_exports_its_public_names() -> None:
    import loadtest

    assert {"Scenario", "load_scenario", "run_scenario", "Result", "RunOptions"} <= set(
        loadtest.__all__
    )
    assert all(hasattr(loadtest, name) for name in loadtest.__all__)


def test_a_warning_is_optional_only_when_one_poll_crossed_both_thresholds() -> None:
    from loadtest._collect import warning_optional

    w, c = "THRESHOLD_WARNING", "THRESHOLD_CRITICAL"
    observed = {("a", w): 10, ("a", c): 10, ("b", w): 10, ("b", c): 20, ("c", c): 5}
    assert warning_optional(observed, "a")  # the same poll took it over both
    assert not warning_optional(observed, "b")  # a poll in between: a WARNING is due
    assert not warning_optional(observed, "c")  # no stored crossing: judged as missing
    assert not warning_optional(observed, "d")


def test_a_v3_share_of_routers_is_spread_and_polled_with_the_simulators_user() -> None:
    from types import SimpleNamespace

    from loadtest._runner import _target

    scenario = load_scenario("isp-10k")
    world = build_world(scenario, "t")
    assert len(world.v3_routers) == 50  # v3_fraction 0.1 of 500
    assert "rtr-00010" in world.v3_routers
    assert "rtr-00009" not in world.v3_routers  # spread: one in ten
    assert world.v3_user is not None
    assert world.config.v3_users == [world.v3_user]
    run = SimpleNamespace(scenario=scenario, world=world)
    v3 = _target(run, SimpleNamespace(router="rtr-00010", host="h", port=1, community="c"))  # type: ignore[arg-type]
    assert v3["version"] == "3"
    assert v3["security_level"] == "authPriv"
    assert v3["auth_key"] == world.v3_user.auth_key
    assert "community" not in v3
    v2c = _target(run, SimpleNamespace(router="rtr-00009", host="h", port=1, community="c"))  # type: ignore[arg-type]
    assert v2c["community"] == "c"
    assert "version" not in v2c  # the agent's default, 2c
    # without a v3 share nothing changes
    plain = build_world(load_scenario("burst"), "t")
    assert plain.v3_routers == frozenset()
    assert plain.config.v3_users == []
