"""What the dashboard reads and does, as JSON-ready values (no web framework here).

Reads go through the same calls as ``celery durable`` (the `Store` queries, `DurableClient`);
actions are the client's management calls, so a button does exactly what the client does.
Bad input raises `BadRequest` (or the package error the client raises) before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable.cli import instance_json
from celery_durable.client import _decode_token, _encode_token, check_instance_id
from celery_durable.engine import history as h
from celery_durable.engine.actions import is_local_event
from celery_durable.engine.history import HistoryEvent, utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import DurableError, OrchestrationNotFoundError
from celery_durable.runtime.messages import activity_task_id
from celery_durable.store import InstanceRecord
from celery_durable.store.history_pages import history_page
from celery_durable.ui.svg import render_svg
from celery_durable.ui.timeline import Timeline, build_timeline
from celery_durable.ui.waits import event_waits

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

#: instances per page unless the request asks for another number (1 to MAX_PAGE)
DEFAULT_PAGE = 50
MAX_PAGE = 500
#: history events per page unless the request asks for another number (1 to MAX_HISTORY_PAGE)
DEFAULT_HISTORY_PAGE = 200
MAX_HISTORY_PAGE = 1000
#: most sub-orchestrations listed on an instance's page
MAX_CHILDREN = 200


class BadRequest(DurableError, ValueError):
    """A dashboard request whose parameters or body are malformed."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = [v for v in params.get(key, ()) if v.strip()]
    return values[-1].strip() if values else None


def _time(params: Mapping[str, Sequence[str]], key: str) -> datetime | None:
    value = _one(params, key)
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59-14:00 is past year 9999
        raise BadRequest(f"{key} must be an ISO 8601 date-time such as 2026-05-01T12:00 (UTC "
                         f"unless it says otherwise), got {value!r}") from None


