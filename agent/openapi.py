"""OpenAPI 3.1 description of the local API. tests/test_api.py walks the aiohttp router
and fails when a route is missing here or documented but not served."""

from __future__ import annotations

from typing import Any

from .status import SCHEMA_VERSION

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        401: "Missing or wrong bearer token.",
        422: "Invalid new config; old one kept.",
        500: "Internal error (details only in the agent's log).",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def openapi_document(version: str) -> dict[str, Any]:
    source = {
        "type": "object",
        "required": ["state", "reason", "checked_at", "age_seconds", "data"],
        "properties": {
            "state": {"enum": ["ok", "degraded", "unavailable"]},
            "reason": {"type": ["string", "null"], "description": "Why not ok, for a person."},
            "checked_at": {"type": "string", "format": "date-time"},
            "age_seconds": {"type": "number"},
            "data": {"type": "object"},
        },
    }
    status = {
        "type": "object",
        "required": [
            "schema_version",
            "version",
            "uptime_seconds",
            "config_path",
            "state",
            "sources",
            "services",
            "gpus",
            "backups",
        ],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "version": {"type": "string"},
            "pid": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "uptime_seconds": {"type": "number"},
            "config_path": {"type": "string"},
            "state": {"enum": ["ok", "degraded"]},
            "state_reasons": {"type": "array", "items": {"type": "string"}},
            "sources": {"type": "object", "additionalProperties": source},
            "services": {"type": "object"},
            "gpus": {"type": "array", "items": {"type": "object"}},
            "backups": {"type": "object"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aistack agent local API",
            "version": version,
            "description": "Loopback-only by default. State-changing calls need "
            "`Authorization: Bearer <token>` with the token from api.token_file.",
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the agent's event loop answers.",
                    "responses": {"200": _json({"$ref": "#/components/schemas/Healthz"}, "Alive.")},
                }
            },
            "/status": {
                "get": {
                    "summary": "Everything the agent knows, from its latest snapshots.",
                    "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "Status.")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics; OpenMetrics when the Accept header asks.",
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {
                                "text/plain; version=0.0.4": {"schema": {"type": "string"}},
                                "application/openmetrics-text; version=1.0.0": {
                                    "schema": {"type": "string"}
                                },
                            },
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                }
            },
            "/v1/reload": {
                "post": {
                    "summary": "Reload the config file, as SIGHUP does.",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Reload"}, "Reloaded."),
                        **_errors(401, 422),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["status", "message"],
                            "properties": {
                                "status": {"type": "integer"},
                                "message": {"type": "string"},
                                "problems": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    },
                },
                "Healthz": {
                    "type": "object",
                    "properties": {"status": {"const": "alive"}, "version": {"type": "string"}},
                },
                "Status": status,
                "Reload": {
                    "type": "object",
                    "properties": {
                        "reloaded": {"type": "boolean"},
                        "config_path": {"type": "string"},
                    },
                },
            },
        },
    }
