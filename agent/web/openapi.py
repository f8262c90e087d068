"""The OpenAPI 3.1 document at /api/openapi.json, generated from the route table and the pydantic models.

Every route the web app serves is a `Route` value with its access, answer and
body: the document cannot forget one (a test compares it with the router).
Schemas are pydantic's JSON Schema 2020-12 under #/components/schemas, so a
client (or a test) validates real answers against them directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agent import __version__
from agent.web.routes import Access, Route

__all__ = ["build_openapi", "response_schema"]

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.OPEN: [],
    Access.GUEST: [],
    Access.STAFF: [{"bearer": []}, {"session": []}],
    Access.ADMIN: [{"bearer": []}, {"session": []}],
    Access.STATION: [{"station": []}, {"bearer": []}],
}
_LOCATION = {"Location": {"schema": {"type": "string"}}}  # a redirect's answer
_DESCRIBED = {400: "Malformed request", 401: "Not logged in, or a wrong token", 403: "Not allowed (role, CSRF)",
              404: "Unknown, or not configured on this gateway", 405: "Method not allowed", 409: "Conflict",
              413: "Body too large", 429: "Too many requests", 503: "Unavailable"}


def _ref(schema: dict[str, Any]) -> dict[str, Any]:
    return {"schema": schema}


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    keys: list[tuple[type[BaseModel], Any]] = []
    for r in routes:
        if r.response is not None:
            keys.append((r.response, "serialization"))
        if r.body is not None:
            keys.append((r.body, "validation"))
    refs, defs = models_json_schema(list(dict.fromkeys(keys)), ref_template="#/components/schemas/{model}")
    schemas = {**defs.get("$defs", {}), "Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        responses: dict[str, Any] = {}
        if r.success == 302:
            responses["302"] = {"description": "Redirect", "headers": _LOCATION}
        elif r.response is not None:
            responses["200"] = {"description": "OK", "content": {
                "application/json": _ref(refs[(r.response, "serialization")])}}
        else:
            responses["200"] = {"description": "OK", "content": {r.content_type: {}}}
        logged_in = r.access in (Access.STAFF, Access.ADMIN)
        page = r.content_type == "text/html"
        if logged_in and page:  # a page sends whoever is not logged in to the login page
            responses["302"] = {"description": "Not logged in: to /login", "headers": _LOCATION}
        changes = r.method != "GET"
        implied = {*((401,) if logged_in and not page else ()), *((403,) if r.access is Access.ADMIN or (
            logged_in and changes) else ())}  # 403: not an admin, or a session's CSRF token missing or wrong
        for code in sorted({*r.errors, *implied}):
            json_error = r.path.startswith("/api/") or code == 413  # elsewhere errors are pages (agent/web/app.py)
            responses[str(code)] = {"description": _DESCRIBED.get(code, "Error"), "content": {
                "application/json": _ref({"$ref": "#/components/schemas/Error"})} if json_error else {
                r.content_type: {}}}
        security = _SECURITY[r.access] if not r.station_only else [{"station": []}]
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "security": security,
                              "responses": responses, "x-access": r.access.value}
        names = re.findall(r"{(\w+)}", r.path)
        if names:
            op["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"},
                                 "description": r.params.get(n, "")} for n in names]
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": _ref(refs[(r.body, "validation")])}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "o2o-edge gateway API", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "o2o_session"},
                                "station": {"type": "http", "scheme": "bearer",
                                            "description": "the station's token (or ?token= on the kiosk page)"}},
        },
        "paths": paths,
    }


def response_schema(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    """A standalone JSON Schema for a route's 200 answer (with the document's components), for validators."""
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}
