"""API keys for tests: the server secret every test hub uses, and keys made in its database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from hub.apikeys import SCOPES
from hub.storage.apikeys import create_key
from hub.storage.provision import DEFAULT_TENANT

__all__ = ["TEST_SECRET", "bearer", "make_key"]

#: RESMON_API_KEY_SECRET of every hub the tests start
TEST_SECRET: Final = "resmon-tests-api-key-secret-0123456789"


async def make_key(
    db: Any,
    scopes: Sequence[str] = SCOPES,
    *,
    tenant_id: str = DEFAULT_TENANT,
    name: str = "tests",
    **options: Any,
) -> str:
    """A new key of ``tenant_id`` (default: the default tenant, every scope)."""
    created = await create_key(
        db, TEST_SECRET, tenant_id=tenant_id, name=name, scopes=scopes, **options
    )
    return created.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
