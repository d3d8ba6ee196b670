"""What a Kafka batch becomes before and after the actors, in steps without I/O.

:class:`~hub.consumer.UsageConsumer` runs one batch as four named steps; the
two pure ones live here so they can be read and tested on their own:

1. :func:`decode_batch`: every record decoded and validated; what cannot be
   stored becomes a :class:`~hub.storage.batch.DeadLetter` with its reason
   (a decoder that crashes is logged as ``decode_crashed`` too).
   :func:`claimable` then keeps one copy of each CloudEvents identity
   (source, id) and dead-letters events older than the retention horizon.
2. (consumer) the transaction: claim the events, check each event's tenant
   against its customer's (:func:`check_tenants`, with the batch's owners read
   in one query), apply the readings to their actors;
3. :func:`plan_writes`: from the actors' outcomes, the rows the transaction
   writes (raw readings, gaps, totals, aggregates, alerts) and the readings
   that are dead-lettered instead (unprovisionable, refused by their actor);
4. (consumer) after the commit: metrics, the Kafka commit, the outbox hand-off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

import msgspec
import structlog
from aiokafka import TopicPartition

from protocol import (
    RESOURCE_BASE_UNIT,
    DecodedEvent,
    DecodeError,
    UsageGap,
    UsageReading,
    decode_record,
)

from ._exceptions import NotFoundError, TenantMismatchError
from .alerts.records import AlertRecord, alert_record
from .calendar import first_day
from .checks.outcome import Outcome
from .storage.aggregates import AggregateInput
from .storage.batch import DeadLetter, ReadingRow, TotalRow, event_key
from .storage.provision import DEFAULT_TENANT
from .validation import validate_event_id, validate_event_source, validate_reading

__all__ = [
    "Claimable",
    "Decoded",
    "Incoming",
    "UnreadableRecord",
    "WritePlan",
    "check_tenants",
    "claimable",
    "dead_letter",
    "decode_batch",
    "end_ms",
    "plan_writes",
]


_log = structlog.get_logger(component="hub.intake")


class UnreadableRecord(msgspec.Struct, frozen=True):
    """Stands in for a record the Kafka client could not parse, to dead-letter it.

    Its bytes are not known (the client never hands them over), only where it is.
    """

    offset: int
    reason: str
    key: None = None
    value: None = None
    headers: tuple[()] = ()


class Incoming(msgspec.Struct, gc=False):
    """A decoded, storable event and the Kafka record it came in."""

    partition: int
    record: Any
    event: DecodedEvent


class Decoded(msgspec.Struct):
    """A batch after :func:`decode_batch`."""

    events: list[Incoming]
    #: records that cannot be stored, with their reasons (grows in later steps)
    dead: list[DeadLetter]
    #: per partition, the offset after the batch's last record
    offsets: dict[TopicPartition, int]


class Claimable(msgspec.Struct):
    """One event per identity: what the transaction claims in ``processed_events``."""

    #: :func:`~hub.storage.batch.event_key` -> the event
    unique: dict[bytes, Incoming]
    #: copies of an identity already in the batch (later also those claimed before)
    repeated: list[DecodedEvent]


class WritePlan(msgspec.Struct):
    """What the batch transaction writes after the actors decided."""

    readings: list[ReadingRow]
    gaps: list[tuple[str, str, UsageGap]]
    totals: list[TotalRow]
    aggregates: list[AggregateInput]
    alerts: list[AlertRecord]


def end_ms(ev: DecodedEvent) -> int:
    """The interval end of an event already checked to be a reading or a gap."""
    return cast("UsageReading | UsageGap", ev.data).end_ms


def dead_letter(topic: str, partition: int, record: Any, reason: str) -> DeadLetter:
    """``record`` of ``topic``/``partition`` as a dead letter, raw bytes kept."""
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=record.offset,
        reason=reason,
        key=record.key,
        value=record.value,
        headers=list(record.headers or ()),
    )


def _why_not(rec: Any, partition: int, now_ms: int) -> tuple[DecodedEvent | None, str]:
    """The decoded event of ``rec``, or None and the reason it cannot be stored."""
    try:
        ev = decode_record(rec.value, list(rec.headers or ()))
    except DecodeError as exc:
        return None, f"undecodable: {exc}"
    except Exception as exc:  # a decoder bug must not stop the partition
        _log.exception("decode_crashed", partition=partition, offset=rec.offset)
        return None, f"undecodable: {type(exc).__name__}: {exc}"
    if not isinstance(ev.data, UsageReading | UsageGap):
        return None, f"unexpected event type {ev.type!r}"
    if (why := validate_event_id(ev.id)) is not None:
        return None, f"invalid: event id {why}"
    if (why := validate_event_source(ev.source)) is not None:
        return None, f"invalid: event source {why}"
    if (why := validate_reading(ev.data, now_ms=now_ms)) is not None:
        return None, f"invalid: {why}"
    return ev, ""


def decode_batch(
    batch: Mapping[TopicPartition, Sequence[Any]],
    *,
    now_ms: int,
    refused: Mapping[tuple[int, int], str] | None = None,
) -> Decoded:
    """Decode and validate every record; ``refused`` (partition, offset) -> reason are buried."""
    events: list[Incoming] = []
    dead: list[DeadLetter] = []
    offsets: dict[TopicPartition, int] = {}
    for tp, records in batch.items():
        for rec in records:
            if refused and (why := refused.get((tp.partition, rec.offset))) is not None:
                dead.append(dead_letter(tp.topic, tp.partition, rec, why))
                continue
            if isinstance(rec, UnreadableRecord):
                dead.append(dead_letter(tp.topic, tp.partition, rec, rec.reason))
                continue
            ev, why = _why_not(rec, tp.partition, now_ms)
            if ev is None:
                dead.append(dead_letter(tp.topic, tp.partition, rec, why))
                continue
            events.append(Incoming(tp.partition, rec, ev))
        if records:
            offsets[tp] = records[-1].offset + 1
    return Decoded(events, dead, offsets)


def claimable(decoded: Decoded, *, topic: str, horizon_ms: int, retention_days: int) -> Claimable:
    """One copy of each (source, id); events ending before ``horizon_ms`` dead-lettered.

    An event older than the retention horizon cannot be told from a replay
    whose dedup record was dropped with its month, so it is refused by name.
    """
    unique: dict[bytes, Incoming] = {}
    repeated: list[DecodedEvent] = []
    for item in decoded.events:
        ev = item.event
        if unique.setdefault(event_key(ev.source, ev.id), item) is not item:
            repeated.append(ev)
    for key, item in list(unique.items()):
        if end_ms(item.event) < horizon_ms:
            when = dt.datetime.fromtimestamp(horizon_ms / 1000, dt.UTC).date()
            decoded.dead.append(
                dead_letter(
                    topic,
                    item.partition,
                    item.record,
                    f"expired: ends before {when}, the "
                    f"retention horizon (RESMON_RETENTION_DAYS={retention_days})",
                )
            )
            del unique[key]
    return Claimable(unique, repeated)


def check_tenants(
    fresh: Sequence[Incoming],
    owners: dict[str, str],
    known: Mapping[str, str],
    dead: list[DeadLetter],
    *,
    topic: str,
) -> list[Incoming]:
    """The events of ``fresh`` whose tenant is their customer's; the others go to ``dead``.

    ``owners`` maps known customers to their tenant id, ``known`` the tenants the
    batch names (by name or id) to their id. An event without a tenant is the
    default tenant's. An event naming a tenant the hub does not know is refused
    (``unknown_tenant``): tenants are created by an operator, never by a typo in
    an agent's configuration. An unknown customer is claimed, for the rest of
    the batch, by the tenant of its first event (the actors create it there);
    an event for a customer of another tenant is refused (``tenant_mismatch``).
    A reading naming its tenant by name is passed on with the tenant's id.
    """
    kept: list[Incoming] = []
    for item in fresh:
        ev = item.event
        data = cast("UsageReading | UsageGap", ev.data)
        ref = data.tenant_id
        tenant = DEFAULT_TENANT if ref is None else known.get(ref)
        if tenant is None:
            why = (
                f"unknown_tenant: the event's tenant {ref!r} does not exist on this hub "
                f"(create it, or correct tenant_id in the agent's configuration)"
            )
            dead.append(dead_letter(topic, item.partition, item.record, why))
            continue
        owner = owners.setdefault(data.customer_id, tenant)
        if owner != tenant:
            why = (
                f"tenant_mismatch: customer {data.customer_id!r} belongs to tenant {owner}, "
                f"the event is for tenant {ref or 'default'!r}"
            )
            dead.append(dead_letter(topic, item.partition, item.record, why))
            continue
        if ref is not None and ref != tenant:
            data = msgspec.structs.replace(data, tenant_id=tenant)
            item = Incoming(item.partition, item.record, msgspec.structs.replace(ev, data=data))
        kept.append(item)
    return kept


def plan_writes(
    fresh: Sequence[Incoming],
    results: Mapping[str, Outcome | Exception],
    dead: list[DeadLetter],
    *,
    topic: str,
) -> WritePlan:
    """The batch's writes from the actors' ``results`` per resource key.

    A reading whose resource could not be provisioned, or that its actor
    refused, is appended to ``dead`` instead; any other error of an actor is
    raised (the batch is retried).
    """
    outcomes = [r for r in results.values() if isinstance(r, Outcome)]
    poisoned = {id(reading): reason for o in outcomes for reading, reason in o.poisoned}
    readings: list[ReadingRow] = []
    aggregates: list[AggregateInput] = []
    gaps: list[tuple[str, str, UsageGap]] = []
    partition_of: dict[str, int] = {}
    for item in fresh:
        ev = item.event
        data = ev.data
        if isinstance(data, UsageGap):
            gaps.append((ev.source, ev.id, data))
            continue
        assert isinstance(data, UsageReading)
        res = results[data.resource_key]
        partition_of[data.resource_key] = item.partition
        if isinstance(res, TenantMismatchError):
            dead.append(dead_letter(topic, item.partition, item.record, f"tenant_mismatch: {res}"))
        elif isinstance(res, NotFoundError):
            dead.append(dead_letter(topic, item.partition, item.record, f"unprovisionable: {res}"))
        elif isinstance(res, Exception):
            raise res
        elif (reason := poisoned.get(id(data))) is not None:
            dead.append(dead_letter(topic, item.partition, item.record, f"actor refused: {reason}"))
        else:
            readings.append(ReadingRow(res.resource_id, ev.id, data, ev.source))
            aggregates.append((res.resource_id, data, res.unit, res.cost_per_unit))
    alerts = [
        alert_record(o, c, RESOURCE_BASE_UNIT.get(o.resource_type, "byte"))
        for o in outcomes
        for c in o.changes
    ]
    totals = [
        TotalRow(
            o.resource_id,
            o.total,
            first_day(o.period) if o.period >= 0 else None,
            o.stats,
            o.version,
            partition_of.get(o.key, -1),
            o.key,
        )
        for o in outcomes
    ]
    return WritePlan(readings, gaps, totals, aggregates, alerts)
