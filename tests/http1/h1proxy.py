"""The `make_h1_proxy` fixture's types (tests/http1/conftest.py): a proxy's test client and the
`Http1Upstream` it sends through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.http1 import Http1Upstream

H1Proxy = tuple[TestClient[Any, Any], Http1Upstream]
MakeH1Proxy = Callable[..., Awaitable[H1Proxy]]
