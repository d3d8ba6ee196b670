"""Every error of the REST API is RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _keys import bearer, make_key

from hub import RunningHub
from hub.api._http import PROBLEM_BASE, PROBLEM_JSON, PROBLEM_TYPES, Problem

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The response's problem details, checked against the Problem type and ``status``."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM_JSON
    raw = await resp.read()
    problem = msgspec.json.decode(raw, type=Problem)  # every field of the shape, typed
    assert problem.status == status
    assert problem.type == PROBLEM_BASE + PROBLEM_TYPES[status][0]
    assert problem.title == PROBLEM_TYPES[status][1]
    assert problem.instance == resp.url.path
    answer: dict[str, Any] = msgspec.json.decode(raw)
    return answer


async def test_a_bad_parameter_names_it(http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        async with http.get("/api/alerts", params={"limit": "0"}) as resp:
            problem = await _problem(resp, 400)
    assert problem["type"] == "https://resmon.dev/problems/validation"
    assert problem["detail"] == "limit: must be an integer from 1 to 500, not '0'"
    assert problem["errors"] == [{"parameter": "limit", "message": problem["detail"]}]


async def test_a_bad_body_field_is_named_by_its_json_path(http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        async with http.post("/api/keys", json={"name": " ", "scopes": ["read"]}) as resp:
            problem = await _problem(resp, 400)
        async with http.post("/api/keys", json={"name": "x"}) as resp:
            missing = await _problem(resp, 400)
    assert problem["errors"] == [{"path": "$.name", "message": "name must be 1-200 characters"}]
    assert "scopes" in missing["detail"]
    assert missing["errors"][0]["path"] == "$"


async def test_without_a_key_401_keeps_its_challenge(hub: RunningHub) -> None:
    with anyio.fail_after(10):
        async with (
            aiohttp.ClientSession(base_url=hub.http_url) as anonymous,
            anonymous.get("/api/alerts") as resp,
        ):
            problem = await _problem(resp, 401)
            challenge = resp.headers["WWW-Authenticate"]
    assert challenge == 'Bearer realm="resmon"'
    assert problem["errors"][0]["parameter"] == "Authorization"
    assert "API key is required" in problem["detail"]


async def test_a_missing_scope_is_403(hub: RunningHub, db: asyncpg.Connection) -> None:
    reader = await make_key(db, ["read"])
    with anyio.fail_after(10):
        async with (
            aiohttp.ClientSession(base_url=hub.http_url, headers=bearer(reader)) as s,
            s.get("/api/keys") as resp,
        ):
            problem = await _problem(resp, 403)
    assert problem["detail"] == "this API key lacks the 'admin' scope"


async def test_unknown_routes_and_methods(http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        async with http.get("/api/no-such-thing") as resp:
            unknown = await _problem(resp, 404)
        async with http.delete("/api/alerts") as resp:
            wrong = await _problem(resp, 405)
            allow = resp.headers["Allow"]
    assert unknown["detail"] == "no route /api/no-such-thing"
    assert "errors" not in unknown
    assert set(allow.split(",")) == {"GET", "HEAD"}
    assert wrong["detail"].startswith("DELETE is not allowed on /api/alerts; allowed: ")


async def test_a_body_that_is_not_json_is_415(http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        async with http.post(
            "/api/metrics/ingest", data=b"x", headers={"Content-Type": "text/plain"}
        ) as resp:
            problem = await _problem(resp, 415)
    assert problem["errors"][0]["parameter"] == "Content-Type"


def test_every_problem_type_has_its_own_uri() -> None:
    kinds = [kind for kind, _ in PROBLEM_TYPES.values()]
    assert len(set(kinds)) == len(kinds)
    assert all(kind and kind == kind.lower() and " " not in kind for kind in kinds)
