"""Admin auth (docs/admin-api.md): bearer `admin.token` everywhere but health, the document and the
OAuth 2.0 callback; a non-loopback listener without a token is a config error."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.store.memory import MemoryStore
from tests.admin.planes import ADMIN_TOKEN, AUTH, CONNECTIONS, MakePlanes, Planes

PROTECTED = [
    ("GET", CONNECTIONS),
    ("POST", CONNECTIONS),
    ("GET", f"{CONNECTIONS}/x"),
    ("DELETE", f"{CONNECTIONS}/x"),
    ("POST", "/o/x/templates/crm/oauth2/init"),
    ("POST", "/o/x/templates/crm/oauth1/init"),
    ("GET", "/connection/x"),
    ("GET", "/no/such/route"),  # no probing for routes without a token
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}", f"Basic {ADMIN_TOKEN}", ""],
)
async def test_wrong_or_missing_token_is_401(
    crm: Planes, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await crm.admin.request(method, path, headers=headers, json={})
    assert response.status == 401
    body = await response.json()
    assert body["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "unauthorized" in response.headers["Proxy-Status"]
    assert ADMIN_TOKEN not in await response.text()


async def test_right_token_passes(crm: Planes) -> None:
    assert (await crm.admin.get(CONNECTIONS, headers=AUTH)).status == 200
    lower = {"Authorization": f"bearer {ADMIN_TOKEN}"}  # RFC 9110 §11.1: case-insensitive
    assert (await crm.admin.get(CONNECTIONS, headers=lower)).status == 200
    unknown = await crm.admin.get("/no/such/route", headers=AUTH)
    assert unknown.status == 404
    assert (await unknown.json())["code"] == "not_found"
    wrong_method = await crm.admin.put(CONNECTIONS, headers=AUTH)
    assert wrong_method.status == 405
    assert (await wrong_method.json())["code"] == "method_not_allowed"


async def test_public_routes_need_no_token(crm: Planes) -> None:
    assert await (await crm.admin.get("/healthz")).json() == {"status": "ok"}
    assert await (await crm.admin.get("/readyz")).json() == {"status": "ready"}
    assert (await (await crm.admin.get("/openapi.json")).json())["openapi"] == "3.1.0"
    callback = await crm.admin.get("/connections/oauth2/callback")
    assert callback.status == 400  # checked by `state`, not by the admin token


class FlakyStore(MemoryStore):
    """A store at the edge that stops answering (a lost disk, a dead database server)."""

    broken = False

    async def check_writable(self) -> None:
        if self.broken:
            raise OSError("disk I/O error")
        await super().check_writable()


async def test_readyz_reports_an_unreachable_store(make_planes: MakePlanes) -> None:
    store = FlakyStore()
    planes = await make_planes({}, store=store)
    assert (await planes.admin.get("/readyz")).status == 200
    store.broken = True
    response = await planes.admin.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body == {"status": "unavailable", "store": "the store did not answer (OSError)"}
    assert (await planes.admin.get("/healthz")).status == 200


def admin_tree(admin: dict[str, Any]) -> dict[str, Any]:
    return {"admin": admin}


@pytest.mark.parametrize("listen", ["0.0.0.0:8081", "192.0.2.1:8081", "[::]:8081"])
def test_non_loopback_without_token_is_a_config_error(listen: str) -> None:
    for admin in ({"listen": listen}, {"listen": listen, "token": ""}):
        with pytest.raises(ConfigInvalid) as caught:
            build_runtime(admin_tree(admin), {})
        assert [p.field for p in caught.value.problems] == ["admin.token"]
    build_runtime(admin_tree({"listen": listen, "token": "${T}"}), {"T": "canary-t"})


@pytest.mark.parametrize("listen", ["127.0.0.1:8081", "[::1]:8081", "localhost:8081"])
def test_loopback_may_go_without_token(listen: str) -> None:
    build_runtime(admin_tree({"listen": listen}), {})


async def test_no_token_on_loopback_means_open(make_planes: MakePlanes) -> None:
    planes = await make_planes({}, admin={"token": None})
    assert (await planes.admin.get(CONNECTIONS)).status == 200
