"""UDP sockets for the agents: an asyncio DatagramProtocol per bound port.

:func:`bind` opens every socket or none: if one port cannot be bound, the ones
already open are closed and :class:`~simulator.PortInUseError` (or
:class:`~simulator.BindError`) names the host, port and router.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Sequence
from typing import cast

import anyio

from ._agent import Agent
from ._exceptions import BindError, PortInUseError

__all__ = ["Binding", "BoundSocket", "bind", "unbind"]

_RCVBUF = 4 * 1024 * 1024


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("_agent", "_transport", "closed")

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        agent = self._agent
        reply = agent.handle(data)
        if reply is not None and self._transport is not None:
            if agent.last_delay:  # slow-response fault
                asyncio.get_running_loop().call_later(agent.last_delay, self._send, reply, addr)
            else:
                self._transport.sendto(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str | object, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class Binding:
    """What to bind: an agent, the port (0: any free port) and a label for messages."""

    __slots__ = ("agent", "label", "port")

    def __init__(self, agent: Agent, port: int, label: str) -> None:
        self.agent = agent
        self.port = port
        self.label = label


class BoundSocket:
    """A bound socket: the actual port, and the transport to close."""

    __slots__ = ("binding", "port", "protocol", "transport")

    def __init__(
        self,
        binding: Binding,
        port: int,
        transport: asyncio.DatagramTransport,
        protocol: _Protocol,
    ) -> None:
        self.binding = binding
        self.port = port
        self.transport = transport
        self.protocol = protocol


async def bind(host: str, bindings: Sequence[Binding]) -> list[BoundSocket]:
    """Bind every socket, or none."""
    loop = asyncio.get_running_loop()
    bound: list[BoundSocket] = []
    try:
        for binding in bindings:
            # Bind the socket ourselves: the error keeps its errno on every loop
            # (uvloop wraps it, and leaks a transport when its own bind fails).
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            try:
                with contextlib.suppress(OSError):  # best effort: absorb bursts
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((host, binding.port))
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                reason = exc.strerror or str(exc)
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(host, binding.port, binding.label, reason) from exc
                raise BindError(host, binding.port, binding.label, reason) from exc
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda b=binding: _Protocol(b.agent),  # type: ignore[misc]
                    sock=sock,
                )
            except BaseException:
                sock.close()
                raise
            port = int(transport.get_extra_info("sockname")[1])
            binding.agent.port = port
            bound.append(BoundSocket(binding, port, transport, protocol))
    except BaseException:
        await unbind(bound)
        raise
    return bound


async def unbind(bound: Sequence[BoundSocket]) -> None:
    """Close the sockets and wait until they are released (shielded from cancellation)."""
    for sock in bound:
        sock.transport.close()
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        for sock in bound:
            await sock.protocol.closed
