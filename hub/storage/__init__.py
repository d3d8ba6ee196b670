"""PostgreSQL (schema, migrations, provisioning, batch writes, reads) and the Redis cache."""

from .migrate import Migration, applied_migrations, load_migrations, migrate
from .provision import DEFAULT_TENANT, ResourceRow, load_resource, provision_resource

__all__ = [
    "DEFAULT_TENANT",
    "Migration",
    "ResourceRow",
    "applied_migrations",
    "load_migrations",
    "load_resource",
    "migrate",
    "provision_resource",
]
