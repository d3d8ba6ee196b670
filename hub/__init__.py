"""The resmon hub: Kafka usage stream -> resource actors -> PostgreSQL / Redis / REST.

``run_hub(config)`` runs everything in one task group; the packages show the
architecture: ``consumer`` (Kafka batches), ``actors`` (one per resource),
``checks`` (thresholds), ``alerts`` (episodes), ``storage`` (PostgreSQL,
migrations, Redis), ``api`` (REST).
"""

from ._exceptions import (
    BrokerError,
    CacheError,
    ConfigError,
    FencedError,
    HubError,
    MigrationError,
    NotFoundError,
    StorageError,
    UnreachableError,
)
from .app import RunningHub, run_hub
from .config import HubConfig
from .storage.migrate import migrate
from .storage.provision import provision_resource

__all__ = [
    "BrokerError",
    "CacheError",
    "ConfigError",
    "FencedError",
    "HubConfig",
    "HubError",
    "MigrationError",
    "NotFoundError",
    "RunningHub",
    "StorageError",
    "UnreachableError",
    "migrate",
    "provision_resource",
    "run_hub",
]
