"""/openapi.json is kept true by schemathesis: generated requests (valid and invalid) against the
running service, as a signed-in user, must get documented status codes, documented JSON shapes,
and never a 500.

Schemathesis's pytest plugin does not run under pytest 9, so the operations are driven through
its Python API with Hypothesis directly: same strategies, same checks."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.ai_sdk import SDK_BODY_IS_READ_BEYOND_ITS_SCHEMA
from tests.support.users import sign_up

EXAMPLES_PER_OPERATION = 40


def test_openapi_document_is_served_and_is_3_1(live_service: ServiceProcess) -> None:
    document = httpx.get(f"{live_service.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert {"/api/chat/{conversation_id}", "/api/conversations", "/readyz"} <= set(document["paths"])


def test_api_conforms_to_its_openapi_document(live_service: ServiceProcess, stack: LocalStack) -> None:
    headers = {"Authorization": f"Bearer {sign_up(stack).access_token}"}
    config = SchemathesisConfig.from_dict({"operations": [SDK_BODY_IS_READ_BEYOND_ITS_SCHEMA]})
    schema = schemathesis.openapi.from_url(f"{live_service.url}/openapi.json", config=config)
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

        conforms()
    assert len(calls) == 15, calls
    assert sum(calls.values()) >= 15 * 5
