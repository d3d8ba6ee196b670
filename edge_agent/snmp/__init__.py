"""SNMP access for the edge agent: the :class:`SnmpClient` interface and its implementations.

:class:`PysnmpClient` speaks v1, v2c and v3 (USM); :class:`FastV2cClient` is a lean
hand-written BER path for the v2c counter hot path that hands everything else
(v1, v3) to a :class:`PysnmpClient`.
"""

from .client import (
    CounterSample,
    CounterValue,
    InterfaceCounters,
    InterfaceRow,
    SnmpClient,
)
from .fastv2c import FastV2cClient
from .pysnmp_client import PysnmpClient

__all__ = [
    "CounterSample",
    "CounterValue",
    "FastV2cClient",
    "InterfaceCounters",
    "InterfaceRow",
    "PysnmpClient",
    "SnmpClient",
]
