"""The OpenAPI 3.1 document matches the implementation: the committed file is the served one,
and a schemathesis run against a live admin listener finds no 5xx and no response outside it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import proxy.admin
from proxy.admin import create_admin_app_for
from proxy.admin.openapi import openapi_document
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests.admin.planes import ADMIN_TOKEN, ORG
from tests.loops import background_loop
from tests.oauth_server import serve_app

DOCUMENT = Path(proxy.admin.__file__).with_name("openapi.json")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CREDENTIAL = {"type": "string", "data": {"string": {"value": "canary-schemathesis-key"}}}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_committed_document_is_the_served_one() -> None:
    # Regenerate with: python -m proxy.admin.openapi > proxy/admin/openapi.json
    assert json.loads(DOCUMENT.read_text()) == openapi_document()


async def test_served_document(make_planes: Any) -> None:
    planes = await make_planes({})
    response = await planes.admin.get("/openapi.json")
    assert await response.json() == openapi_document()


TREE: dict[str, Any] = {
    "templates": [
        {
            "id": "crm",
            "baseUrl": "http://127.0.0.1:9/api",
            "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}}],
        },
        {
            "id": "gdrive",
            "baseUrl": "http://127.0.0.1:9/drive",
            "authSchemeConfigs": [
                {
                    "type": "oauth2",
                    "oauth2": {
                        "authorizeUrl": "http://127.0.0.1:9/authorize",
                        "tokenUrl": "http://127.0.0.1:9/token",
                        "grant": {
                            "type": "authorizationCode",
                            "authorizationCode": {"clientId": "c", "clientSecret": "s"},
                        },
                    },
                }
            ],
        },
    ],
    "admin": {"listen": "127.0.0.1:8081", "token": ADMIN_TOKEN},
}


@contextmanager
def admin_in_thread() -> Iterator[str]:
    """The admin app on a real port, served from a thread (schemathesis calls are blocking)."""

    async def start(exits: AsyncExitStack) -> str:
        runtime = build_runtime(TREE, {})
        data = create_app(runtime)
        await data.start()  # not served: the admin app shares its templates and tokens
        exits.push_async_callback(data.close)  # after the admin app's clean-up
        return await serve_app(create_admin_app_for(runtime, data), exits)

    with background_loop() as (run, exits):
        yield run(start(exits))


def create_one(base_url: str, schema: Any) -> str:
    """A connection for the generated cases to find (and, in the end, delete)."""
    body: dict[str, Any] = {
        "connectionTemplateId": "crm",
        "connection": {"name": "seeded", "credentials": [{"credential": CREDENTIAL}]},
    }
    response = requests.post(f"{base_url}/o/{ORG}/connections", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 201, response.text
    # The 201 is in the document too (generated bodies rarely make a valid connection).
    schema["/o/{organisation_id}/connections"]["POST"].validate_response(response)
    connection_id: str = response.json()["id"]
    return connection_id


def aim(case: Any, connection_id: str) -> None:
    """Point a generated case at things that exist, so it gets past the 404s."""
    params = case.path_parameters or {}
    for name, value in (
        ("organisation_id", ORG),
        ("template_id", "gdrive"),
        ("connection_id", connection_id),
    ):
        if name in params:
            params[name] = value
    if isinstance(case.body, dict) and "connectionTemplateId" in case.body:
        case.body["connectionTemplateId"] = "crm"


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_undocumented_response() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    # DELETE last: the other operations find the seeded connection first.
    operations = sorted(
        (cast(Any, result).ok() for result in schema.get_all_operations()),
        key=lambda operation: operation.method.upper() == "DELETE",
    )
    assert len(operations) == 11
    seen: dict[str, set[int]] = {op.label: set() for op in operations}
    with admin_in_thread() as base_url:
        known = create_one(base_url, schema)
        for operation in operations:
            # Half the cases are aimed at what exists, so they get past the 404s.
            cases = st.tuples(operation.as_strategy(), st.booleans())

            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(pair=cases)
            def exercise(pair: tuple[Any, bool]) -> None:
                case, real = pair
                if real:
                    aim(case, known)
                response = case.call_and_validate(
                    base_url=base_url,
                    headers=AUTH,
                    checks=CHECKS,
                )
                seen[case.operation.label].add(response.status_code)

            exercise()
    # Every operation was really called, and got past the auth and the organisation check.
    assert all(statuses - {401, 404} for statuses in seen.values()), seen
