"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Schemas are JSON Schema 2020-12, so tests validate recorded responses against them directly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI", "SCHEMAS"]

_num = {"type": "number"}
_int = {"type": "integer"}
_str = {"type": "string"}
_nstr = {"type": ["string", "null"]}
_nnum = {"type": ["number", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _str}},
    "Reader": {
        "type": "object",
        "required": ["id", "protocol", "state", "reads", "since", "error", "frame_errors", "reads_per_s"],
        "properties": {
            "id": _str, "protocol": {"enum": ["uhfreader18", "mercury", "r2000", "em4100"]}, "port": _str,
            "state": {"enum": ["starting", "offline", "connecting", "online", "silent", "paused", "restarting"]},
            "since": _num, "error": _nstr, "reads": _int, "reads_per_s": _num, "tags_in_view": _int,
            "frame_errors": _int, "bytes_discarded": _int, "overruns": _int, "reconnects": _int,
        },
    },
    "Status": {
        "type": "object",
        "required": ["store", "gateway", "version", "uptime_s", "readers", "outbox", "mqtt", "config", "health"],
        "properties": {
            "store": _str, "gateway": _str, "version": _str, "uptime_s": _num, "started_at": _num, "pid": _int,
            "readers": {"type": "array", "items": {"$ref": "#/components/schemas/Reader"}},
            "outbox": {"type": "object", "required": ["depth", "bytes", "oldest_age_s", "dropped"],
                       "properties": {"depth": _int, "bytes": _int, "oldest_age_s": _nnum, "dropped": _int,
                                      "dropped_by_priority": {"type": "object",
                                                              "additionalProperties": _int},
                                      "committed": _int, "write_errors": _int, "disk_bytes": _int,
                                      "max_bytes": _int}},
            "mqtt": {"type": "object", "required": ["connected", "last_error", "reconnects"],
                     "properties": {"connected": {"type": "boolean"}, "last_error": _nstr, "reconnects": _int,
                                    "enabled": {"type": "boolean"}}},
            "config": {"type": "object", "required": ["version"], "properties": {"version": _int}},
            "health": {"type": "object", "required": ["level", "summary", "reasons"],
                       "properties": {"level": {"enum": ["green", "amber", "red"]}, "summary": _str,
                                      "reasons": {"type": "array", "items": _str}}},
            "alarms": {"type": "object", "properties": {"unacknowledged": _int}},
        },
    },
    "History": {"type": "object", "required": ["every_s", "samples"], "properties": {
        "every_s": _num, "samples": {"type": "array", "items": {
            "type": "object", "required": ["t", "events_per_s", "backlog"],
            "properties": {"t": _num, "events_per_s": _num, "backlog": _int}}}}},
    "Me": {"type": "object", "required": ["user", "role", "csrf"],
           "properties": {"user": _str, "role": {"enum": ["staff", "admin"]}, "csrf": _nstr}},
    "Alarms": {"type": "object", "required": ["alarms"], "properties": {"alarms": {"type": "array", "items": {
        "type": "object", "required": ["id", "ts", "gate", "epc", "acknowledged"],
        "properties": {"id": _str, "ts": _num, "gate": _str, "zone": _str, "epc": _str, "gtin": _nstr, "name": _str,
                       "acknowledged": {"type": ["object", "null"]}}}}}},
    "Basket": {"type": "object", "required": ["basket_id", "lines", "total", "currency"], "properties": {
        "station": _str, "basket_id": _str, "total": _str, "currency": _str, "items": _int,
        "unknown_items": _int, "settled": {"type": "boolean"},
        "lines": {"type": "array", "items": {"type": "object",
                                             "required": ["gtin", "name", "qty", "unit_price", "amount", "epcs"],
                                             "properties": {"gtin": _nstr, "name": _str, "qty": _int,
                                                            "unit_price": _nstr, "amount": _nstr,
                                                            "epcs": {"type": "array", "items": _str}}}}}},
    "ReaderAction": {"type": "object", "required": ["reader", "state"], "properties": {"reader": _str, "state": _str}},
}


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _op(summary: str, schema: str, *, errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", **_ref(schema)}}
    for code in errors:
        responses[str(code)] = {"description": "error", **_ref("Error")}
    return {"summary": summary, "responses": responses}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "o2o-edge gateway API", "version": "1"},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "session": {"type": "apiKey", "in": "cookie", "name": "o2o_session"}},
    },
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/api/status": {"get": _op("Gateway status: readers, outbox, cloud link, config, health", "Status")},
        "/api/history": {"get": _op("Event rate and backlog over the last hour", "History")},
        "/api/me": {"get": _op("Who is logged in, and the CSRF token for actions", "Me")},
        "/api/alarms": {"get": _op("Recent gate alarms and their acknowledgement", "Alarms")},
        "/api/actions/readers/{reader}/{action}": {"post": {
            **_op("Restart, pause or resume a reader (admin)", "ReaderAction", errors=(401, 403, 404)),
            "parameters": [{"name": "reader", "in": "path", "required": True, "schema": _str},
                           {"name": "action", "in": "path", "required": True,
                            "schema": {"enum": ["restart", "pause", "resume"]}}]}},
        "/api/checkout/{station}/basket": {"get": {
            **_op("The station's priced basket (station token)", "Basket", errors=(401, 404)),
            "parameters": [{"name": "station", "in": "path", "required": True, "schema": _str}]}},
    },
}
