"""The OpenAPI document served at `/openapi.json` (hand-written: the surface is small and stable)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed body or headers",
        401: "Missing, bad or stale signature or token",
        403: "Cross-origin request or missing/bad CSRF token",
        404: "Unknown source",
        413: "Body too large",
        415: "Not JSON",
        503: "Queue or store unavailable; retry later",
    }
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes
    }


def openapi_schema(version: str) -> dict[str, Any]:
    """The document; no source secret or configuration value appears in it."""
    ok_json = {"application/json": {"schema": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "labelhook",
            "version": version,
            "description": "Receiver for annotation-vendor callbacks.",
        },
        "paths": {
            "/hooks/{source}": {
                "post": {
                    "summary": "Receive a vendor callback",
                    "description": (
                        "Verified per the source's vendor rules, made durable, then acknowledged. "
                        "`/hooks/{source}/` (trailing slash, as super.AI requires) is the same endpoint."
                    ),
                    "parameters": [
                        {
                            "name": "source",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"},
                        }
                    ],
                    # Every vendor's callback is a JSON object; its fields are the vendor's (see README).
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "Queued",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                            },
                        },
                        "200": {
                            "description": "Duplicate, or acknowledged without processing",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                            },
                        },
                        **_errors(400, 401, 404, 413, 415, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Process is alive",
                    "responses": {"200": {"description": "Alive", "content": ok_json}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Queue and store reachable",
                    "responses": {"200": {"description": "Ready", "content": ok_json}, **_errors(503)},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": ok_json}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "description": "Open when LABELHOOK_DASHBOARD_TOKEN is unset, else needs that token.",
                    "security": [{}, *_DASHBOARD_AUTH],
                    "responses": {
                        "200": {
                            "description": "Metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            **_ops_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "the token as password"},
                "session": {"type": "apiKey", "in": "cookie", "name": "labelhook_session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "Accepted": {
                    "type": "object",
                    "required": ["duplicate"],
                    "properties": {
                        "delivery_id": {"type": ["string", "null"]},
                        "duplicate": {"type": "boolean"},
                        "queued": {"type": "boolean"},
                    },
                },
            },
        },
    }


_DASHBOARD_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}, {"session": []}]


def _with_404(operation: dict[str, Any]) -> dict[str, Any]:
    operation["get"]["responses"].update(_errors(404))
    return operation


def _ops_paths() -> dict[str, Any]:
    """The dashboard and its JSON API: only routed when LABELHOOK_DASHBOARD_TOKEN is set (else 404)."""

    def get(
        summary: str, *query: str, path: tuple[str, ...] = (), content: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in path]
        parameters += [{"name": p, "in": "query", "schema": {"type": "string"}} for p in query]
        body = content or {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}
        ok = {"200": {"description": summary, "content": body}, **_errors(401)}
        return {
            "get": {
                "summary": summary,
                "security": _DASHBOARD_AUTH,
                "parameters": parameters,
                "responses": ok,
            }
        }

    replay_body = {
        "type": "object",
        "properties": {"ids": {"type": "array", "items": {"type": "string"}}, "all": {"type": "boolean"}},
        "additionalProperties": False,
    }
    return {
        "/dashboard": get("Ops page (HTML)", "source", "status", content={"text/html": {"schema": {}}}),
        "/api/deliveries": get("Recent deliveries, newest first", "source", "status", "limit"),
        "/api/deliveries/{id}": _with_404(
            get(
                "One delivery: status, attempt history (times, reasons, workers), masked body preview",
                path=("id",),
                content={"application/json": {"schema": {"type": "object"}}},
            )
        ),
        "/api/workers": get("Workers heard from in the last day: heartbeat, in flight, totals by outcome"),
        "/api/dead-letters": get("Dead letters with their reasons", "limit"),
        "/api/queue": get(
            "Queue depth by status", content={"application/json": {"schema": {"type": "object"}}}
        ),
        "/api/jobs": get("Known jobs from the job book", "source"),
        "/api/jobs/{source}/{job}": get(
            "One job: files, per-class pixel areas, warnings, mask frames",
            path=("source", "job"),
            content={"application/json": {"schema": {"type": "object"}}},
        ),
        "/api/replay": {
            "post": {
                "summary": "Re-queue dead letters",
                "description": "Cookie or Basic callers also send X-CSRF-Token; cross-origin is refused.",
                "security": _DASHBOARD_AUTH,
                "requestBody": {"required": True, "content": {"application/json": {"schema": replay_body}}},
                "responses": {
                    "200": {
                        "description": "How many were re-queued",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(400, 401, 403, 415),
                },
            }
        },
    }
