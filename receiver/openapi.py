"""The OpenAPI document served at `/openapi.json` (hand-written: the surface is small and stable)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed body or headers",
        401: "Missing, bad or stale signature or token",
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
                    "description": "Verified per the source's vendor rules, made durable, then acknowledged.",
                    "parameters": [
                        {
                            "name": "source",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"},
                        }
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
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
        },
        "components": {
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
            }
        },
    }
