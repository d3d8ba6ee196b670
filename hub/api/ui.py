"""The dashboard: its pages and files, the login that makes a session, and who is logged in.

The session cookie (``hub/api/session.py``) stands for its API key on every
route (:func:`session_key`, registered with ``auth.add_authenticator``).

=======  ==================  ==========================================================
method   path                what
=======  ==================  ==========================================================
GET      /                   the dashboard (static page; its data comes from the API)
GET      /ui/login           the login page
POST     /ui/login           ``{"key": "rsm_..."}`` -> 200 + ``resmon_session`` cookie
                             and ``{"csrfToken", "expiresAt", ...}``; a bad key is 401
POST     /ui/logout          clears the cookie
GET      /ui/session         the caller: key name, scopes, visible customers, CSRF token
GET      /ui/static/{path}   the dashboard's ES modules, styles and vendored libraries
=======  ==================  ==========================================================

The files are package data (``hub/api/static/``): nothing is built or fetched
at run time, and no page loads anything from another site.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Final

import msgspec
import structlog
from aiohttp import web

from .._exceptions import NotFoundError
from ..apikeys import KeyFormatError, check_key
from ..storage.apikeys import ApiKey, find_key, key_by_id, tenant_customers
from . import session as sessions
from ._http import context_of, error_response, json_response
from .auth import add_authenticator, caller_of, refuse_inactive, unauthorized

__all__ = ["STATIC", "LoggedOut", "Login", "SessionView", "add_ui_routes", "session_key"]

_log = structlog.get_logger(component="hub.api.ui")

#: the dashboard's files
STATIC: Final = Path(__file__).parent / "static"

#: every page: no framing, no scripts or styles from elsewhere, no referrer
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /ui/login``: the API key to log in with."""

    key: str


class LoggedOut(msgspec.Struct, frozen=True, rename="camel"):
    logged_out: bool


class SessionView(msgspec.Struct, frozen=True, rename="camel"):
    """Who the dashboard is logged in as, and what it may show."""

    key_id: str
    key_name: str
    tenant_id: str
    scopes: tuple[str, ...]
    #: the key is restricted to ``customers``
    restricted: bool
    #: the customers the key may see
    customers: list[str]
    #: None without a session (a key in a header needs no CSRF token)
    csrf_token: str | None
    #: None without a session
    expires_at: dt.datetime | None


_decoder = msgspec.json.Decoder(Login)
_SESSION: Final = web.RequestKey("dashboard_session", sessions.Session)
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


async def session_key(request: web.Request) -> ApiKey | web.Response | None:
    """The key behind the request's session cookie (None: no cookie), or the refusal.

    A forged, malformed or expired cookie is 401; a change (POST, PUT, PATCH,
    DELETE) without the session's CSRF token in ``X-CSRF-Token`` is 403; a
    revoked or expired key ends its sessions (401).
    """
    cookie = request.cookies.get(sessions.COOKIE)
    if not cookie:
        return None
    ctx = context_of(request)
    secret = ctx.config.api_key_secret
    try:
        session = sessions.open_session(secret, cookie, time.time())
    except sessions.SessionError as exc:
        ctx.metrics.auth_refused.labels("session").inc()
        _log.info("session_refused", reason=str(exc), path=request.path)
        return unauthorized(f"{exc}; log in again at /ui/login")
    if request.method not in _SAFE_METHODS and not sessions.csrf_matches(
        secret, session, request.headers.get(sessions.CSRF_HEADER)
    ):
        ctx.metrics.auth_refused.labels("csrf").inc()
        _log.info("session_csrf_refused", key_id=session.kid, path=request.path)
        return error_response(
            403,
            f"a {request.method} with the session cookie needs the session's CSRF token in "
            f"{sessions.CSRF_HEADER} (GET /ui/session answers it)",
            sessions.CSRF_HEADER,
        )
    request[_SESSION] = session
    return refuse_inactive(request, await key_by_id(ctx.db, session.kid))


