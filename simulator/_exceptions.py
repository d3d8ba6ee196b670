"""The exception tree of the simulator.

Everything the simulator raises on purpose derives from :class:`SimulatorError`,
so a caller (``resmon demo``, a test) can catch one class and show the message
to a person as is. The one exception is :class:`BerError` (bytes that are not
valid BER): it is the error of the BER codec the simulator shares with the
agent (:mod:`snmpber`), a ``ValueError``, and never leaves a served request
(the agent logic counts such requests as malformed and does not answer them).
"""

from __future__ import annotations

from snmpber import BerError

__all__ = [
    "BerError",
    "BindError",
    "ConfigError",
    "PortInUseError",
    "SimulatorError",
    "UnknownRouterError",
]


class SimulatorError(Exception):
    """Base class for everything the simulator raises."""


class ConfigError(SimulatorError):
    """A fleet configuration that cannot be used; the message names file and key path."""


class BindError(SimulatorError, OSError):
    """A UDP socket for a simulated router could not be bound (the message names it)."""

    def __init__(self, host: str, port: int, router: str, reason: str) -> None:
        self.host = host
        self.port = port
        self.router = router
        super().__init__(f"cannot bind UDP {host}:{port} for router {router!r}: {reason}")


class PortInUseError(BindError):
    """The UDP port a simulated router needs is already bound by someone else."""


class UnknownRouterError(SimulatorError, KeyError):
    """A router or interface name that the fleet does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown router"
