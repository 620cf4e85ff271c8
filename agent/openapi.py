"""OpenAPI 3.1 description of the local API. tests/test_api.py walks the aiohttp router
and fails when a route is missing here or documented but not served."""

from __future__ import annotations

from typing import Any

from .status import SCHEMA_VERSION

_ERROR = {"$ref": "#/components/schemas/Error"}
_BACKUP_STATES = [
    "ok", "running", "pending", "failing", "stale", "never-succeeded", "disabled",
    "unavailable", "not-configured",
]  # fmt: skip


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "A bad request (the message says what).",
        401: "Missing or wrong bearer token.",
        404: "No such service or action.",
        409: "Busy (a backup run, or an apply), or the feature is off.",
        422: "The config cannot be used (invalid, or cannot be applied); nothing changed.",
        500: "Internal error (details only in the agent's log).",
        502: "A service behind the agent failed (the message says which).",
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
            "state": {"enum": ["ok", "degraded", "failed"]},
            "state_reasons": {"type": "array", "items": {"type": "string"}},
            "sources": {"type": "object", "additionalProperties": source},
            "services": {"type": "object"},
            "gpus": {"type": "array", "items": {"type": "object"}},
            "backups": {"$ref": "#/components/schemas/BackupStatus"},
            "heal": {"type": ["object", "null"]},
            "backends": {
                "type": "object",
                "description": "The remote Ollamas of stack.litellm.ollama_backends, by URL "
                "(docs/fleet.md); empty on a host without any.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["up", "models", "missing", "latency_seconds", "reason"],
                    "properties": {
                        "up": {"type": "boolean"},
                        "models": {"type": "array", "items": {"type": "string"}},
                        "missing": {"type": "array", "items": {"type": "string"}},
                        "latency_seconds": {"type": ["number", "null"]},
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
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
            "/": {
                "get": {
                    "summary": "The status page: /status for a person, as HTML (no script; "
                    "refreshes every 10 s).",
                    "responses": {
                        "200": {
                            "description": "The page, whatever the overall state.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the agent's event loop answers.",
                    "responses": {"200": _json({"$ref": "#/components/schemas/Healthz"}, "Alive.")},
                }
            },
            "/status": {
                "get": {
                    "summary": "Everything the agent knows, from its latest snapshots.",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Status"}, "ok or degraded."),
                        "503": _json(
                            {"$ref": "#/components/schemas/Status"},
                            "failed: the agent gave up healing a service, or no Ollama "
                            "backend answers (the code is api.failed_status_code).",
                        ),
                    },
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
            "/v1/backups": {
                "get": {
                    "summary": "The backups: their status and the list, newest first "
                    "(from the latest snapshot).",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Backups"}, "Backups.")
                    },
                },
                "post": {
                    "summary": "Start a backup run now. With wait=true, answer when it ended, "
                    "with its result (a failed run is a 200 with result failure).",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean", "default": False},
                            "description": "Wait for the run to end and return its result.",
                        }
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/BackupRun"}, "Run ended."),
                        "202": _json(
                            {"type": "object", "properties": {"started": {"const": True}}},
                            "Run started.",
                        ),
                        **_errors(401, 409),
                    },
                },
            },
            "/v1/apply": {
                "post": {
                    "summary": "Apply the stack: reload the config file, render the units, "
                    "write what changed, "
                    "(re)start in dependency order, wait until healthy. Same config twice: "
                    "nothing changes, nothing restarts.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "purge_data",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean", "default": False},
                            "description": "Also delete the volumes of services the config "
                            "no longer has.",
                        }
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/ApplyReport"}, "Applied."),
                        "502": _json(
                            {"$ref": "#/components/schemas/ApplyReport"},
                            "Applied, but a service did not come up (see failed).",
                        ),
                        **_errors(401, 409, 422),
                    },
                }
            },
            "/v1/update": {
                "post": {
                    "summary": "Pull newer images, restart what changed, roll back a service "
                    "that does not come back healthy.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "pull",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean", "default": True},
                            "description": "false: use the images in local storage as they "
                            "are (e.g. after podman load on an offline host).",
                        }
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "Updated or unchanged."),
                        "502": _json({"type": "object"}, "Rolled back, or failed."),
                        **_errors(401, 409),
                    },
                }
            },
            "/v1/services/{name}/{action}": {
                "post": {
                    "summary": "Start, stop or restart one service's unit, waiting for the job.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "description": "ollama, open-webui, litellm, postgres, or an "
                            "extra service of stack.extra (<project>-<service>)",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["start", "stop", "restart"]},
                        },
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/ServiceAction"}, "Done."),
                        "502": _json({"$ref": "#/components/schemas/ServiceAction"}, "Failed."),
                        **_errors(401, 404, 409),
                    },
                }
            },
            "/v1/models/pull": {
                "post": {
                    "summary": "Pull a model into Ollama; answers when the pull has ended.",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["model"],
                                    "properties": {"model": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "model": {"type": "string"},
                                    "status": {"const": "success"},
                                },
                            },
                            "Pulled.",
                        ),
                        **_errors(400, 401, 409, 502),
                    },
                }
            },
            "/v1/secrets/{name}/rotate": {
                "post": {
                    "summary": "Give a generated secret a new value and restart its users.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["litellm-master-key", "webui-secret-key"]},
                        }
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "Rotated, users restarted."),
                        **_errors(400, 401, 502),
                    },
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
                "ApplyReport": {
                    "type": "object",
                    "properties": {
                        k: {"type": "array", "items": {"type": "string"}}
                        for k in (
                            "written",
                            "removed",
                            "started",
                            "restarted",
                            "stopped",
                            "unchanged",
                            "problems",
                            "warnings",
                            "purged_volumes",
                        )
                    }
                    | {
                        "ok": {"type": "boolean"},
                        "seconds": {"type": "number"},
                        "failed": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "ServiceAction": {
                    "type": "object",
                    "properties": {
                        "service": {"type": "string"},
                        "action": {"type": "string"},
                        "ok": {"type": "boolean"},
                        "result": {"type": "string"},
                        "active_state": {"type": "string"},
                    },
                },
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
                "BackupRun": {
                    "type": "object",
                    "required": ["result", "trigger", "started_at", "finished_at"],
                    "properties": {
                        "result": {"enum": ["success", "failure", "refused"]},
                        "trigger": {"type": "string"},
                        "id": {"type": ["string", "null"]},
                        "started_at": {"type": "string", "format": "date-time"},
                        "finished_at": {"type": "string", "format": "date-time"},
                        "duration_seconds": {"type": "number"},
                        "size_bytes": {"type": ["integer", "null"]},
                        "sha256": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                        "stage": {"type": ["string", "null"]},
                        "stderr": {"type": ["string", "null"]},
                        "warnings": {"type": "array", "items": {"type": "string"}},
                        "pruned": {"type": "array", "items": {"type": "string"}},
                        "retained": {"type": ["integer", "null"]},
                        "free_bytes": {"type": ["integer", "null"]},
                        "required_free_bytes": {"type": ["integer", "null"]},
                    },
                },
                "Backups": {
                    "type": "object",
                    "required": ["status", "backups"],
                    "properties": {
                        "status": {"$ref": "#/components/schemas/BackupStatus"},
                        "backups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "started_at": {"type": "string", "format": "date-time"},
                                    "finished_at": {"type": "string", "format": "date-time"},
                                    "size_bytes": {"type": "integer"},
                                    "verified": {"type": "boolean"},
                                    "keep": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "BackupStatus": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {
                        "state": {"enum": _BACKUP_STATES},
                        "reason": {"type": ["string", "null"]},
                        "last_success_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_success_age_seconds": {"type": ["number", "null"]},
                        "last_size_bytes": {"type": ["integer", "null"]},
                        "last_failure_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_error": {"type": ["string", "null"]},
                        "next_run_at": {"type": ["string", "null"], "format": "date-time"},
                        "retained": {"type": "integer"},
                        "free_bytes": {"type": ["integer", "null"]},
                    },
                },
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
