"""How many GetBulk responses per second one core answers.

Two figures (``python -m benchmarks.simulator`` prints both for three request shapes):

- :func:`bench_handler`: the agent alone (decode, MIB, encode), in process;
- :func:`bench_responses`: over UDP loopback, the fleet in this process's
  event loop and a load generator in a child process keeping a window of
  requests in flight.

The request is a GetBulk (non-repeaters 0, max-repetitions 10) starting at
one or more ifXTable columns, by default ifHCInOctets (Counter64 values
computed per request).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from simulator._ber import Message, Pdu, Value, encode_message
from simulator._fleet import Fleet
from simulator._mib import OIDS
from snmpber import GETBULK, NULL, Oid

from .runner import Figure

__all__ = ["bench_handler", "bench_pysnmp_handler", "bench_responses", "bulk_request", "suite"]

_DEFAULT_COLUMNS: tuple[Oid, ...] = (OIDS.ifHCInOctets,)


def bulk_request(
    columns: Sequence[Oid] = _DEFAULT_COLUMNS,
    *,
    max_repetitions: int = 10,
    community: str = "public",
    request_id: int = 1,
) -> bytes:
    """An encoded GetBulk request starting at ``columns``."""
    varbinds = [(tuple(oid), Value(NULL)) for oid in columns]
    pdu = Pdu(GETBULK, request_id, 0, max_repetitions, varbinds)
    return encode_message(Message(1, community.encode(), pdu))


def bench_handler(
    seconds: float = 1.0,
    *,
    interfaces: int = 16,
    max_repetitions: int = 10,
    columns: Sequence[Oid] = _DEFAULT_COLUMNS,
) -> float:
    """Responses per second of :meth:`Agent.handle` alone (no sockets)."""
    fleet = Fleet.generate(routers=1, interfaces=interfaces, base_port=0)
    agent = fleet.agent(fleet.routers[0])
    request = bulk_request(columns, max_repetitions=max_repetitions)
    assert agent.handle(request) is not None
    handle = agent.handle
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            handle(request)
        count += 1000
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def bench_pysnmp_handler(
    seconds: float = 1.0, *, interfaces: int = 16, max_repetitions: int = 10
) -> float:
    """The same-run baseline: the same GetBulk answered with pysnmp's own codec.

    Decode the request with pyasn1 (pysnmp's v2c message spec), look up the
    next ``max_repetitions`` rows of the column in a sorted list and build the
    response with the counter values of the same fleet, then encode it: what a
    responder built on pysnmp/pyasn1 does per request (pysnmp's full command
    responder adds its dispatcher, MIB instrumentation and VACM on top, so it
    is slower still).
    """
    from bisect import bisect_right

    from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    fleet = Fleet.generate(routers=1, interfaces=interfaces, base_port=0)
    router = fleet.routers[0]
    names = [iface.name for iface in fleet.config.routers[0].interfaces]
    column = OIDS.ifHCInOctets
    rows = [((*column, i + 1), name) for i, name in enumerate(names)]
    keys = [oid for oid, _ in rows]
    request = bulk_request((column,), max_repetitions=max_repetitions)

    def handle(data: bytes) -> bytes:
        msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
        pdu = v2c.apiMessage.get_pdu(msg)
        start = tuple(v2c.apiBulkPDU.get_varbinds(pdu)[0][0])
        n = int(v2c.apiBulkPDU.get_max_repetitions(pdu))
        now = fleet.now()
        out = []
        i = bisect_right(keys, start)
        for oid, name in rows[i : i + n]:
            out.append((oid, v2c.Counter64(fleet.octets(router, name, "in", now))))
        response = v2c.apiBulkPDU.get_response(pdu)
        v2c.apiPDU.set_varbinds(response, out)
        v2c.apiMessage.set_pdu(msg, response)
        return bytes(encoder.encode(msg))

    handle(request)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            handle(request)
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def _serve_and_drive(
    seconds: float, interfaces: int, max_repetitions: int, window: int, columns: Sequence[Oid]
) -> tuple[float, float]:
    fleet = Fleet.generate(routers=1, interfaces=interfaces, base_port=0)
    request = bulk_request(columns, max_repetitions=max_repetitions)
    async with fleet.serve():
        _, host, port, _ = fleet.endpoints[0]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.simulator",
            "client",
            host,
            str(port),
            str(seconds),
            str(window),
            request.hex(),
            stdout=subprocess.PIPE,
        )
        cpu0 = time.process_time()
        out, _ = await proc.communicate()
        cpu = time.process_time() - cpu0
    rate = float(out.decode().strip())
    return rate, cpu / seconds


def bench_responses(
    seconds: float = 3.0,
    *,
    interfaces: int = 16,
    max_repetitions: int = 10,
    window: int = 64,
    columns: Sequence[Oid] = _DEFAULT_COLUMNS,
) -> tuple[float, float]:
    """Responses per second over UDP loopback, and the share of one core the
    simulator used meanwhile (below 1.0: the load generator was the limit).

    The fleet runs on uvloop when it is installed (as ``resmon sim`` does).
    """
    coro = _serve_and_drive(seconds, interfaces, max_repetitions, window, columns)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _client(host: str, port: int, seconds: float, window: int, request: bytes) -> float:
    """Keep ``window`` requests in flight; count responses for ``seconds``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.settimeout(1.0)
        for _ in range(window):
            sock.send(request)
        received = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            try:
                sock.recv(65535)
            except TimeoutError:  # a lost datagram: refill the window
                sock.send(request)
                continue
            received += 1
            sock.send(request)
        return received / (time.perf_counter() - start)


def suite(quick: bool = False) -> list[Figure]:
    """Figures for ``resmon bench``: in-process and UDP GETBULK responses/s."""
    seconds = 1.0 if quick else 3.0
    handler = bench_handler(seconds)
    baseline = bench_pysnmp_handler(seconds)
    udp, busy = bench_responses(seconds)
    per_core = udp / busy if busy > 0 else udp
    command = "resmon bench --only simulator"
    return [
        Figure(
            suite="simulator",
            name="GETBULK responses/s, codec + MIB only (10 x Counter64)",
            value=handler,
            unit="responses/s",
            command=command,
            baseline_name="pysnmp/pyasn1 codec, same request and values",
            baseline_value=baseline,
        ),
        Figure(
            suite="simulator",
            name="GETBULK responses/s over UDP loopback, per core of simulator CPU",
            value=per_core,
            unit="responses/s",
            target=20_000,
            command=command,
            baseline_name="pysnmp/pyasn1 codec alone (no sockets)",
            baseline_value=baseline,
            notes=f"measured {udp:,.0f}/s with the simulator {busy:.0%} busy; "
            "the load generator shares the 2-core machine",
        ),
    ]


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "client":
        host, port, seconds, window, request = argv[1:6]
        rate = _client(host, int(port), float(seconds), int(window), bytes.fromhex(request))
        print(f"{rate:.0f}")
        return
    columns: list[tuple[str, Sequence[Oid]]] = [
        ("ifHCInOctets column (10 x Counter64)", (OIDS.ifHCInOctets,)),
        ("ifXTable from the top (10 x ifName)", ((1, 3, 6, 1, 2, 1, 31, 1, 1),)),
        (
            "ifName+ifHCIn+ifHCOut (30 varbinds)",
            (OIDS.ifName, OIDS.ifHCInOctets, OIDS.ifHCOutOctets),
        ),
    ]
    for label, cols in columns:
        handler = bench_handler(2.0, columns=cols)
        udp, busy = bench_responses(3.0, columns=cols)
        print(
            f"{label}: handler alone {handler:,.0f}/s; UDP loopback {udp:,.0f} responses/s "
            f"with the simulator {busy:.0%} busy (~{udp / max(busy, 1e-9):,.0f}/s per core)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
