"""What the REST API does with the bodies it is sent: media types, bytes, values."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import event, sample, wait_for
from _problem import named
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import RunningHub, provision_resource

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    # the running hub's tasks use the random module while hypothesis draws in another thread
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
ALERT = "/api/alerts/00000000-0000-0000-0000-000000000001"
#: every route that reads a body: (method, path, a body it would accept as JSON)
USAGE = b'{"customerId":"c","resourceType":"cpu","value":1,"unit":"second"}'
BODY_ROUTES = [
    ("POST", "/api/metrics/ingest", USAGE),
    ("POST", f"{ALERT}/acknowledge", b'{"by":"noc"}'),
    ("POST", f"{ALERT}/resolve", b'{"by":"noc"}'),
    ("PUT", "/api/customers/c/notification-preferences", b"{}"),
    ("PUT", "/api/tenants/default/notification-preferences", b"{}"),
]  # fmt: skip
ROUTE_IDS = ["ingest", "acknowledge", "resolve", "customer-prefs", "tenant-prefs"]


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_that_is_not_declared_json_is_refused_with_415_naming_its_type(
    http: aiohttp.ClientSession, method: str, path: str, body: bytes, content_type: str
) -> None:
    """A cross-site form can send these types; before, the JSON inside was acted on."""
    with anyio.fail_after(30):
        resp = await http.request(method, path, data=body, headers={"Content-Type": content_type})
        assert resp.status == 415
        answer = await resp.json()
    assert content_type in answer["detail"]
    assert "application/json" in answer["detail"]
    assert named(answer) == "Content-Type"


async def test_text_plain_ingest_publishes_nothing_and_json_with_a_charset_is_counted(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    refused = msgspec.json.encode(event(customer, "5", "byte"))
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest", data=refused, headers={"Content-Type": "text/plain"}
        )
        assert resp.status == 415
        resp = await http.post(
            "/api/metrics/ingest",
            data=msgspec.json.encode(event(customer, "2", "byte", eventId=f"ok-{unique}")),
            headers={"Content-Type": "Application/JSON; charset=utf-8"},
        )
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 2, f"{customer}/bandwidth")
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1


def _bad_utf8_bodies() -> list[tuple[bytes, int]]:
    """Bodies that are JSON but for one byte that is not UTF-8, with that byte's offset."""
    good = msgspec.json.encode(event("c", "1", "byte"))
    inside = good.replace(b'"c"', b'"\xff"')  # inside a JSON string: msgspec raised out of it
    truncated = b'{"by": "caf\xc3"}'  # a two-byte sequence cut short
    return [
        (inside, inside.index(b"\xff")),
        (truncated, truncated.index(b"\xc3")),
        (b"\xfe" + good, 0),
    ]


@pytest.mark.parametrize(("method", "path", "_body"), BODY_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(("body", "offset"), _bad_utf8_bodies(), ids=["in-string", "cut", "lead"])
async def test_a_body_that_is_not_utf8_is_a_400_naming_the_byte_offset(
    http: aiohttp.ClientSession, method: str, path: str, _body: bytes, body: bytes, offset: int
) -> None:
    """Before, a bad byte inside a JSON string was a 500 (UnicodeDecodeError out of msgspec)."""
    with anyio.fail_after(30):
        resp = await http.request(
            method, path, data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        answer = await resp.json()
    assert f"not valid UTF-8 at byte offset {offset} " in answer["detail"]
    assert named(answer) == "$"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def _with_a_bad_byte(draw: st.DrawFn, body: st.SearchStrategy[bytes]) -> bytes:
    """``body`` with a few bytes put in somewhere, often not UTF-8 and inside a JSON string."""
    raw = draw(body)
    quotes = [i + 1 for i, byte in enumerate(raw) if byte == ord('"')]
    at = draw(st.sampled_from(quotes) if quotes else st.integers(0, len(raw)))
    at = draw(st.just(at) | st.integers(0, len(raw)))
    bad = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
    return raw[:at] + draw(bad | st.binary(min_size=1, max_size=3)) + raw[at:]


_decimals = st.decimals(allow_nan=True, allow_infinity=True).map(str)
_usage_event = st.fixed_dictionaries(
    {
        "customerId": st.text(max_size=30) | st.integers(),
        "resourceType": st.sampled_from(["bandwidth", "storage", "api_calls", "cpu", "memory"])
        | st.text(max_size=10),
        "value": _decimals | st.integers() | st.floats() | st.text(max_size=10),
        "unit": st.sampled_from(["byte", "GB", "MiB", "request", "ms", "second", "hour"])
        | st.text(max_size=8),
    },
    optional={
        "timestamp": st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=30),
        "intervalStart": st.datetimes().map(lambda d: d.isoformat()) | st.integers(),
        "eventId": st.text(max_size=210),
        "resourceName": st.text(max_size=20) | st.none(),
        "tenantId": st.text(max_size=20) | st.none(),
        "source": st.text(max_size=60),
    },
)
_usage_body = (_usage_event | st.lists(_usage_event, max_size=4)).map(_json_body)
_action_body = st.fixed_dictionaries(
    {}, optional={"by": st.text() | st.integers() | st.none(), "comment": _json_values}
).map(_json_body)
_channel = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans() | st.integers(),
        "minSeverity": st.sampled_from(["LOW", "MEDIUM", "HIGH", "CRITICAL"]) | st.text(),
        "recipients": st.lists(st.text(max_size=40), max_size=3),
        "url": st.sampled_from(["https://example.com/hook", "http://127.0.0.1/x"]) | st.text(),
        "secret": st.text(max_size=20) | st.none(),
    },
)
_prefs_body = st.fixed_dictionaries(
    {},
    optional={
        "email": _channel,
        "webhook": _channel,
        "quietHours": st.fixed_dictionaries(
            {"start": st.text(max_size=6), "end": st.sampled_from(["07:00", "25:99"])},
            optional={"timezone": st.sampled_from(["UTC", "Europe/Paris", "Nowhere/Else"])},
        ),
        "repeatIntervalMinutes": st.integers() | st.none(),
        "rateLimitsPerHour": st.dictionaries(st.text(max_size=8), st.integers()),
    },
).map(_json_body)


