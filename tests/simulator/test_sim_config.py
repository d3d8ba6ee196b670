"""Fleet configuration: YAML files, defaults, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import (
    ConfigError,
    Fleet,
    FleetConfig,
    InterfaceConfig,
    RouterConfig,
    generate_config,
    load_config,
)

EXAMPLE = """\
base_port: 20000
community: metro
routers:
  - name: edge-1
    interfaces:
      - name: ge-0/0/1
        customer: cust-0042
        resource: bw-primary
        in_rate: 125000
        out_rate: 62500
        in_initial: 4294967000
  - name: edge-2
    port: 20100
    uptime: 3600
    interfaces:
      - {name: ge-0/0/1, alias: "CUST:cust-0043", in_rate: 1000, in_ramp: 10}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    return path


def test_yaml_config_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EXAMPLE))
    assert [r.name for r in config.routers] == ["edge-1", "edge-2"]
    assert [config.router_port(i) for i in range(2)] == [20000, 20100]
    assert config.router_community(0) == "metro"
    iface = config.routers[0].interfaces[0]
    assert iface.if_alias == "CUST:cust-0042 RES:bw-primary"
    assert (iface.speed_bps, iface.oper_status, iface.out_initial) == (1_000_000_000, "up", 0)
    assert config.routers[1].interfaces[0].if_alias == "CUST:cust-0043"
    assert config.max_response_bytes == 1400


def test_an_unknown_key_names_the_file_and_key_path(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE.replace("in_ramp: 10", "in_rmap: 10"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "$.routers[1].interfaces[0]" in message
    assert "in_rmap" in message


def test_a_wrong_type_names_the_file_and_key_path(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE.replace("out_rate: 62500", "out_rate: -1"))
    with pytest.raises(ConfigError, match=r"\$\.routers\[0\]\.interfaces\[0\]\.out_rate"):
        load_config(path)


def test_invalid_yaml_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "routers: [\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("name: edge-2", "name: edge-1"), r"\$\.routers\[1\]\.name: duplicate router name"),
        (("port: 20100", "port: 20000"), r"\$\.routers\[1\]\.port: port 20000 already used"),
        (("ge-0/0/1, alias", "ge-0/0/1, if_index: 0, alias"), r"interfaces\[0\]\.if_index"),
        (("in_initial: 4294967000", "in_initial: 18446744073709551616"), r"in_initial"),
    ],
)
def test_inconsistent_fleets_are_rejected_at_load(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    with pytest.raises(ConfigError, match=where):
        load_config(_write(tmp_path, EXAMPLE.replace(*change)))


def test_a_shared_port_tells_routers_apart_by_community_at_router_name(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "shared_port: true\n" + EXAMPLE))
    assert [config.router_port(i) for i in range(2)] == [20000, 20000]
    assert [config.router_community(i) for i in range(2)] == ["metro@edge-1", "metro@edge-2"]


def test_generate_numbers_routers_interfaces_and_customers() -> None:
    config = generate_config(routers=2, interfaces=3, base_port=17000, rate_bps=800)
    assert [r.name for r in config.routers] == ["rtr-0001", "rtr-0002"]
    assert [config.router_port(i) for i in range(2)] == [17000, 17001]
    second = config.routers[1].interfaces
    assert [i.name for i in second] == ["ge-0/0/0", "ge-0/0/1", "ge-0/0/2"]
    assert [i.if_alias for i in second] == ["CUST:cust-0004", "CUST:cust-0005", "CUST:cust-0006"]
    assert (second[0].in_rate, second[0].out_rate) == (800, 400)


def test_generated_ports_beyond_65535_are_rejected() -> None:
    with pytest.raises(ConfigError, match="beyond 65535"):
        generate_config(routers=3, base_port=65534)


def test_fleet_validates_configs_built_in_python() -> None:
    bad = FleetConfig(
        routers=[RouterConfig(name="r", interfaces=[InterfaceConfig(name="e0", in_rate=-5)])]
    )
    with pytest.raises(ConfigError, match=r"\$\.routers\[0\]\.interfaces\[0\]\.in_rate"):
        Fleet(bad)


def test_an_empty_fleet_is_allowed() -> None:
    assert Fleet(FleetConfig()).endpoints == []


def test_the_readme_example_config_loads_and_shows_the_defaults(tmp_path: Path) -> None:
    readme = Path(__file__).parents[2] / "simulator" / "README.md"
    text = readme.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(_write(tmp_path, block))
    iface = config.routers[0].interfaces[0]
    defaults = InterfaceConfig(name=iface.name, customer=iface.customer)
    assert (iface.if_type, iface.speed_bps, iface.oper_status) == (
        defaults.if_type,
        defaults.speed_bps,
        defaults.oper_status,
    )
    assert config.router_port(0) == FleetConfig().base_port
    assert config.max_response_bytes == FleetConfig().max_response_bytes
    assert config.routers[0].sys_object_id == RouterConfig(name="x").sys_object_id
