"""The edge agent's exception tree.

Library exceptions (pysnmp, aiokafka, PyYAML, msgspec, OS errors of the disk
buffer) are translated at the boundary into these, so callers handle one family
with messages that name what failed (file and key, router, record) and never a
secret: community strings, SNMPv3 keys and passwords are not part of any message.

::

    AgentError
    ├── ConfigError          bad agent.yaml: file, key path, reason
    ├── SnmpError            one router could not be polled (``target`` names it)
    │   ├── SnmpTimeout      no answer within timeout x retries
    │   ├── SnmpAuthError    SNMPv3 credentials refused (unknown user, wrong digest...)
    │   ├── SnmpResponseError  the router answered with an error status
    │   └── SnmpMalformedResponse  an answer that cannot be a valid reading
    ├── DiskBufferError      the local disk buffer cannot be used
    │   ├── BufferFullError  full, with ``when_full: block`` and no wait allowed
    │   └── BufferWriteError  a record could not be written (disk full, I/O error)
    └── SendError            Kafka did not acknowledge (``acked`` records did)
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "BufferFullError",
    "BufferWriteError",
    "ConfigError",
    "DiskBufferError",
    "SendError",
    "SnmpAuthError",
    "SnmpError",
    "SnmpMalformedResponse",
    "SnmpResponseError",
    "SnmpTimeout",
]


class AgentError(Exception):
    """Base class for everything the edge agent raises on purpose."""


class ConfigError(AgentError):
    """The agent configuration is invalid.

    ``file`` is the config file (or ``<config>`` when built in code), ``key``
    the dotted key path such as ``targets[2].community`` (``None`` for the
    whole document) and ``reason`` what is wrong with it.
    """

    def __init__(self, reason: str, *, file: str = "<config>", key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class SnmpError(AgentError):
    """A request to one router failed; ``target`` is the router's configured name."""

    def __init__(self, message: str, *, target: str) -> None:
        self.target = target
        super().__init__(f"{target}: {message}")

    #: a short label for metrics (``timeout``, ``response``, ``malformed``, ``error``)
    kind = "error"


class SnmpTimeout(SnmpError):
    """The router did not answer in time (dead, unreachable, or wrong community)."""

    kind = "timeout"


class SnmpAuthError(SnmpError):
    """The router refused our SNMPv3 credentials (unknown user, wrong digest, bad key)."""

    kind = "auth"


class SnmpResponseError(SnmpError):
    """The router answered with an SNMP error status (``noSuchName``, ``tooBig``...).

    ``status`` is the error-status number, ``index`` the 1-based varbind it names.
    """

    kind = "response"

    def __init__(self, message: str, *, target: str, status: int = 0, index: int = 0) -> None:
        self.status = status
        self.index = index
        super().__init__(message, target=target)


class SnmpMalformedResponse(SnmpError):
    """The answer cannot be used: missing sysUpTime, wrong value types, bad OIDs."""

    kind = "malformed"


class DiskBufferError(AgentError):
    """The local disk buffer cannot be opened or written."""


class BufferFullError(DiskBufferError):
    """The buffer reached ``max_bytes`` and its policy is ``block``.

    ``written`` holds the sequence numbers of the records of the same call
    that were appended before the buffer filled up.
    """

    def __init__(self, message: str, *, written: list[int] | None = None) -> None:
        self.written = written or []
        super().__init__(message)


class BufferWriteError(DiskBufferError):
    """A record could not be appended: the disk is full, an I/O error, a record too large.

    ``written`` holds the sequence numbers of the records of the same call
    that were appended before the failure; the rest were not written, and the
    buffer is as it was before the failed record (a partial frame is cut off).
    """

    def __init__(self, message: str, *, written: list[int] | None = None) -> None:
        self.written = written or []
        super().__init__(message)


class SendError(AgentError):
    """Kafka did not acknowledge every record of a batch.

    The first ``acked`` records of the batch were acknowledged (in order); the
    rest must be sent again. Among those ``acked``, the indexes in ``refused``
    were refused for good (a record too large, a topic not allowed...): sending
    them again cannot help, so they are moved aside rather than retried.
    """

    def __init__(
        self, message: str, *, acked: int = 0, refused: dict[int, str] | None = None
    ) -> None:
        self.acked = acked
        #: records of the acknowledged prefix that Kafka refused for good (not
        #: delivered, never will be): batch index -> the error's name and message
        self.refused = refused or {}
        super().__init__(message)
