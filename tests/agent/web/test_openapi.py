"""The OpenAPI document covers every route the web app serves, with a schema or a content type for its answer."""

from __future__ import annotations

import jsonschema

from agent.app import Agent
from agent.registry import COMPONENTS
from agent.web.app import ROUTES_KEY, make_app


def _app(config_factory):  # type: ignore[no-untyped-def]
    agent = Agent(config_factory(mqtt={"enabled": False}))
    return make_app(agent.ctx, COMPONENTS, users={}, secure_cookies=False, recent_logs=list)


def test_every_route_is_documented(config_factory) -> None:  # type: ignore[no-untyped-def]
    app = _app(config_factory)
    from agent.web.openapi import build_openapi

    spec = build_openapi(list(app[ROUTES_KEY].values()))
    jsonschema.Draft202012Validator.check_schema({"components": spec["components"], "$ref": "#/components/schemas/Error"})
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()}  # type: ignore[union-attr]
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    heads = {(m, p) for m, p in served if m == "head"}  # every GET but a stream answers HEAD (no body)
    assert heads == {("head", p) for p, ops in spec["paths"].items()
                     if "get" in ops and "text/event-stream" not in ops["get"]["responses"].get("200", {}).get("content", {})}
    served -= heads
    assert served == documented, f"undocumented: {served - documented}; documented but not served: {documented - served}"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (method, path)
            if "302" in op["responses"] and "200" not in op["responses"]:
                assert "Location" in op["responses"]["302"]["headers"], (method, path)
                continue
            ok = op["responses"]["200"]["content"]
            assert ok, (method, path)
            if "application/json" in ok:
                assert "$ref" in ok["application/json"]["schema"], (method, path)
    pay = spec["paths"]["/api/checkout/{station}/pay"]["post"]
    assert pay["requestBody"] and {"400", "401", "404", "409"} <= set(pay["responses"])
    assert pay["security"] == [{"station": []}]  # the api token does not pay
    page, scan = spec["paths"]["/"]["get"]["responses"], spec["paths"]["/q/{code}"]["get"]["responses"]
    assert "302" in page and "401" not in page and set(scan) == {"302", "404", "429"}
    assert "text/html" in scan["404"]["content"]  # errors outside /api/ are pages
    handover = spec["paths"]["/api/collect/{order_id}/handover"]["post"]["responses"]
    assert {"401", "403"} <= set(handover)


def test_a_route_added_behind_the_tables_back_is_caught(config_factory) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    app = _app(config_factory)

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/sneaky", sneaky)
    table = app[ROUTES_KEY]
    assert not any(route.path == "/api/sneaky" for route in table.values())
    served = {r.resource.canonical for r in app.router.routes()}  # type: ignore[union-attr]
    assert "/api/sneaky" in served  # the comparison above would fail for it
