"""Kafka plumbing shared by the consumer and the API: topics, producer, publishing."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from protocol import TOPIC_OPTIMIZATION, KafkaRecord

from ._exceptions import broker_errors
from .config import HubConfig

__all__ = ["ensure_topics", "publish", "publish_many", "start_producer"]

_log = structlog.get_logger(component="hub.kafka")


async def ensure_topics(config: HubConfig) -> None:
    """Create the usage, alert and optimization topics if they do not exist."""
    with broker_errors(config.kafka_bootstrap_servers):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=config.kafka_bootstrap_servers,
            client_id=f"{config.source}:admin",
            request_timeout_ms=10_000,
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(config.usage_topic, config.usage_partitions, 1),
                NewTopic(config.alerts_topic, max(1, config.usage_partitions // 2), 1),
                NewTopic(TOPIC_OPTIMIZATION, 1, 1),
            ]
            missing = [t for t in wanted if t.name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
                _log.info("topics_created", topics=[t.name for t in missing])
        finally:
            await admin.close()


async def start_producer(config: HubConfig) -> AIOKafkaProducer:
    """A started producer (no idempotence: the embedded broker does not support it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=config.kafka_bootstrap_servers,
        client_id=config.source,
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=15_000,
    )
    with broker_errors(config.kafka_bootstrap_servers):
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
    return producer


async def publish(producer: AIOKafkaProducer, topic: str, record: KafkaRecord) -> None:
    """Send one CloudEvent record and wait for the broker's acknowledgement."""
    with broker_errors():
        await producer.send_and_wait(
            topic, value=record.value, key=record.key, headers=record.headers
        )


async def publish_many(
    producer: AIOKafkaProducer, topic: str, records: Sequence[KafkaRecord]
) -> None:
    """Send ``records`` (pipelined, key order kept per partition) and wait for every ack."""
    with broker_errors():
        pending = [
            await producer.send(topic, value=r.value, key=r.key, headers=r.headers) for r in records
        ]
        for ack in pending:
            await ack
