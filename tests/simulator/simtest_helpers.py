"""Helpers shared by the simulator tests: a settable clock and request builders."""

from __future__ import annotations

from simulator import Agent
from simulator._ber import Message, Pdu, Value, decode_message, encode_message
from snmpber import GETBULK, NULL, Oid

T0 = 1_700_000_000 * 10**9  # the fleet epoch in tests, ns


class FakeClock:
    """A clock the test moves by hand (integer nanoseconds)."""

    def __init__(self, start_ns: int = T0) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += round(seconds * 1_000_000_000)
        return self.now


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
