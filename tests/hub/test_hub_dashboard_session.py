"""The dashboard's login: the session cookie, its attributes, its expiry and its end."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import TEST_SECRET, make_key

from hub import RunningHub
from hub.api import session as sessions
from hub.storage.apikeys import key_by_id, revoke_key

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def client(hub: RunningHub) -> AsyncIterator[aiohttp.ClientSession]:
    # no cookie jar: each request says which cookie it sends
    async with aiohttp.ClientSession(
        base_url=hub.http_url, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


async def _login(
    client: aiohttp.ClientSession, key: str, **headers: str
) -> tuple[aiohttp.ClientResponse, dict[str, object]]:
    async with client.post("/ui/login", json={"key": key}, headers=headers) as resp:
        return resp, await resp.json()


async def test_login_sets_a_strict_http_only_cookie_and_answers_a_csrf_token(
    client: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    key = await make_key(db, ("read", "write"), name="operator")
    resp, body = await _login(client, key)
    assert resp.status == 200, body
    morsel = resp.cookies[sessions.COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert not morsel["secure"]  # plain http: a Secure cookie would never come back
    assert morsel["path"] == "/"
    assert 0 < int(morsel["max-age"]) <= sessions.SESSION_SECONDS
    assert key not in morsel.value  # the cookie names the key's id, never the key
    assert body["keyName"] == "operator"
    assert body["scopes"] == ["read", "write"]
    assert isinstance(body["csrfToken"], str)
    assert len(body["csrfToken"]) >= 32
    # behind an https proxy the cookie is Secure
    resp, _ = await _login(client, key, **{"X-Forwarded-Proto": "https"})
    assert resp.cookies[sessions.COOKIE]["secure"] is True


async def test_answers_are_timed_by_route_and_status(
    client: aiohttp.ClientSession, hub: RunningHub
) -> None:
    await _login(client, "rsm_short")
    async with client.get("/ui/login") as resp:
        assert resp.status == 200
    registry = hub.metrics.registry
    name = "resmon_hub_api_request_seconds_count"
    refused = {"method": "POST", "route": "/ui/login", "status": "401"}
    page = {"method": "GET", "route": "/ui/login", "status": "200"}
    assert registry.get_sample_value(name, refused) == 1
    assert registry.get_sample_value(name, page) == 1


async def test_a_session_ends_with_its_keys_expiry_and_its_revocation(
    client: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    key = await make_key(db, ("read",), name="short", expires_at=soon)
    resp, body = await _login(client, key)
    assert int(resp.cookies[sessions.COOKIE]["max-age"]) <= 300
    cookie = {"Cookie": f"{sessions.COOKIE}={resp.cookies[sessions.COOKIE].value}"}
    async with client.get("/ui/session", headers=cookie) as r:
        assert r.status == 200
        assert (await r.json())["csrfToken"] == body["csrfToken"]
    await revoke_key(db, str(body["keyId"]))
    async with client.get("/ui/session", headers=cookie) as r:
        assert r.status == 401
        assert "revoked" in (await r.json())["detail"]


async def test_an_expired_or_forged_session_is_401_naming_why(
    client: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    key = await make_key(db, ("read",), name="old")
    _, body = await _login(client, key)
    kid = str(body["keyId"])
    assert await key_by_id(db, kid) is not None
    expired, _ = sessions.seal(TEST_SECRET, kid, int(time.time()) - 1)
    forged, _ = sessions.seal("another-hubs-secret-0123456789abcdef", kid, int(time.time()) + 60)
    cases = {expired: "expired", forged: "signature", "v1.garbage": "malformed", "x": "malformed"}
    for value, why in cases.items():
        async with client.get("/ui/session", headers={"Cookie": f"{sessions.COOKIE}={value}"}) as r:
            assert r.status == 401, value
            error = (await r.json())["detail"]
            assert why in error
            assert "/ui/login" in error


async def test_bad_logins_say_what_was_wrong(
    client: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    ingest_only = await make_key(db, ("ingest",), name="agent")
    cases = [
        ({"key": "rsm_short"}, 401, "key"),
        ({"nokey": "x"}, 400, "key"),
        ({"key": ingest_only}, 403, "'read' scope"),
    ]
    for payload, status, says in cases:
        async with client.post("/ui/login", json=payload) as resp:
            assert resp.status == status, payload
            assert sessions.COOKIE not in resp.cookies
            assert says in (await resp.json())["detail"]
    async with client.post("/ui/login", data="key=x", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415


async def test_logout_clears_the_cookie_and_pages_are_public_and_locked_down(
    client: aiohttp.ClientSession,
) -> None:
    async with client.post("/ui/logout") as resp:
        assert resp.status == 200
        assert resp.cookies[sessions.COOKIE].value == ""
    for path in ("/", "/ui/login"):
        async with client.get(path) as resp:
            assert resp.status == 200, path
            assert resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
    async with client.get("/ui/session") as resp:
        assert resp.status == 401


def test_a_session_opens_only_with_the_secret_it_was_sealed_with() -> None:
    cookie, session = sessions.seal(TEST_SECRET, "kid", int(time.time()) + 60)
    assert sessions.open_session(TEST_SECRET, cookie, time.time()) == session
    with pytest.raises(sessions.SessionError, match="signature"):
        sessions.open_session(TEST_SECRET + "x", cookie, time.time())
    with pytest.raises(sessions.SessionError, match="expired"):
        sessions.open_session(TEST_SECRET, cookie, time.time() + 61)
    token = sessions.csrf_token(TEST_SECRET, session)
    assert sessions.csrf_matches(TEST_SECRET, session, token)
    assert not sessions.csrf_matches(TEST_SECRET, session, None)
    other = sessions.seal(TEST_SECRET, "kid", int(time.time()) + 60)[1]
    assert not sessions.csrf_matches(TEST_SECRET, other, token)