def _bodies(shaped: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, random JSON, bodies of the route's shape, and either with a bad byte."""
    anything = st.binary(max_size=200) | _json_values.map(_json_body) | shaped
    return anything | _with_a_bad_byte(anything)


async def _fuzz(
    http: aiohttp.ClientSession,
    requests: st.SearchStrategy[tuple[str, str, bytes]],
    examples: int,
) -> None:
    """Send ``examples`` drawn requests; fail on a 5xx or an error not in problem details."""

    async def send(method: str, path: str, body: bytes) -> str | None:
        headers = {"Content-Type": "application/json"}
        async with http.request(method, path, data=body, headers=headers) as resp:
            if resp.status >= 500:
                return f"{resp.status}: {await resp.text()}"
            if resp.status >= 400 and (
                resp.content_type != "application/problem+json"
                or not {"type", "title", "status", "detail"} <= set(await resp.json())
            ):
                return f"{resp.status} not problem details: {await resp.text()}"
        return None

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests)
    def check(request: tuple[str, str, bytes]) -> None:
        failure = anyio.from_thread.run(send, *request)
        assert failure is None, (request, failure)

    run: Callable[[], None] = check
    await anyio.to_thread.run_sync(run)


async def test_fuzzed_ingest_bodies_never_answer_5xx(http: aiohttp.ClientSession) -> None:
    requests = st.tuples(st.just("POST"), st.just("/api/metrics/ingest"), _bodies(_usage_body))
    with anyio.fail_after(240):
        await _fuzz(http, requests, examples=300)


async def test_fuzzed_alert_action_and_preference_bodies_never_answer_5xx(
    http: aiohttp.ClientSession,
) -> None:
    alert = st.sampled_from([ALERT, "/api/alerts/not-a-uuid"])
    action = st.tuples(
        st.just("POST"),
        st.builds("{}/{}".format, alert, st.sampled_from(["acknowledge", "resolve"])),
        _bodies(_action_body),
    )
    prefs = st.tuples(
        st.just("PUT"),
        st.sampled_from(
            [
                "/api/customers/c/notification-preferences",
                "/api/tenants/default/notification-preferences",
            ]
        ),
        _bodies(_prefs_body),
    )
    with anyio.fail_after(240):
        await _fuzz(http, action | prefs, examples=300)


