"""``resmon bench --only api``: the REST API under load from wrk, an independent tool.

A hub runs with PostgreSQL, Redis and the broker (embedded unless the
``*_URL`` variables are set); wrk (Debian package ``wrk``) drives it with the
Lua scripts in ``benchmarks/wrk/``:

- single ``UsageEvent`` posts with the original plan's load-test payload
  (``test-customer``, bandwidth, a random value below 1000 GB), 100 then 200
  concurrent connections;
- batch posts (lists of events), in events/s;
- ``GET /api/metrics/customer/{id}/current`` and
  ``GET /api/monitoring/customers/{id}/resources`` under 200 connections.

Requests/s, p50 and p99 come from wrk's own report (``--latency``); status
counts from the scripts' ``response()`` hook. Without wrk the suite is
skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Final

import anyio
import msgspec

from .runner import Figure, SuiteSkipped

__all__ = ["WrkResult", "markdown_sections", "parse_wrk", "suite"]

_SCRIPTS: Final = Path(__file__).parent / "wrk"
_UNITS_MS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_COUNT_UNITS: Final = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_TIME: Final = r"([\d.]+)(us|ms|s|m|h)"
#: events per request of the batch stage, and its concurrent connections
BATCH: Final = 1000
BATCH_CONNECTIONS: Final = 4
#: per-key rate limit of the benchmark's hub (each stage uses one key)
BENCH_RATE: Final = "100000000/minute"
#: where each wrk report of the last run is kept, as wrk printed it
RAW_DIR: Final = Path(".resmon-state/bench-api")
#: (what, wrk command, result) of each reported run, for :func:`markdown_sections`
_RUNS: list[tuple[str, str, WrkResult, float, float]] = []


class WrkResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one wrk run reported."""

    connections: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    #: HTTP status -> responses (from the scripts' ``response()`` hook)
    statuses: dict[int, int]
    #: wrk's own count of responses that were not 2xx or 3xx
    non_2xx_3xx: int = 0
    #: socket errors: connect, read, write, timeout
    socket_errors: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def not_200(self) -> int:
        """Responses other than 200, plus requests that got no response (socket errors)."""
        return sum(n for s, n in self.statuses.items() if s != 200) + sum(
            self.socket_errors.values()
        )


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's report (run with ``--latency`` and a script of ``benchmarks/wrk``).

    ValueError naming the line that is missing when ``text`` is not such a report.
    """

    def need(pattern: str, what: str) -> re.Match[str]:
        m = re.search(pattern, text, re.MULTILINE)
        if m is None:
            raise ValueError(f"wrk output has no {what} line (pattern {pattern!r}):\n{text}")
        return m

    conns = need(r"^\s*\d+ threads and (\d+) connections", "'N threads and M connections'")
    total = need(r"^\s*(\d+) requests in " + _TIME, "'N requests in T'")
    rps = need(r"^Requests/sec:\s+([\d.]+)", "'Requests/sec:'")
    p50 = need(r"^\s*50%\s+" + _TIME, "latency distribution 50%")
    p99 = need(r"^\s*99%\s+" + _TIME, "latency distribution 99%")
    statuses = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"^status (\d+) (\d+)$", text, re.MULTILINE)
    }
    if not statuses and int(total.group(1)) > 0:
        raise ValueError(f"wrk output has no 'status <code> <count>' lines (the script's):\n{text}")
    non2xx = re.search(r"^\s*Non-2xx or 3xx responses: (\d+)", text, re.MULTILINE)
    sock = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        text,
        re.MULTILINE,
    )
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
        if sock
        else {}
    )
    return WrkResult(
        connections=int(conns.group(1)),
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000,
        requests_per_s=float(rps.group(1)),
        p50_ms=_ms(p50.group(1), p50.group(2)),
        p99_ms=_ms(p99.group(1), p99.group(2)),
        statuses=statuses,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors={k: v for k, v in errors.items() if v},
    )


async def _wrk(
    what: str, url: str, script: str, connections: int, seconds: int, key: str, **env: str
) -> WrkResult:
    """Run wrk; its report is kept in :data:`RAW_DIR` and listed by :func:`markdown_sections`."""
    cmd = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(_SCRIPTS / script),
        url,
    ]
    load = os.getloadavg()[0]  # what else ran on the machine shows here
    environ = {**os.environ, "RESMON_BENCH_KEY": key, "RESMON_WRK_DIR": str(_SCRIPTS), **env}
    cpu = time.process_time()  # the hub runs in this process: its CPU per request
    done = await anyio.run_process(cmd, env=environ, check=False)
    cpu = time.process_time() - cpu
    out = done.stdout.decode()
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.decode()}{out}")
    result = parse_wrk(out)
    RAW_DIR.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
    (RAW_DIR / f"{slug}.txt").write_text(out)
    shown = " ".join([*cmd[:-3], script, "/" + url.split("/", 3)[-1]])
    if what != "warm-up":
        _RUNS.append((what, shown, result, load, cpu * 1000 / max(result.requests, 1)))
    return result


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def markdown_sections() -> list[str]:
    """The wrk runs of the last :func:`suite` call as a table (for BENCHMARKS.md)."""
    if not _RUNS:
        return []
    lines = [
        "## api: the wrk runs",
        "",
        "| run | wrk | requests | req/s | p50 | p99 | statuses | load before | hub CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for what, shown, r, load, cpu_ms in _RUNS:
        lines.append(
            f"| {what} | `{shown}` | {r.requests:,} | {_rate(r.requests_per_s)} "
            f"| {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {_statuses(r)} | {load:.1f} "
            f"| {cpu_ms:.2f} ms/request |"
        )
    lines += [
        "",
        "Load before: the machine's 1-minute load average when the run started (2 cores;",
        "above 2, other work competed with the hub, PostgreSQL, the broker and wrk).",
        "Hub CPU: the hub process's CPU time over the run per request served (the hub",
        "runs in the benchmark's process, wrk in its own); 1000 / it is the most one",
        "core could serve, whatever else runs.",
    ]
    return ["\n".join(lines)]


def _statuses(r: WrkResult) -> str:
    codes = ", ".join(f"{n:,} x {s}" for s, n in sorted(r.statuses.items()))
    errors = ", ".join(f"{k} {v}" for k, v in r.socket_errors.items())
    return codes + (f"; socket errors: {errors}" if errors else "")


async def _api(quick: bool) -> list[Figure]:
    import aiohttp

    from hub.app import run_hub
    from hub.storage.apikeys import create_key
    from hub.storage.provision import DEFAULT_TENANT

    from .hub_e2e import _KEY_SECRET, _servers, http_config

    seconds = 5 if quick else 20
    _RUNS.clear()
    cmd = "resmon bench --only api" + (" --quick" if quick else "")
    tag = uuid.uuid4().hex[:8]
    figures: list[Figure] = []
    async with _servers() as (dsn, redis_url, bootstrap):
        # the per-key limits stay on (their Redis round trip is part of every request)
        # but far above what one key sends here: the run measures the API, not 429s
        config = msgspec.structs.replace(
            http_config(dsn, redis_url, bootstrap, tag),
            rate_limit_read=BENCH_RATE,
            rate_limit_ingest=BENCH_RATE,
        )
        async with anyio.create_task_group() as tg:
            hub = await tg.start(run_hub, config)
            base = hub.http_url
            ingest_key = await create_key(
                hub.pool, _KEY_SECRET, tenant_id=DEFAULT_TENANT, name="bench-ingest",
                scopes=("ingest",),
            )  # fmt: skip
            read_key = await create_key(
                hub.pool, _KEY_SECRET, tenant_id=DEFAULT_TENANT, name="bench-read",
                scopes=("read",),
            )  # fmt: skip
            current = f"{base}/api/metrics/customer/test-customer/current"
            listing = f"{base}/api/monitoring/customers/test-customer/resources"
            async with aiohttp.ClientSession() as http:
                body = {
                    "customerId": "test-customer",
                    "resourceType": "bandwidth",
                    "value": 1,
                    "unit": "GB",
                }
                auth = {"Authorization": f"Bearer {ingest_key.key}"}
                async with http.post(f"{base}/api/metrics/ingest", json=body, headers=auth) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"ingest refused: {resp.status} {await resp.text()}")
                # the consumer provisions test-customer: then the reads have a resource
                deadline = time.monotonic() + 30
                read_auth = {"Authorization": f"Bearer {read_key.key}"}
                while True:
                    async with http.get(current, headers=read_auth) as resp:
                        if resp.status == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{current} still {resp.status} after 30 s")
                    await anyio.sleep(0.2)

            # reads first, on a hub with no backlog to consume
            for url, what in ((current, "GET .../current"), (listing, "GET .../resources")):
                r = await _wrk(
                    f"{what}, 200 connections", url, "read.lua", 200, seconds, read_key.key
                )
                note = f"wrk -t2 -c200 -d{seconds}s; {r.requests_per_s:,.0f} req/s, "
                note += f"p50 {r.p50_ms:.2f} ms; statuses: {_statuses(r)}"
                figures.append(
                    Figure(suite="api", name=f"{what}: p99", value=r.p99_ms,
                           unit="ms", command=cmd, higher_is_better=False, target=20, notes=note)
                )  # fmt: skip
            ingest = f"{base}/api/metrics/ingest"
            await _wrk("warm-up", ingest, "ingest.lua", 100, 2, ingest_key.key)
            for conns in (100, 200):
                name = f"POST /api/metrics/ingest, one event, {conns} connections"
                r = await _wrk(name, ingest, "ingest.lua", conns, seconds, ingest_key.key)
                note = f"wrk -t2 -c{conns} -d{seconds}s; statuses: {_statuses(r)}"
                figures += [
                    Figure(suite="api", name=f"{name}: requests/s", value=r.requests_per_s,
                           unit="req/s", command=cmd, target=5000, notes=note),
                    Figure(suite="api", name=f"{name}: p50", value=r.p50_ms, unit="ms",
                           command=cmd, higher_is_better=False),
                    Figure(suite="api", name=f"{name}: p99", value=r.p99_ms, unit="ms",
                           command=cmd, higher_is_better=False, target=50),
                    Figure(suite="api", name=f"{name}: responses not 200", value=r.not_200,
                           unit="responses", command=cmd, higher_is_better=False, target=0),
                ]  # fmt: skip
            batch = {"RESMON_BATCH": str(BATCH)}
            what = f"POST /api/metrics/ingest, batches of {BATCH}"
            # a batch takes the hub hundreds of ms: a few connections keep it busy, and a
            # run must be long enough for many to finish
            long = max(seconds, 15)
            r = await _wrk(
                what, ingest, "batch.lua", BATCH_CONNECTIONS, long, ingest_key.key, **batch
            )
            figures.append(
                Figure(suite="api", name=f"POST /api/metrics/ingest, batches of {BATCH}: events/s",
                       value=r.requests_per_s * BATCH * r.statuses.get(200, 0) / max(r.requests, 1),
                       unit="events/s", command=cmd, target=100_000,
                       notes=f"wrk -t2 -c{BATCH_CONNECTIONS} -d{long}s; p99 {r.p99_ms:.1f} ms "
                       f"per request; statuses: {_statuses(r)}")
            )  # fmt: skip
            tg.cancel_scope.cancel()
    return figures


def suite(quick: bool) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise SuiteSkipped("wrk not installed (Debian: apt-get install wrk)")
    result: list[Figure] = anyio.run(_api, quick, backend_options={"use_uvloop": True})
    return result
