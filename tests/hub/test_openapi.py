"""The OpenAPI document: committed as generated, valid, and describing every route of the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import aiohttp
import anyio
import pytest
import yaml
from openapi_spec_validator import validate

from hub import RunningHub
from hub.api import ApiContext, alerts, config, create_app, keys, openapi, recommendations, ui
from hub.apikeys import SCOPES
from hub.config import HubConfig
from hub.metrics import HubMetrics
from hub.notify import preferences
from protocol import _ingest

DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi-monitoring.yaml"
_METHODS = {"get", "put", "post", "delete", "patch"}


def _app_operations() -> set[tuple[str, str]]:
    """(method, path) of every route create_app builds (HEAD is GET's)."""
    config = HubConfig(
        database_url="postgresql://unused/x",
        redis_url="redis://unused",
        kafka_bootstrap_servers="unused:9092",
        api_key_secret="x" * 32,
    )
    app = create_app(ApiContext(config=config, db=None, metrics=HubMetrics()))  # type: ignore[arg-type]
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def _document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    }


def test_the_committed_document_is_the_generated_one() -> None:
    committed = DOCUMENT.read_text(encoding="utf-8")
    assert committed == openapi.render(), (
        "docs/openapi-monitoring.yaml is stale: run "
        "`resmon hub openapi -o docs/openapi-monitoring.yaml` and commit it"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises OpenAPIValidationError naming what is wrong


def test_every_route_of_the_app_is_in_the_document_and_nothing_else() -> None:
    described = _document_operations(openapi.document())
    routes = _app_operations()
    missing = sorted(routes - described)
    assert not missing, f"routes without a row in hub.api.openapi.ROUTES: {missing}"
    assert sorted(described - routes) == []
    ids = [r.operation_id for r in openapi.ROUTES]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_request_bodies_are_the_types_the_handlers_decode() -> None:
    bodies = {(r.method, r.path): r.body for r in openapi.ROUTES if r.body is not None}
    decoded = {
        ("POST", "/api/metrics/ingest"): _ingest._many.type,
        ("POST", "/api/alerts/{id}/acknowledge"): alerts._action_decoder.type,
        ("POST", "/api/alerts/{id}/resolve"): alerts._action_decoder.type,
        ("PUT", "/api/customers/{customerId}/notification-preferences"): (
            preferences._decoder.type
        ),
        ("PUT", "/api/tenants/{tenantId}/notification-preferences"): preferences._decoder.type,
        ("POST", "/api/keys"): keys._decoder.type,
        ("POST", "/api/recommendations/{id}/apply"): recommendations._decoder.type,
        ("POST", "/api/recommendations/{id}/dismiss"): recommendations._decoder.type,
        ("POST", "/api/config/catalog"): config.CatalogCreate,
        ("PATCH", "/api/config/catalog/{resourceType}/{catalogId}"): config.CatalogPatch,
        ("POST", "/api/config/customers"): config.CustomerCreate,
        ("PATCH", "/api/config/customers/{customerId}"): config.CustomerPatch,
        ("POST", "/api/config/customers/{customerId}/resources"): config.ResourceCreate,
        ("PATCH", "/api/config/customers/{customerId}/resources/{resourceKey}"): (
            config.ResourcePatch
        ),
        ("POST", "/api/config/cost-models"): config.CostModelCreate,
        ("PATCH", "/api/config/cost-models/{id}"): config.CostModelPatch,
        ("POST", "/ui/login"): ui._decoder.type,
    }
    assert bodies == decoded
    assert set(get_args(keys.Scope)) == set(SCOPES)  # the schema's enum is the scopes there are


def test_every_error_is_a_problem_and_keyed_routes_say_their_scope() -> None:
    document = openapi.document()
    problem = document["components"]["responses"]
    own = {(r.method.lower(), r.path): {str(s) for s in r.responses} for r in openapi.ROUTES}
    for path, item in document["paths"].items():
        for method, op in item.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400 and status not in own[method, path]:
                    name = answer["$ref"].rsplit("/", 1)[1]
                    assert "application/problem+json" in problem[name]["content"], name
            if op["security"]:
                assert op["x-resmon-scope"] in {"read", "write", "ingest", "admin"}, (method, path)
                assert {"401", "403"} <= set(op["responses"])


@pytest.mark.integration
@pytest.mark.anyio
async def test_the_hub_serves_the_document_and_its_viewer_without_a_key(hub: RunningHub) -> None:
    with anyio.fail_after(20):
        async with aiohttp.ClientSession(base_url=hub.http_url) as anonymous:
            async with anonymous.get("/api/openapi.yaml") as resp:
                assert resp.status == 200
                assert resp.content_type == "application/yaml"
                served = await resp.text()
            async with anonymous.get("/api/docs") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                page = await resp.text()
            async with anonymous.get("/api/docs/redoc.standalone.js") as resp:
                assert resp.status == 200
                viewer = await resp.read()
    assert served == DOCUMENT.read_text(encoding="utf-8")
    assert 'spec-url="/api/openapi.yaml"' in page
    assert '<script src="/api/docs/redoc.standalone.js">' in page
    assert "http" not in page.replace('lang="en"', "")  # nothing fetched from elsewhere
    static = Path(openapi.__file__).parent / "static"
    assert viewer == (static / "redoc.standalone.js").read_bytes()
    assert "MIT License" in (static / "redoc.LICENSE").read_text(encoding="utf-8")
