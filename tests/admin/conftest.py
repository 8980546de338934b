"""Fixtures for the management API tests: `crm`, both planes with one api-key template on the
real echo upstream (`make_planes`, which builds them, is in the root conftest)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from tests.admin.planes import MakePlanes, Planes, api_key_template, string_credential


@pytest.fixture
async def crm(echo_server: TestServer, make_planes: MakePlanes) -> Planes:
    """One api-key template `crm` on the echo upstream, plus one file connection."""
    base = str(echo_server.make_url("/api"))
    return await make_planes(
        {
            "templates": [api_key_template(base)],
            "connections": [
                {
                    "name": "filed",
                    "baseUrl": base,
                    "credentials": [
                        {
                            "authSchemeConfig": {"type": "bearer"},
                            **string_credential("canary-file-bearer-77aa"),
                        }
                    ],
                }
            ],
        }
    )