async def _given_key(request: web.Request, given: str) -> ApiKey | web.Response:
    """The usable stored key ``given`` at the login, or the 401 saying why not."""
    ctx = context_of(request)
    try:
        check_key(given)
    except KeyFormatError as exc:
        ctx.metrics.auth_refused.labels("malformed").inc()
        _log.info("api_key_refused", reason="malformed", path=request.path)
        return unauthorized(str(exc))
    return refuse_inactive(request, await find_key(ctx.db, ctx.config.api_key_secret, given))


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers=_PAGE_HEADERS)


async def index(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    return _page("login.html")


def _secure(request: web.Request) -> bool:
    """Whether the browser reached the hub over https (directly or through a proxy)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


async def _view(request: web.Request, key: ApiKey, session: sessions.Session | None) -> SessionView:
    ctx = context_of(request)
    customers = (
        list(key.customer_ids)
        if key.customer_ids is not None
        else await tenant_customers(ctx.db, key.tenant_id)
    )
    secret = ctx.config.api_key_secret
    return SessionView(
        key_id=key.id,
        key_name=key.name,
        tenant_id=key.tenant_id,
        scopes=key.scopes,
        restricted=key.customer_ids is not None,
        customers=customers,
        csrf_token=sessions.csrf_token(secret, session) if session is not None else None,
        expires_at=dt.datetime.fromtimestamp(session.exp, dt.UTC) if session else None,
    )


async def login(request: web.Request) -> web.Response:
    try:
        body = _decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        return error_response(400, f'{exc}; send {{"key": "rsm_..."}}', "$.key")
    except msgspec.DecodeError as exc:
        return error_response(400, f"body is not valid JSON: {exc}", "body")
    found = await _given_key(request, body.key.strip())
    if isinstance(found, web.Response):
        return found
    if "read" not in found.scopes:
        return error_response(
            403, "this API key lacks the 'read' scope the dashboard needs", "$.key"
        )
    ctx = context_of(request)
    expires = int(time.time()) + sessions.SESSION_SECONDS
    if found.expires_at is not None:
        expires = min(expires, int(found.expires_at.timestamp()))
    cookie, session = sessions.seal(ctx.config.api_key_secret, found.id, expires)
    response = json_response(await _view(request, found, session))
    response.set_cookie(
        sessions.COOKIE,
        cookie,
        max_age=max(1, expires - int(time.time())),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )
    response.headers["Cache-Control"] = "no-store"
    _log.info("dashboard_login", key_id=found.id)
    return response


async def logout(request: web.Request) -> web.Response:
    response = json_response(LoggedOut(logged_out=True))
    response.del_cookie(sessions.COOKIE, path="/", samesite="Strict", secure=_secure(request))
    return response


async def whoami(request: web.Request) -> web.Response:
    view = await _view(request, caller_of(request), request.get(_SESSION))
    return json_response(view, headers={"Cache-Control": "no-store"})


_STATIC_ROOT: Final = STATIC.resolve()
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


async def static_file(request: web.Request) -> web.StreamResponse:
    """A file of the dashboard; 404 for anything outside ``hub/api/static/``."""
    wanted = request.match_info["path"]
    try:
        target = (_STATIC_ROOT / wanted).resolve()
        found = target.is_relative_to(_STATIC_ROOT) and target.is_file()
    except (OSError, ValueError):  # a name the file system cannot even look up
        found = False
    if not found:
        raise NotFoundError(f"no dashboard file {wanted[:100]!r}")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    if (kind := _TYPES.get(target.suffix)) is not None:
        headers["Content-Type"] = kind
    return web.FileResponse(target, headers=headers)


def add_ui_routes(app: web.Application) -> None:
    add_authenticator(app, session_key)
    r = app.router
    r.add_get("/", index)
    r.add_get("/ui/login", login_page)
    r.add_post("/ui/login", login)
    r.add_post("/ui/logout", logout)
    r.add_get("/ui/session", whoami)
    r.add_get("/ui/static/{path:.+}", static_file)
