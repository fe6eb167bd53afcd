"""The dashboard's entities: ``/entities`` (the page) and ``/api/entities`` (a page of entities,
with each one's state, lock holder and backlog)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery_durable.cli_entities import entity_json
from celery_durable.engine.entity_id import EntityInstanceId
from celery_durable.errors import InvalidInstanceIdError
from celery_durable.ui.dashboard import DEFAULT_PAGE, MAX_PAGE, BadRequest, Dashboard, _one, _whole
from celery_durable.ui.handlers import Api

#: the longest state the listing shows (in characters of JSON); the rest is cut
STATE_PREVIEW = 2000


def list_entities(dashboard: Dashboard, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A page of entities by id. Parameters: ``name``, ``key_prefix`` (with ``name``),
    ``limit``, ``continuation_token``."""
    name, key_prefix = _one(params, "name"), _one(params, "key_prefix")
    token = _one(params, "continuation_token")
    limit = _whole(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    if key_prefix and not name:
        raise BadRequest("key_prefix needs name: keys are per entity name")
    try:
        if name is not None:
            EntityInstanceId(name, key_prefix or "x")
        page = dashboard.durable.client.get_all_entities(
            name=name, key_prefix=key_prefix, limit=limit, continuation_token=token)
    except InvalidInstanceIdError as exc:
        raise BadRequest(str(exc)) from None
    return {"items": [entity_json(m) for m in page.items],
            "continuation_token": page.continuation_token}


class EntitiesApi(Api):
    async def get(self) -> None:
        params = {key: [v.decode("utf-8", "replace") for v in values]
                  for key, values in self.request.query_arguments.items()}
        await self.answer(list_entities, self.dashboard, params)
