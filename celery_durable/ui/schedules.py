"""The dashboard's schedules: the page ``/schedules`` and its API ``/api/schedules`` (every
schedule with its next and last runs and counters, as `Schedule.to_json` gives them)."""

from __future__ import annotations

from typing import Any

from celery_durable.ui.dashboard import Dashboard
from celery_durable.ui.handlers import Api


def list_schedules(dashboard: Dashboard) -> list[dict[str, Any]]:
    return [s.to_json() for s in dashboard.durable.client.list_schedules()]


class SchedulesApi(Api):
    async def get(self) -> None:
        await self.answer(list_schedules, self.dashboard)