def _whole(params: Mapping[str, Sequence[str]], key: str, default: int | None, low: int,
           high: int) -> Any:
    """The whole number ``key`` (``low`` to ``high``), or ``default`` when not given."""
    text = _one(params, key)
    if text is None:
        return default
    if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 20
            and low <= int(text) <= high):
        raise BadRequest(f"{key} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)


def _statuses(params: Mapping[str, Sequence[str]]) -> list[str] | None:
    found: list[str] = []
    for value in params.get("status", ()):
        for part in value.split(","):
            name = part.strip().upper()
            if not name:
                continue
            if name not in OrchestrationStatus.__members__:
                raise BadRequest(f"unknown status {part.strip()!r}; use one of "
                                 + ", ".join(s.value for s in OrchestrationStatus))
            found.append(name)
    return found or None


def _duration(record: InstanceRecord, now: datetime) -> float:
    end = record.completed_at or (now if not record.status.is_terminal else record.updated_at)
    return max((end - record.created_at).total_seconds(), 0.0)


def summary_json(record: InstanceRecord, now: datetime) -> dict[str, Any]:
    """An instance as a row of the instances list (no payloads)."""
    failure = record.failure or {}
    return {"instance_id": record.instance_id, "name": record.name, "version": record.version,
            "status": record.status.value, "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "completed_at": record.completed_at.isoformat() if record.completed_at else None,
            "duration_seconds": _duration(record, now),
            "parent_instance_id": record.parent_instance_id,
            "failure": (f"{failure.get('error_type')}: {failure.get('message')}"
                        if failure else None)}


def event_json(instance_id: str, execution_id: str, event: HistoryEvent) -> dict[str, Any]:
    """A history event as the API gives it: ``to_json`` plus the Celery task id of a
    TaskScheduled (the id Flower shows that activity run under)."""
    data = event.to_json()
    data["celery_task_id"] = None
    if event.kind == h.TASK_SCHEDULED and event.task_id is not None and \
            not is_local_event(event.kind, event.data):  # a local activity has no Celery task
        attempt = int((event.data or {}).get("attempt") or 1)
        data["celery_task_id"] = activity_task_id(instance_id, execution_id, event.task_id,
                                                  attempt)
    return data


class Dashboard:
    """The dashboard's reads and actions over one `Durable`; ``flower_url`` (optional) is where
    Flower runs, so that activity runs link to their Celery task there."""

    def __init__(self, durable: Durable, *, flower_url: str | None = None,
                 refresh_seconds: float = 5.0) -> None:
        self.durable = durable
        self.store = durable.store
        self.client = durable.client
        self.flower_url = flower_url.rstrip("/") if flower_url else None
        self.refresh_seconds = refresh_seconds

    def config(self) -> dict[str, Any]:
        return {"flower_url": self.flower_url, "refresh_seconds": self.refresh_seconds,
                "statuses": [s.value for s in OrchestrationStatus],
                "orchestrators": sorted(self.durable.registry.orchestrators)}

    # -- reads -----------------------------------------------------------------------------------

    def list_instances(self, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """A page of instances, newest first, with counts per status (for the other filters).

        Parameters: ``status`` (repeat or comma-separate), ``name``, ``created_from``,
        ``created_to``, ``q`` (part of the instance id), ``limit``, ``continuation_token``.
        """
        filters: dict[str, Any] = {
            "name": _one(params, "name"), "created_from": _time(params, "created_from"),
            "created_to": _time(params, "created_to"), "id_contains": _one(params, "q")}
        statuses = _statuses(params)
        limit = _whole(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        token = _one(params, "continuation_token")
        try:
            after = _decode_token(token) if token else None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        records = self.store.search_instances(statuses=statuses, limit=limit + 1, after=after,
                                              **filters)
        more = len(records) > limit
        records = records[:limit]
        now = _now()
        counts = self.store.count_matching_by_status(**filters)
        return {"items": [summary_json(r, now) for r in records],
                "continuation_token": _encode_token(records[-1]) if more and records else None,
                "counts": {s.value: counts.get(s.value, 0) for s in OrchestrationStatus},
                "total": sum(counts.values())}

    def _record(self, instance_id: str) -> InstanceRecord:
        record = self.store.get_instance(check_instance_id(instance_id))
        if record is None:
            raise OrchestrationNotFoundError(f"no orchestration instance has id "
                                             f"{instance_id!r} (it may have been purged)")
        return record

    def instance(self, instance_id: str) -> dict[str, Any]:
        """One instance: its fields and payloads (as ``celery durable show --json``), the events
        in its inbox, its duration and its sub-orchestrations."""
        record = self._record(instance_id)
        children = self.store.children_of(record.instance_id, MAX_CHILDREN)
        now = _now()
        return {**instance_json(record), "inbox": self.store.inbox_size(record.instance_id),
                "duration_seconds": _duration(record, now),
                "children": [summary_json(child, now) for child in children]}

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """The whole history of the current execution (see `history_page` for the API's)."""
        record = self._record(instance_id)
        events = self.client.get_orchestration_history(record.instance_id)
        return [event_json(record.instance_id, record.execution_id, e) for e in events]

    def history_page(self, instance_id: str,
                     params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """A page of the history: ``limit`` events (default `DEFAULT_HISTORY_PAGE`) with a
        ``seq`` above ``after`` (from the first event), or the last ones below ``before``;
        ``total``, ``first_seq`` and ``last_seq`` say what other pages there are."""
        limit = _whole(params, "limit", DEFAULT_HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
        after = _whole(params, "after", None, -1, 2**53)
        before = _whole(params, "before", None, 0, 2**53)
        record = self._record(instance_id)
        page = history_page(self.store, record.instance_id, after=after, before=before,
                            limit=limit)
        items = [event_json(record.instance_id, record.execution_id, e) for e in page.events]
        return {"items": items, "total": page.total, "limit": limit,
                "first_seq": page.first_seq, "last_seq": page.last_seq,
                "earlier": bool(items) and items[0]["seq"] != page.first_seq,
                "later": bool(items) and items[-1]["seq"] != page.last_seq}

    def timeline(self, instance_id: str) -> Timeline:
        record = self._record(instance_id)
        events = self.client.get_orchestration_history(record.instance_id)
        waits = event_waits(self.durable, record.instance_id, record.name, events)
        ended = (record.completed_at or record.updated_at) if record.status.is_terminal else None
        return build_timeline(record.instance_id, record.execution_id, events, _now(), ended,
                              record.status.value, waits)

    def timeline_svg(self, instance_id: str) -> str:
        return render_svg(self.timeline(instance_id))

    # -- actions ---------------------------------------------------------------------------------

    def raise_event(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("the event needs a name (a non-empty string)")
        self.client.raise_orchestration_event(instance_id, name.strip(), data=body.get("data"))
        return {"message": f"Raised {name.strip()!r} to {instance_id}."}

    def suspend(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.client.suspend_orchestration(instance_id, reason=_reason(body),
                                          cancel_running=_flag(body, "cancel_running", False))
        return {"message": f"Asked {instance_id} to suspend."}

    def resume(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.client.resume_orchestration(instance_id, reason=_reason(body))
        return {"message": f"Asked {instance_id} to resume."}

    def terminate(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        recursive = _flag(body, "recursive", True)
        self.client.terminate_orchestration(instance_id, output=body.get("output"),
                                            recursive=recursive,
                                            cancel_running=_flag(body, "cancel_running", False))
        return {"message": f"Asked {instance_id} to terminate"
                           + (" (and its sub-orchestrations)." if recursive else ".")}

    def purge(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        recursive = body.get("recursive", True)
        if not isinstance(recursive, bool):
            raise BadRequest(f"recursive must be true or false, got {recursive!r}")
        count = self.client.purge_orchestration(instance_id, recursive=recursive)
        return {"message": f"Purged {count} instance(s).", "purged": count}


    def restart(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        target = self.client.restart_orchestration(
            instance_id, restart_with_new_instance_id=_flag(body, "new_id", False))
        text = f"Restarted {instance_id}." if target == instance_id else \
            f"Restarted {instance_id} as {target}."
        return {"message": text, "instance_id": target}

    def rewind(self, instance_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.client.rewind_orchestration(instance_id, reason=_reason(body))
        return {"message": f"Rewound {instance_id}; it runs again from its failures."}


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false, got {value!r}")
    return value


def _reason(body: Mapping[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest(f"reason must be a string, got {reason!r}")
    return reason or None


#: what each action is called in the API path (POST /api/instances/<id>/<action>)
ACTIONS = ("events", "suspend", "resume", "terminate", "purge", "restart", "rewind")


def run_action(dashboard: Dashboard, action: str, instance_id: str,
               body: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``action`` (one of `ACTIONS`) on the instance with the request's JSON ``body``."""
    methods = {"events": dashboard.raise_event, "suspend": dashboard.suspend,
               "resume": dashboard.resume, "terminate": dashboard.terminate,
               "purge": dashboard.purge, "restart": dashboard.restart,
               "rewind": dashboard.rewind}
    check_instance_id(instance_id)
    return methods[action](instance_id, body)
