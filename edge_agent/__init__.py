"""The resmon edge agent: poll SNMP interface counters near the routers, compute exact
deltas, keep them in a crash-safe disk buffer and forward CloudEvents to Kafka.

Modules, one concept each: :mod:`~edge_agent.config` (agent.yaml),
:mod:`~edge_agent.snmp` (the SNMP client), :mod:`~edge_agent.delta` (pure counter
math), :mod:`~edge_agent.mapping` (interfaces -> customer resources),
:mod:`~edge_agent.buffer` (disk buffer), :mod:`~edge_agent.sink` (what the buffer
could not keep, reported as gaps), :mod:`~edge_agent.forwarder` (Kafka),
:mod:`~edge_agent.poller` (the schedule) and :mod:`~edge_agent.app` (wiring).
Heavy dependencies (pysnmp, aiokafka, aiohttp) load only when used.
"""

from ._exceptions import (
    AgentError,
    BufferFullError,
    BufferWriteError,
    ConfigError,
    DiskBufferError,
    SendError,
    SnmpAuthError,
    SnmpError,
    SnmpMalformedResponse,
    SnmpResponseError,
    SnmpTimeout,
)
from .config import (
    AgentConfig,
    BufferConfig,
    HttpConfig,
    KafkaConfig,
    MappingRule,
    Secret,
    TargetConfig,
    config_from_dict,
    load_config,
)

__all__ = [
    "AgentConfig",
    "AgentError",
    "BufferConfig",
    "BufferFullError",
    "BufferWriteError",
    "ConfigError",
    "DiskBufferError",
    "HttpConfig",
    "KafkaConfig",
    "MappingRule",
    "Secret",
    "SendError",
    "SnmpAuthError",
    "SnmpError",
    "SnmpMalformedResponse",
    "SnmpResponseError",
    "SnmpTimeout",
    "TargetConfig",
    "config_from_dict",
    "load_config",
]
