"""What the management API tests share: the admin token, both planes of one process, request
bodies and the calls they make."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from proxy.admin import create_admin_app
from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.connections.runtime import Runtime
from proxy.connections.templates import Templates
from proxy.store import Store

ADMIN_TOKEN = "canary-admin-token-9c41"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORG = DEFAULT_ORGANISATION_ID
CONNECTIONS = f"/o/{ORG}/connections"


@dataclass
class Planes:
    """The data plane and the admin API of one process, with what they share."""

    proxy: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    store: Store
    templates: Templates
    runtime: Runtime


MakePlanes = Callable[..., Awaitable[Planes]]


def api_key_template(base_url: str, **extra: Any) -> dict[str, Any]:
    """A template whose connections sign with a header API key."""
    return {
        "id": "crm",
        "route": "/crm",
        "baseUrl": base_url,
        "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Api-Key", "in": "header"}}],
        **extra,
    }


def string_credential(value: str) -> dict[str, Any]:
    return {"credential": {"type": "string", "data": {"string": {"value": value}}}}


def create_body(
    name: str, *credentials: dict[str, Any], template: str = "crm", **extra: Any
) -> dict[str, Any]:
    """`EnvSystemConnectionCreate`."""
    return {
        "connectionTemplateId": template,
        "connection": {"name": name, "credentials": list(credentials)},
        **extra,
    }


def header(seen: Mapping[str, Any], name: str) -> list[str]:
    """Values of header `name` as the echo upstream received them."""
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


async def create(planes: Planes, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to the connections endpoint; asserts 201 and returns the created connection."""
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def callback_later(
    planes: Planes, location: str, aiohttp_client: Any, seconds: float = 601
) -> ClientResponse:
    """The provider's redirect to the callback (`location`) followed `seconds` after the flow
    started: on an admin app over the same store whose clock is that much later."""
    later: TestClient[Any, Any] = await aiohttp_client(
        create_admin_app(
            planes.runtime,
            templates=planes.templates,
            store=planes.store,
            clock=lambda: time.time() + seconds,
        )
    )
    split = urlsplit(location)
    return await later.get(f"{split.path}?{split.query}")


def substitute(document: Any, env: dict[str, str]) -> Any:
    """API bodies get the `${...}` marks replaced (proxy.yaml interpolates them itself)."""
    text = json.dumps(document)
    for name, value in env.items():
        text = text.replace("${" + name + "}", json.dumps(value)[1:-1])
    assert "${" not in text
    return json.loads(text)
