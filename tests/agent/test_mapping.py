"""Mapping rules turn interface rows into customer resources, keyed by ifName."""

from __future__ import annotations

from edge_agent.config import DEFAULT_MAPPING, MappingRule
from edge_agent.mapping import map_interface, map_interfaces
from edge_agent.snmp import InterfaceRow


def test_the_default_rule_maps_cust_aliases_to_bandwidth_in_both_directions() -> None:
    mapped = map_interface(DEFAULT_MAPPING, InterfaceRow(7, "ge-0/0/1", "CUST:acme"))
    assert mapped is not None
    assert mapped.customer_id == "acme"
    assert mapped.resource_key == "acme/bandwidth"
    assert mapped.directions == ("in", "out")
    assert mapped.if_name == "ge-0/0/1"


def test_a_name_group_tells_two_resources_of_one_customer_apart() -> None:
    mapped = map_interface(DEFAULT_MAPPING, InterfaceRow(7, "ge-0/0/1", "CUST:acme:circuit-2"))
    assert mapped is not None
    assert mapped.resource_key == "acme/bandwidth/circuit-2"


def test_the_default_rule_reads_a_res_suffix_as_the_resource_name() -> None:
    mapped = map_interface(DEFAULT_MAPPING, InterfaceRow(7, "ge-0/0/1", "CUST:acme RES:wan2"))
    assert mapped is not None
    assert mapped.resource_key == "acme/bandwidth/wan2"


def test_unmatched_interfaces_are_left_out() -> None:
    rows = [InterfaceRow(1, "lo", ""), InterfaceRow(2, "ge-0/0/0", "uplink to core")]
    assert map_interfaces(DEFAULT_MAPPING, rows) == []


def test_the_first_matching_rule_wins_and_can_match_other_columns() -> None:
    rules = (
        MappingRule(pattern=r"^svc-(?P<customer>\w+)$", match_on="ifName", direction="out"),
        *DEFAULT_MAPPING,
    )
    mapped = map_interface(rules, InterfaceRow(3, "svc-bob", "CUST:alice"))
    assert mapped is not None
    assert mapped.customer_id == "bob"
    assert mapped.directions == ("out",)


def test_interfaces_are_identified_by_name_not_index() -> None:
    before = map_interfaces(DEFAULT_MAPPING, [InterfaceRow(1, "ge-0", "CUST:a")])
    after = map_interfaces(DEFAULT_MAPPING, [InterfaceRow(9, "ge-0", "CUST:a")])
    assert before[0].if_name == after[0].if_name
    assert before[0].resource_key == after[0].resource_key


def test_a_duplicate_ifname_maps_once() -> None:
    rows = [InterfaceRow(2, "ge-0", "CUST:a"), InterfaceRow(1, "ge-0", "CUST:b")]
    (mapped,) = map_interfaces(DEFAULT_MAPPING, rows)
    assert mapped.customer_id == "b"
