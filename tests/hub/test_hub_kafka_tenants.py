"""Readings from Kafka carry the agent's tenant: the hub provisions and checks by it.

Against a running hub on the real broker, PostgreSQL and Redis; the pure step
(:func:`hub.intake.check_tenants`) is also exercised on its own for what one
batch must decide (two tenants claiming one new customer).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import minute_reading, send_reading, until, wait_for
from aiokafka import AIOKafkaProducer, TopicPartition

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub._exceptions import TenantMismatchError
from hub.intake import check_tenants, decode_batch
from hub.storage.batch import DeadLetter
from hub.storage.provision import DEFAULT_TENANT, auto_provision
from protocol import encode_event

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
OWNER = "SELECT tenant_id::text FROM customers WHERE id = $1"


async def _tenant(db: asyncpg.Connection, name: str) -> str:
    tenant_id = str(uuid.uuid4())
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", tenant_id, name)
    return tenant_id


@pytest.fixture
async def acme(db: asyncpg.Connection, unique: str) -> tuple[str, str]:
    """A tenant of the test's own: (name, id)."""
    name = f"acme-{unique}"
    return name, await _tenant(db, name)


def _refused(hub: RunningHub, reason: str) -> float:
    value = hub.metrics.registry.get_sample_value(
        "resmon_hub_tenant_refused_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.integration
@pytest.mark.anyio
async def test_kafka_readings_are_provisioned_in_and_checked_against_their_tenant(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
    acme: tuple[str, str],
) -> None:
    acme_name, acme_id = acme
    default_customer = f"dflt-{unique}"
    taken = await provision_resource(db, default_customer, "bandwidth", None)
    new_acme = f"cust-{unique}/bandwidth"  # a customer the hub has not seen
    by_id = f"byid-{unique}/bandwidth"
    untagged = f"untagged-{unique}/bandwidth"
    stray = f"stray-{unique}/bandwidth"
    late = f"late-{unique}"  # a tenant created only after its agent's first reading
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            send = send_reading
            await send(producer, topic, minute_reading(new_acme, 0, 1_000, tenant_id=acme_name))
            await send(producer, topic, minute_reading(by_id, 0, 500, tenant_id=acme_id))
            await send(producer, topic, minute_reading(untagged, 0, 300))
            await send(producer, topic, minute_reading(taken, 0, 7, tenant_id=acme_name))
            await send(producer, topic, minute_reading(stray, 0, 9, tenant_id=late))
            await wait_for(db, TOTAL, 1_000, new_acme)
            await wait_for(db, TOTAL, 500, by_id)
            await wait_for(db, TOTAL, 300, untagged)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 2)
            # acme's customer is acme's now: a reading without a tenant is the default
            # tenant's and must not reach it
            await send(producer, topic, minute_reading(new_acme, 1, 50))
            await send(producer, topic, minute_reading(new_acme, 2, 20, tenant_id=acme_name))
            await wait_for(db, TOTAL, 1_020, new_acme)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 3)

            assert await db.fetchval(OWNER, new_acme.split("/")[0]) == acme_id
            assert await db.fetchval(OWNER, by_id.split("/")[0]) == acme_id
            assert await db.fetchval(OWNER, untagged.split("/")[0]) == DEFAULT_TENANT
            assert await db.fetchval(OWNER, default_customer) == DEFAULT_TENANT
            assert await db.fetchval(TOTAL, taken) == 0
            assert await db.fetchval(OWNER, stray.split("/")[0]) is None
            assert await db.fetchval(TOTAL, stray) is None
            reasons = [r["reason"] for r in await db.fetch("SELECT reason FROM dead_letters")]
            dead = {r.partition(":")[0]: r for r in reasons}
            assert sorted(r.partition(":")[0] for r in reasons) == [
                "tenant_mismatch",
                "tenant_mismatch",
                "unknown_tenant",
            ]
            assert f"'{late}'" in dead["unknown_tenant"]
            mismatches = [r for r in reasons if r.startswith("tenant_mismatch")]
            assert any(default_customer in r and acme_name in r for r in mismatches)
            assert any(new_acme.split("/")[0] in r and acme_id in r for r in mismatches)
            assert _refused(hub, "tenant_mismatch") == 2
            assert _refused(hub, "unknown_tenant") == 1
            # the readings that were refused are not in the raw rows either
            stored = await db.fetchval(
                "SELECT count(*) FROM usage_metrics m JOIN customer_resources cr "
                "ON cr.id = m.customer_resource_id WHERE cr.resource_key = $1",
                new_acme,
            )
            assert stored == 2
            # an unknown tenant is not remembered: once created, its readings count
            late_id = await _tenant(db, late)
            await send(producer, topic, minute_reading(stray, 1, 11, tenant_id=late))
            await wait_for(db, TOTAL, 11, stray)
            assert await db.fetchval(OWNER, stray.split("/")[0]) == late_id
            tg.cancel_scope.cancel()


