"""hub.intake: a Kafka batch decoded, deduplicated and planned, without any server."""

from __future__ import annotations

from typing import Any

import msgspec
from _hub_testing import T0, minute_reading
from aiokafka import TopicPartition

from hub._exceptions import NotFoundError
from hub.checks import Level
from hub.checks.outcome import Outcome
from hub.intake import claimable, decode_batch, plan_writes
from protocol import UsageGap, encode_event

TP = TopicPartition("resource.usage.raw", 3)
NOW = T0 + 3_600_000


class Record(msgspec.Struct):
    """What aiokafka hands the consumer, as far as the intake reads it."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _record(offset: int, payload: Any, source: str = "urn:resmon:agent:a") -> Record:
    encoded = encode_event(payload, source=source)
    return Record(offset, encoded.key, encoded.value, list(encoded.headers))


def _outcome(key: str, **extra: Any) -> Outcome:
    customer, rtype = key.split("/")[:2]
    fields: dict[str, Any] = {
        "key": key,
        "resource_id": f"id-{key}",
        "customer_id": customer,
        "resource_type": rtype,
        "unit": "GB",
        "kind": "delta",
        "total": 100,
        "period": 2025 * 12 + 10,
        "limit": None,
        "level": Level.NONE,
        "changes": [],
    }
    return Outcome(**{**fields, **extra})


def test_garbage_wrong_types_and_refused_records_become_dead_letters_with_reasons() -> None:
    good = _record(10, minute_reading("c/bandwidth", 1, 500))
    batch = {
        TP: [
            Record(7, None, b"\xff not json", []),
            good,
            _record(11, minute_reading("c/bandwidth", 900, 5)),  # 14 h ahead of the clock
            _record(12, minute_reading("c/bandwidth", 3, 5)),
        ]
    }
    decoded = decode_batch(batch, now_ms=NOW, refused={(3, 12): "refused by PostgreSQL: X"})
    assert [item.record.offset for item in decoded.events] == [10]
    reasons = {d.offset: d.reason for d in decoded.dead}
    assert reasons[7].startswith("undecodable:")
    assert reasons[11].startswith("invalid: endMs")
    assert "ahead of this hub's clock" in reasons[11]
    assert reasons[12] == "refused by PostgreSQL: X"
    assert decoded.offsets == {TP: 13}
    assert all(d.partition == 3 and d.topic == TP.topic for d in decoded.dead)
    assert next(d for d in decoded.dead if d.offset == 7).value == b"\xff not json"


def test_one_copy_per_source_and_id_goes_on_and_old_events_are_refused_by_name() -> None:
    r = minute_reading("c/bandwidth", 1, 500)
    batch = {
        TP: [
            _record(1, r),
            _record(2, r),  # the same identity again
            _record(3, r, source="urn:resmon:agent:b"),  # another producer: its own
            _record(4, minute_reading("c/bandwidth", -600, 7)),  # ten hours earlier
        ]
    }
    decoded = decode_batch(batch, now_ms=NOW)
    claim = claimable(decoded, topic=TP.topic, horizon_ms=T0 - 3_600_000, retention_days=90)
    assert sorted(i.record.offset for i in claim.unique.values()) == [1, 3]
    assert [ev.source for ev in claim.repeated] == ["urn:resmon:agent:a"]
    (expired,) = decoded.dead
    assert expired.offset == 4
    assert "retention horizon (RESMON_RETENTION_DAYS=90)" in expired.reason


def test_the_plan_writes_what_the_actors_accepted_and_buries_the_rest() -> None:
    ok = minute_reading("c/bandwidth", 1, 500)
    refused = minute_reading("c/bandwidth", 2, 600)
    orphan = minute_reading("ghost/bandwidth", 1, 9)
    gap = UsageGap(
        customer_id="c",
        resource_type="bandwidth",
        resource_key="c/bandwidth",
        start_ms=ok.end_ms,
        end_ms=ok.end_ms + 60_000,
        reason="poll_failed",
    )
    batch = {TP: [_record(i, p) for i, p in enumerate([ok, refused, orphan, gap])]}
    decoded = decode_batch(batch, now_ms=NOW)
    fresh = decoded.events
    by_key = {item.event.data.resource_key: item for item in fresh}
    results: dict[str, Outcome | Exception] = {
        "c/bandwidth": _outcome("c/bandwidth", poisoned=[(fresh[1].event.data, "too big")]),
        "ghost/bandwidth": NotFoundError("no customer ghost"),
    }
    plan = plan_writes(fresh, results, decoded.dead, topic=TP.topic)
    assert [r.reading for r in plan.readings] == [ok]
    assert plan.readings[0].resource_id == "id-c/bandwidth"
    assert [g[2] for g in plan.gaps] == [gap]
    assert [(t.resource_id, t.total, t.partition, t.key) for t in plan.totals] == [
        ("id-c/bandwidth", 100, 3, "c/bandwidth")
    ]
    assert len(plan.aggregates) == 1
    reasons = {d.offset: d.reason for d in decoded.dead}
    assert reasons == {1: "actor refused: too big", 2: "unprovisionable: no customer ghost"}
    assert by_key["c/bandwidth"].partition == 3
