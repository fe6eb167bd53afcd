"""The OpenAPI 3.0 description of the dashboard's JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers (and fuzzed against them in tests/ui/test_fuzz_api.py),
so that what a request may hold and what it gets back are stated, not guessed.
"""

from __future__ import annotations

from typing import Any

from celery_durable.engine.status import OrchestrationStatus
from celery_durable.ids import MAX_KEY_LENGTH
from celery_durable.ui.dashboard import (
    DEFAULT_HISTORY_PAGE,
    DEFAULT_PAGE,
    MAX_HISTORY_PAGE,
    MAX_PAGE,
)

_REF = "#/components/schemas/"
_ERRORS = {
    "400": "Malformed input (parameters, body, Host).",
    "401": "Credentials missing or wrong (when started with basic auth).",
    "403": "A state-changing request sent by another site's page.",
    "404": "No such instance or path.",
    "409": "The instance is in a state that refuses the action.",
    "413": "The body is larger than the dashboard reads.",
    "415": "An action's body is not sent as application/json.",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _responses(ok: dict[str, Any], codes: tuple[str, ...], description: str = "OK"
               ) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": description, **ok}}
    for code in ("400", "401", *codes):
        out[code] = {"description": _ERRORS[code], **_json(_ref("Error"))}
    return out


_INSTANCE_ID = {"name": "instance_id", "in": "path", "required": True, "example": "order-1",
                "description": "The instance id (1 to 256 characters, no spaces).",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}}
_ANY: dict[str, Any] = {"nullable": True}  # any JSON value


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _action(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "parameters": [_INSTANCE_ID],
        "requestBody": {"required": False, **_json(
            {"type": "object", "properties": body, "additionalProperties": True})},
        "responses": _responses(_json(_ref("ActionResult")),
                                ("403", "404", "409", "413", "415")),
    }}


_SCHEMAS: dict[str, Any] = {
    "EntityPage": {"type": "object", "required": ["items", "continuation_token"], "properties": {
        "items": {"type": "array", "items": {"type": "object", "required": [
            "id", "name", "key", "state", "locked_by", "backlog_queue_size", "last_modified"],
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"},
                "state": _ANY, "locked_by": {"type": "string", "nullable": True},
                "backlog_queue_size": {"type": "integer"},
                "last_modified": {"type": "string"}}}},
        "continuation_token": {"type": "string", "nullable": True}}},
    "Error": {"type": "object", "required": ["error", "status"], "properties": {
        "error": {"type": "string"}, "status": {"type": "integer"},
        "type": {"type": "string"}}},
    "Config": {"type": "object", "required": ["refresh_seconds", "statuses"], "properties": {
        "flower_url": {"type": "string", "nullable": True},
        "refresh_seconds": {"type": "number"},
        "statuses": {"type": "array", "items": {"type": "string"}},
        "orchestrators": {"type": "array", "items": {"type": "string"}}}},
    "Summary": {"type": "object", "required": ["instance_id", "name", "status"],
                "properties": {
                    "instance_id": {"type": "string"}, "name": {"type": "string"},
                    "version": {"type": "string", "nullable": True},
                    "status": {"type": "string"},
                    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
                    "completed_at": {"type": "string", "nullable": True},
                    "duration_seconds": {"type": "number"},
                    "parent_instance_id": {"type": "string", "nullable": True},
                    "failure": {"type": "string", "nullable": True}}},
    "InstancePage": {"type": "object", "required": ["items", "counts", "total"], "properties": {
        "items": {"type": "array", "items": _ref("Summary")},
        "continuation_token": {"type": "string", "nullable": True},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "total": {"type": "integer"}}},
    "Instance": {"type": "object", "required": ["instance_id", "status", "inbox", "children"],
                 "properties": {
                     "instance_id": {"type": "string"}, "name": {"type": "string"},
                     "status": {"type": "string"}, "execution_id": {"type": "string"},
                     "generation": {"type": "integer"}, "input": _ANY, "output": _ANY,
                     "custom_status": _ANY, "failure": _ANY,
                     "tags": {"type": "object", "nullable": True},
                     "inbox": {"type": "integer"}, "duration_seconds": {"type": "number"},
                     "children": {"type": "array", "items": _ref("Summary")}}},
    "Event": {"type": "object", "required": ["seq", "kind", "timestamp"], "properties": {
        "seq": {"type": "integer"}, "kind": {"type": "string"},
        "timestamp": {"type": "string"},
        "task_id": {"type": "integer", "nullable": True},
        "name": {"type": "string", "nullable": True}, "data": _ANY,
        "celery_task_id": {"type": "string", "nullable": True}}},
    "HistoryPage": {"type": "object", "required": ["items", "total", "limit"], "properties": {
        "items": {"type": "array", "items": _ref("Event")},
        "total": {"type": "integer"}, "limit": {"type": "integer"},
        "first_seq": {"type": "integer", "nullable": True},
        "last_seq": {"type": "integer", "nullable": True},
        "earlier": {"type": "boolean"}, "later": {"type": "boolean"}}},
    "Timeline": {"type": "object", "required": ["start", "end", "bars"], "properties": {
        "start": {"type": "string"}, "end": {"type": "string"},
        "bars": {"type": "array", "items": {"type": "object"}}}},
    "ActionResult": {"type": "object", "required": ["message"], "properties": {
        "message": {"type": "string"}, "purged": {"type": "integer"}}},
}