@pytest.mark.integration
@pytest.mark.anyio
async def test_auto_provisioning_refuses_a_customer_of_another_tenant(
    db: asyncpg.Connection, unique: str
) -> None:
    acme = await _tenant(db, f"acme-{unique}")
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "bandwidth", None)
    with pytest.raises(TenantMismatchError, match=customer):
        await auto_provision(
            db, customer, "api_calls", f"{customer}/api_calls", "delta", tenant_id=acme
        )
    assert await db.fetchval(TOTAL, f"{customer}/api_calls") is None
    assert await db.fetchval(OWNER, customer) == DEFAULT_TENANT


class _Record(msgspec.Struct):
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _batch(readings: list[Any]) -> dict[TopicPartition, list[_Record]]:
    records = []
    for i, r in enumerate(readings):
        encoded = encode_event(r, source="urn:resmon:agent:a")
        records.append(_Record(i, encoded.key, encoded.value, list(encoded.headers)))
    return {TopicPartition("usage", 0): records}


def test_one_batch_a_new_customer_belongs_to_the_tenant_of_its_first_event() -> None:
    acme, beta = str(uuid.uuid4()), str(uuid.uuid4())
    key = "cust-new/bandwidth"
    batch = _batch(
        [
            minute_reading(key, 0, 1, tenant_id="acme"),
            minute_reading(key, 1, 2, tenant_id=beta),
            minute_reading(key, 2, 3, tenant_id=acme),
            minute_reading(key, 3, 4),
        ]
    )
    decoded = decode_batch(batch, now_ms=2**62)
    dead: list[DeadLetter] = []
    kept = check_tenants(
        decoded.events, {}, {"acme": acme, acme: acme, beta: beta}, dead, topic="usage"
    )
    assert [item.record.offset for item in kept] == [0, 2]
    # the name is replaced by the id, so the actors provision in the right tenant
    assert {item.event.data.tenant_id for item in kept} == {acme}  # type: ignore[union-attr]
    assert [(d.offset, d.reason.partition(":")[0]) for d in dead] == [
        (1, "tenant_mismatch"),
        (3, "tenant_mismatch"),
    ]
    assert dead[0].value == batch[TopicPartition("usage", 0)][1].value  # raw bytes kept


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_deleted_customer_is_forgotten_and_may_come_back_in_another_tenant(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
    acme: tuple[str, str],
) -> None:
    from hub.storage.config import delete_customer

    acme_name, acme_id = acme
    customer = f"moved-{unique}"
    key = f"{customer}/bandwidth"
    await db.execute(
        "INSERT INTO customers (id, tenant_id) VALUES ($1, $2::uuid)", customer, DEFAULT_TENANT
    )
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send_reading(producer, topic, minute_reading(key, 0, 5, tenant_id=acme_name))
            await wait_for(db, "SELECT count(*) FROM dead_letters", 1)
            assert hub.consumer.customer_tenants[customer] == DEFAULT_TENANT
            await delete_customer(db, customer)  # announced to every hub
            await until(lambda: customer not in hub.consumer.customer_tenants)
            await send_reading(producer, topic, minute_reading(key, 1, 7, tenant_id=acme_name))
            await wait_for(db, TOTAL, 7, key)
            assert await db.fetchval(OWNER, customer) == acme_id
            assert _refused(hub, "tenant_mismatch") == 1
            tg.cancel_scope.cancel()
