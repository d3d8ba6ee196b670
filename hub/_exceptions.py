"""The hub's exception tree, and the translation of library errors into it.

asyncpg, aiokafka and redis raise their own exceptions; the hub's code catches
them at the boundary (:func:`storage_errors`, :func:`broker_errors`,
:func:`cache_errors`) and raises one of these, so a caller handles one tree and
an operator reads one line that names the server and the variable to fix.

::

    HubError
    ├── ConfigError          an environment variable is missing or malformed
    ├── UnreachableError     a server does not answer (names host:port and the variable)
    ├── StorageError         PostgreSQL refused or failed a statement (``permanent``: the
    │   │                    data is refused, a retry fails the same way)
    │   └── MigrationError   a migration failed or an applied file was changed
    ├── FencedError          another hub instance got ahead on a batch's partitions
    ├── BrokerError          Kafka refused or failed a request
    ├── CacheError           Redis failed
    ├── NotFoundError        an entity the caller named does not exist
    ├── RegistryClosedError  the actor registry stopped while a request was pending
    └── FatalError           the hub must stop (the process exits non-zero)
        └── RestartBudgetError  actors failed more often than the restart budget allows
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

__all__ = [
    "BrokerError",
    "CacheError",
    "ConfigError",
    "FatalError",
    "FencedError",
    "HubError",
    "MigrationError",
    "NotFoundError",
    "RegistryClosedError",
    "RestartBudgetError",
    "StorageError",
    "TenantMismatchError",
    "UnreachableError",
    "broker_errors",
    "cache_errors",
    "single_hub_error",
    "storage_errors",
]


class HubError(Exception):
    """Base class for everything the hub raises on purpose."""


class FatalError(HubError):
    """The hub cannot go on; ``resmon hub run`` exits non-zero."""


class RestartBudgetError(FatalError):
    """Actors were restarted more often than the supervision budget allows."""


class RegistryClosedError(HubError):
    """The actor registry stopped while a request to it was pending."""


class ConfigError(HubError):
    """An environment variable is missing or malformed; the message names it."""


class UnreachableError(HubError):
    """A server does not answer at ``address``; ``variable`` is where it was configured."""

    def __init__(self, what: str, address: str, variable: str, reason: str) -> None:
        self.address = address
        self.variable = variable
        super().__init__(f"cannot reach {what} at {address} (set by {variable}): {reason}")


#: SQLSTATE classes that a retry cannot cure: the data itself is refused (22 data
#: exception, e.g. numeric overflow; 23 integrity violation; 54 program limit, e.g. an
#: index row too large)
_PERMANENT_CLASSES = frozenset({"22", "23", "54"})


class StorageError(HubError):
    """PostgreSQL failed a statement.

    ``sqlstate`` is the server's error code when it gave one; ``permanent``
    says whether running the same statement again would fail the same way
    (the data is refused), as opposed to a lost connection or a conflict.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, permanent: bool = False):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.permanent = permanent or (sqlstate is not None and sqlstate[:2] in _PERMANENT_CLASSES)


class MigrationError(StorageError):
    """A migration failed, or a migration file changed after it was applied."""


class FencedError(HubError):
    """Another hub instance committed past the offsets a batch started from.

    Two instances believed they owned the same partitions (one lost its group
    membership without hearing of it), or an actor stayed resident from an
    earlier ownership of its partition while another instance moved its stored
    total on (``resources`` then names them). The batch was not applied; its
    partitions' actors are rebuilt from PostgreSQL and re-read from the
    offsets stored there.
    """

    def __init__(
        self, partitions: list[int], *, resources: list[str] | None = None, unseen: bool = False
    ) -> None:
        self.partitions = partitions
        #: resource keys whose stored total moved under a resident actor, if that is
        #: how the batch was fenced
        self.resources = resources or []
        if self.resources:
            shown = ", ".join(self.resources[:3]) + (" ..." if len(self.resources) > 3 else "")
            why = (
                f"another hub instance moved the stored totals of {len(self.resources)} "
                f"resource(s) ({shown}) since this instance loaded them"
            )
        elif unseen:
            why = "this instance has not read their stored offsets yet"
        else:
            why = "another hub instance committed past this batch's start offsets"
        super().__init__(
            f"partitions {partitions}: {why}; dropping the batch and re-reading from PostgreSQL"
        )


class BrokerError(HubError):
    """Kafka failed a request."""


class CacheError(HubError):
    """Redis failed a command."""


class NotFoundError(HubError):
    """The named entity (alert, customer, ...) does not exist."""


class TenantMismatchError(HubError):
    """A reading names a customer that belongs to another tenant than the reading's."""


_CONNECT_ERRORS = (OSError, socket.gaierror, TimeoutError)


@contextlib.contextmanager
def storage_errors(address: str = "PostgreSQL", variable: str = "DATABASE_URL") -> Iterator[None]:
    """Translate asyncpg / connection errors raised inside the block."""
    import asyncpg  # type: ignore[import-untyped]

    try:
        yield
    except HubError:
        raise
    except _CONNECT_ERRORS as exc:
        raise UnreachableError(
            "PostgreSQL", address, variable, str(exc) or type(exc).__name__
        ) from exc
    except asyncpg.PostgresError as exc:
        raise StorageError(
            f"PostgreSQL: {exc.__class__.__name__}: {exc}", sqlstate=getattr(exc, "sqlstate", None)
        ) from exc
    except (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError) as exc:
        # e.g. a session the server ended (a restart) while a statement was on its way
        raise StorageError(f"PostgreSQL client: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def broker_errors(
    address: str = "Kafka", variable: str = "KAFKA_BOOTSTRAP_SERVERS"
) -> Iterator[None]:
    """Translate aiokafka errors raised inside the block."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        yield
    except HubError:
        raise
    except KafkaConnectionError as exc:
        raise UnreachableError("Kafka", address, variable, str(exc)) from exc
    except KafkaError as exc:
        raise BrokerError(f"Kafka: {exc}") from exc


@contextlib.contextmanager
def cache_errors(address: str = "Redis", variable: str = "REDIS_URL") -> Iterator[None]:
    """Translate redis errors raised inside the block."""
    import redis.exceptions

    try:
        yield
    except HubError:
        raise
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise UnreachableError("Redis", address, variable, str(exc)) from exc
    except redis.exceptions.RedisError as exc:
        raise CacheError(f"Redis: {exc}") from exc


def single_hub_error(group: BaseExceptionGroup[BaseException]) -> HubError | None:
    """The one :class:`HubError` a (nested) task-group failure boils down to, if so."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1 and isinstance(leaves[0], HubError):
        return leaves[0]
    return None
