"""Helpers shared by the simulator tests: the fleet epoch and request builders."""

from __future__ import annotations

from _clock import T0_NS

from simulator import Agent
from simulator._ber import Message, Pdu, Value, decode_message, encode_message
from snmpber import GETBULK, NULL, Oid

T0 = T0_NS  # the fleet epoch in tests, ns


def request(
    tag: int,
    *oids: Oid,
    community: str = "public",
    request_id: int = 7,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
    version: int = 1,
) -> bytes:
    a, b = (non_repeaters, max_repetitions) if tag == GETBULK else (0, 0)
    pdu = Pdu(tag, request_id, a, b, [(oid, Value(NULL)) for oid in oids])
    return encode_message(Message(version, community.encode(), pdu))


def ask(agent: Agent, data: bytes) -> Message:
    """Send ``data`` to ``agent`` and decode the answer (there must be one)."""
    reply = agent.handle(data)
    assert reply is not None, "the agent did not answer"
    return decode_message(reply)
