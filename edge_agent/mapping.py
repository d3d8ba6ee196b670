"""Which router interfaces carry which customer's resource.

Rules (``mapping`` in agent.yaml) are tried in order against each interface
row; the first whose ``pattern`` is found in the row's ``match_on`` column
(ifAlias, ifName or ifDescr) maps it. Interfaces are identified by ifName, not
by ifIndex: a reboot may renumber ifIndex, and usage must stay with the
interface it was measured on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

import msgspec

from protocol import resource_key

from .config import MappingRule
from .snmp import InterfaceRow

__all__ = ["Direction", "MappedInterface", "map_interface", "map_interfaces"]


Direction = Literal["in", "out"]


class MappedInterface(msgspec.Struct, frozen=True):
    """An interface that belongs to a customer resource."""

    if_name: str
    if_index: int
    customer_id: str
    resource_type: str
    resource_name: str | None
    resource_key: str
    directions: tuple[Direction, ...]
    high_speed_mbps: int | None = None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _column(row: InterfaceRow, match_on: str) -> str:
    if match_on == "ifName":
        return row.if_name
    if match_on == "ifDescr":
        return row.if_descr
    return row.if_alias


def map_interface(rules: Iterable[MappingRule], row: InterfaceRow) -> MappedInterface | None:
    """The first rule's mapping of ``row``, or ``None`` when no rule matches."""
    for rule in rules:
        match = _compiled(rule.pattern).search(_column(row, rule.match_on))
        if match is None or not match.group("customer"):
            continue
        customer = match.group("customer")
        name = match.groupdict().get("name") or None
        directions: tuple[Direction, ...] = (
            ("in", "out") if rule.direction == "both" else (rule.direction,)
        )
        return MappedInterface(
            if_name=row.if_name,
            if_index=row.if_index,
            customer_id=customer,
            resource_type=rule.resource_type,
            resource_name=name,
            resource_key=resource_key(customer, rule.resource_type, name),
            directions=directions,
            high_speed_mbps=row.high_speed_mbps,
        )
    return None


def map_interfaces(
    rules: Sequence[MappingRule], rows: Iterable[InterfaceRow]
) -> list[MappedInterface]:
    """Map every row; unmapped rows are left out. If two rows share an ifName, the
    first (lowest ifIndex) wins, so one name always means one interface."""
    seen: set[str] = set()
    mapped = []
    for row in sorted(rows, key=lambda r: r.if_index):
        if row.if_name in seen:
            continue
        result = map_interface(rules, row)
        if result is not None:
            seen.add(row.if_name)
            mapped.append(result)
    return mapped