async def test_the_plans_load_test_payloads_are_all_200_and_the_rounded_values_are_counted(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    """The plan's k6 body: fractional GB from Math.random() * 1000, no timestamp, no eventId.

    Before, almost every one of these was a 400 ("not a whole number of bytes") and a
    good one was a 202, so the plan's ``status is 200`` check failed on every request.
    """
    values = [random.random() * 1000 for _ in range(120)]
    # JSON numbers as a JavaScript engine writes them: the shortest repr of the double
    bodies = [
        b'{"customerId":"test-customer","resourceType":"bandwidth","value":%s,"unit":"GB"}'
        % repr(v).encode()
        for v in values
    ]
    expected = [
        int((Decimal(repr(v)) * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN)) for v in values
    ]
    fractional = sum(Decimal(repr(v)) * 10**9 != int(Decimal(repr(v)) * 10**9) for v in values)
    headers = {"Content-Type": "application/json"}

    answers: list[dict[str, Any]] = []

    async def post(body: bytes) -> None:
        async with http.post("/api/metrics/ingest", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            answers.append(await resp.json())

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(post, body)
        await wait_for(db, TOTAL, sum(expected), "test-customer/bandwidth")
    assert len(answers) == len(values)
    assert sum(a["accepted"] for a in answers) == len(values)
    assert sum(a["rounded"] for a in answers) == fractional > 0
    assert all(Decimal(a["maxRounding"]) <= Decimal("0.5") for a in answers)


async def test_rounding_is_reported_and_strict_keeps_the_refusal(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    fine = [event(customer, "0.0000000004"), event(customer, "2.5", "byte"), event(customer, "3")]
    with anyio.fail_after(60):
        resp = await http.post("/api/metrics/ingest", json=fine)
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert (answer["accepted"], answer["rounded"], answer["maxRounding"]) == (3, 2, "0.5")
        await wait_for(db, TOTAL, 0 + 2 + 3 * 10**9, f"{customer}/bandwidth")
        resp = await http.post(
            "/api/metrics/ingest", params={"strict": "true"}, json=event(customer, "2.5", "byte")
        )
        assert resp.status == 400
        refused = await resp.json()
        assert "2.5 byte is not a whole number of bytes" in refused["detail"]
        assert named(refused) == "$.unit/$.value"
        resp = await http.post(
            "/api/metrics/ingest", params={"strict": "yes"}, json=event(customer, "2", "byte")
        )
        assert resp.status == 400
        assert named(await resp.json()) == "strict"
        resp = await http.post(
            "/api/metrics/ingest", params={"strict": "true"}, json=event(customer, "7", "byte")
        )
        assert resp.status == 200
        assert (await resp.json())["rounded"] == 0
        await wait_for(db, TOTAL, 2 + 3 * 10**9 + 7, f"{customer}/bandwidth")


async def test_cpu_time_finer_than_a_second_is_counted_to_the_millisecond(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    """Before, CPU counted whole seconds: 0.0015 h became 5 s and 1.5 s became 2 s."""
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "cpu", 3_600_000)
    cpu = {"resourceType": "cpu"}
    exact = [event(customer, "0.0015", "hour", **cpu), event(customer, "1.5", "second", **cpu)]
    finer = [
        event(customer, "0.0004", "second", **cpu),
        event(customer, "0.0000001", "hour", **cpu, timestamp="2026-11-20T10:00:01Z"),
    ]
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest", json=[*exact, event(customer, "7", "ms", **cpu)]
        )
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert (answer["accepted"], answer["rounded"], answer["maxRounding"]) == (3, 0, "0")
        await wait_for(db, TOTAL, 5_400 + 1_500 + 7, key)
        # finer than a millisecond: rounded half to even (0.4 ms and 0.36 ms to 0) and said so
        resp = await http.post("/api/metrics/ingest", json=finer)
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert (answer["accepted"], answer["rounded"], answer["maxRounding"]) == (2, 2, "0.4")
        resp = await http.post("/api/metrics/ingest", params={"strict": "true"}, json=finer[0])
        assert resp.status == 400
        assert (
            "0.0004 second is not a whole number of milliseconds" in (await resp.json())["detail"]
        )
        resp = await http.post(
            "/api/metrics/ingest",
            params={"strict": "true"},
            json=event(customer, "0.25", "second", **cpu),
        )
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 5_400 + 1_500 + 7 + 250, key)
    assert [
        (r["metric_value"], r["metric_unit"])
        for r in await db.fetch("SELECT metric_value, metric_unit FROM usage_metrics ORDER BY 1")
    ] == [(0, "millisecond"), (0, "millisecond"), (7, "millisecond"), (250, "millisecond"),
          (1_500, "millisecond"), (5_400, "millisecond")]  # fmt: skip


async def test_equal_events_without_event_id_or_timestamp_posted_at_once_all_count(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    """Before, those arriving in the same millisecond got one id and were counted once."""
    customer = f"cust-{unique}"
    same = {"customerId": customer, "resourceType": "api_calls", "value": 1, "unit": "request"}
    ids: list[str] = []

    async def post(body: Any) -> None:
        async with http.post("/api/metrics/ingest", json=body) as resp:
            assert resp.status == 200, await resp.text()
            ids.extend((await resp.json())["eventIds"])

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for _ in range(150):
                tg.start_soon(post, same)
            tg.start_soon(post, [same] * 50)  # equal events in one request, too
        await wait_for(db, TOTAL, 200, f"{customer}/api_calls")
    assert len(set(ids)) == len(ids) == 200
    assert sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 0


async def test_an_unknown_customer_is_provisioned_from_the_catalog_and_counted(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"new-{unique}"
    with anyio.fail_after(60):
        resp = await http.post("/api/metrics/ingest", json=event(customer, "3", "byte"))
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 3, f"{customer}/bandwidth")
    row = await db.fetchrow(
        "SELECT auto_provisioned, limit_value FROM customer_resources WHERE resource_key = $1",
        f"{customer}/bandwidth",
    )
    assert (row["auto_provisioned"], row["limit_value"]) == (True, None)
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_resource_that_cannot_be_provisioned_is_refused_at_the_door_not_dropped_later(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    """Before, this answered 200 and the hub then dead-lettered it as unprovisionable."""
    known = f"cust-{unique}"
    await provision_resource(db, known, "cpu", 3_600_000)
    # the default tenant no longer offers cpu: a new customer's cpu cannot be created
    await db.execute(
        "UPDATE resource_catalogs SET resource_type = 'cpu-retired' WHERE resource_type = 'cpu'"
    )
    cpu = {"resourceType": "cpu", "unit": "second"}
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest",
            json=[event(known, "5", **cpu), event(f"nobody-{unique}", "7", **cpu)],
        )
        assert resp.status == 422
        refused = await resp.json()
        assert (
            f"'nobody-{unique}/cpu' does not exist and cannot be provisioned" in refused["detail"]
        )
        assert named(refused) == "$[1].resourceType"
        # nothing of the refused request was published; a known resource is still counted
        resp = await http.post("/api/metrics/ingest", json=event(known, "2", **cpu))
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 2_000, f"{known}/cpu")  # 2 s, in milliseconds
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_retry_with_the_same_event_id_counts_once_even_without_a_timestamp(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    """Before, the hub filled in the time itself, so a retry 1.5 s later counted again."""
    customer = f"cust-{unique}"
    body = {
        "customerId": customer,
        "resourceType": "bandwidth",
        "value": 7,
        "unit": "GB",
        "eventId": "order-1",
    }
    answers = []
    with anyio.fail_after(60):
        for _ in range(3):
            async with http.post("/api/metrics/ingest", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answers.append((await resp.json())["eventIds"])
            await anyio.sleep(1.5)  # the retry scenario itself: a later arrival time
        # a later, different event: it is counted, and proves the retries were consumed
        later = {**body, "eventId": "order-2", "value": 1}
        async with http.post("/api/metrics/ingest", json=later) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 8 * 10**9, f"{customer}/bandwidth")
    assert answers[0] == answers[1] == answers[2]
    assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 2


async def test_two_customers_with_the_same_event_id_are_two_events(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    with anyio.fail_after(60):
        for customer in (f"a-{unique}", f"b-{unique}"):
            body = {
                "customerId": customer,
                "resourceType": "api_calls",
                "value": 5,
                "unit": "request",
                "eventId": "shared-id",
            }
            async with http.post("/api/metrics/ingest", json=body) as resp:
                assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 5, f"a-{unique}/api_calls")
        await wait_for(db, TOTAL, 5, f"b-{unique}/api_calls")


async def test_an_event_id_reused_for_a_different_event_is_a_409_and_not_counted(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    body = {
        "customerId": customer,
        "resourceType": "api_calls",
        "value": 5,
        "unit": "request",
        "eventId": "once",
    }
    with anyio.fail_after(60):
        async with http.post("/api/metrics/ingest", json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post("/api/metrics/ingest", json={**body, "value": 6}) as resp:
            assert resp.status == 409
            problem = await resp.json()
        assert named(problem) == "$.eventId"
        assert "once" in problem["detail"]
        other = {**body, "eventId": None}
        async with http.post("/api/metrics/ingest", json=[other, {**body, "value": 6}]) as resp:
            assert resp.status == 409
            assert named(await resp.json()) == "$[1].eventId"
        await wait_for(db, TOTAL, 5, f"{customer}/api_calls")