def openapi_document(prefix: str = "") -> dict[str, Any]:
    """The description of the API served under ``prefix``."""
    statuses = ", ".join(s.value for s in OrchestrationStatus)
    instance = "/api/instances/{instance_id}"
    paths: dict[str, Any] = {
        "/api/config": {"get": {"summary": "What the pages need: statuses, refresh, Flower.",
                                "responses": _responses(_json(_ref("Config")), ())}},
        "/api/openapi.json": {"get": {"summary": "This description.",
                                      "responses": _responses(_json({"type": "object"}), ())}},
        "/api/entities": {"get": {
            "summary": "A page of durable entities by id: state, lock holder, backlog.",
            "parameters": [
                _query("name", "Only entities of this name.", {"type": "string"}),
                _query("key_prefix", "Only keys starting with this (needs name).",
                       {"type": "string"}),
                _query("limit", f"Entities per page (default {DEFAULT_PAGE}).",
                       {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                _query("continuation_token", "The previous page's token (the last id).",
                       {"type": "string"}),
            ],
            "responses": _responses(_json(_ref("EntityPage")), ())}},
        "/api/instances": {"get": {
            "summary": "A page of instances, newest first, with counts per status.",
            "parameters": [
                _query("status", f"Only these statuses (repeat or comma-separate): {statuses}.",
                       {"type": "string"}),
                _query("name", "Only instances of this orchestrator.", {"type": "string"}),
                _query("created_from", "Created at or after (ISO 8601, UTC unless it says).",
                       {"type": "string"}),
                _query("created_to", "Created before (ISO 8601).", {"type": "string"}),
                _query("q", "Part of the instance id.", {"type": "string"}),
                _query("limit", f"Instances per page (default {DEFAULT_PAGE}).",
                       {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                _query("continuation_token", "The previous page's token.", {"type": "string"}),
            ],
            "responses": _responses(_json(_ref("InstancePage")), ())}},
        instance: {"get": {"summary": "One instance: fields, payloads, inbox, children.",
                           "parameters": [_INSTANCE_ID],
                           "responses": _responses(_json(_ref("Instance")), ("404",))}},
        instance + "/history": {"get": {
            "summary": "A page of the current execution's history, in seq order.",
            "parameters": [
                _INSTANCE_ID,
                _query("after", "Events with a seq above this one (the next page).",
                       {"type": "integer", "minimum": -1}),
                _query("before", "The last events with a seq below this one (the page "
                                 "before), when after is not given.",
                       {"type": "integer", "minimum": 0}),
                _query("limit", f"Events per page (default {DEFAULT_HISTORY_PAGE}).",
                       {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_PAGE}),
            ],
            "responses": _responses(_json(_ref("HistoryPage")), ("404",))}},
        instance + "/timeline": {"get": {
            "summary": "The timeline's bars (activities, timers, sub-orchestrations, waits).",
            "parameters": [_INSTANCE_ID],
            "responses": _responses(_json(_ref("Timeline")), ("404",))}},
        instance + "/timeline.svg": {"get": {
            "summary": "The timeline drawn as SVG.", "parameters": [_INSTANCE_ID],
            "responses": _responses({"content": {"image/svg+xml": {"schema": {
                "type": "string"}}}}, ("404",))}},
        instance + "/events": _action("Raise an event to the instance.", {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "data": _ANY}),
        instance + "/suspend": _action("Suspend the instance.", {
            "reason": {"type": "string", "nullable": True},
            "cancel_running": {"type": "boolean"}}),
        instance + "/resume": _action("Resume the suspended instance.", {
            "reason": {"type": "string", "nullable": True}}),
        instance + "/terminate": _action("Terminate the instance (and its children).", {
            "output": _ANY, "recursive": {"type": "boolean"},
            "cancel_running": {"type": "boolean"}}),
        instance + "/purge": _action("Delete the ended instance and its history.", {
            "recursive": {"type": "boolean"}}),
        instance + "/restart": _action("Run the orchestration again from the beginning.", {
            "new_id": {"type": "boolean"}}),
        instance + "/rewind": _action("Run the failed instance again from its failures.", {
            "reason": {"type": "string", "nullable": True}}),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "celery_durable dashboard API", "version": "1",
                 "description": "The JSON API behind the dashboard's pages (see docs/ui.md)."},
        "servers": [{"url": prefix or "/"}],
        "security": [{"basicAuth": []}, {}],
        "paths": paths,
        "components": {"schemas": _SCHEMAS, "securitySchemes": {
            "basicAuth": {"type": "http", "scheme": "basic"}}},
    }
