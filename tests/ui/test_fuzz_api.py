"""Property-based fuzzing of every endpoint of the dashboard's JSON API against its own OpenAPI
description (schemathesis: valid and invalid parameters and bodies), on a real ``celery durable
ui`` subprocess: no 5xx, no stack trace in a body, answers as described, and a refused request
changes nothing in the store.

Bounded and reproducible: derandomized, a few dozen examples per operation (a few seconds each).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hardening_helpers import USER, Dash, dashboard, store_snapshot  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from celery_durable.ui.openapi import openapi_document  # noqa: E402

pytestmark = pytest.mark.e2e

PASSWORD = "fuzz-" + "p" * 10
#: the id the description gives as its example, so that some cases reach a real instance
EXAMPLE_ID = "order-1"

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    with dashboard(tmp_path_factory.mktemp("fuzz"), [], auth=(USER, PASSWORD),
                   env={"DURABLE_UI_BASIC_AUTH": f"{USER}:{PASSWORD}"}) as dash:
        dash.durable.client.schedule_new_orchestration("ui_e2e.waiter", input="fuzz",
                                                       instance_id=EXAMPLE_ID)
        yield dash


AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_endpoint_answers_as_described(case: Any, fuzzed: Dash) -> None:
    before = store_snapshot(fuzzed.durable)
    response = case.call(base_url=f"http://{fuzzed.host}", headers=AUTH, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    assert "Traceback" not in response.text and 'File "' not in response.text
    if response.status_code >= 400:
        assert store_snapshot(fuzzed.durable) == before, (case.method, case.formatted_path,
                                                          response.text[:300])
        assert response.json()["status"] == response.status_code
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])
