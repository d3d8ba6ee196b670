"""SNMP access for the edge agent: the SnmpClient interface and its pysnmp implementation."""

from .client import (
    CounterSample,
    CounterValue,
    InterfaceCounters,
    InterfaceRow,
    PysnmpClient,
    SnmpClient,
)

__all__ = [
    "CounterSample",
    "CounterValue",
    "InterfaceCounters",
    "InterfaceRow",
    "PysnmpClient",
    "SnmpClient",
]
