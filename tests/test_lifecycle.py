"""Compressed days: connections that stay alive through token lifetimes, restarts, a key rotation
and config updates (docs/operations.md), in about a minute per store.

The proxy runs as real processes (`python -m proxy run --watch`): one on SQLite, two replicas on
one PostgreSQL database. The provider (tests/oauth_server.py) issues access tokens that live
2 seconds and rotates refresh tokens strictly (a refresh token presented twice is `invalid_grant`,
no grace), and answers token requests slowly (0.3 s), so refreshes are often in flight.

Connections: one from proxy.yaml, and three of an `oauth2` template made through the admin API —
by the connect flow (on PostgreSQL: init on one replica, the provider's redirect delivered to the
other), by an `oauth2-code` credential, and by a GET body POSTed back with a pasted token. Load
runs on every connection through every live replica the whole time, and clients that give up
after a random moment keep coming. Meanwhile: a restart between two expiries (rolling on
PostgreSQL), `rotate-key` (every replica stopped: it refuses while one serves), and five config
updates, three by `--watch` and two by SIGHUP, each seen in force on every replica.

It asserts: no failed request; exactly one token request per expiry per credential (each
refresh token used once, and only once its access token was in the last quarter of its life);
no refresh token presented twice; no `invalid_grant`, no traceback in any log.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.store.crypto import new_key_text
from tests.admin.oauth2_connect import CLIENT_ID, CLIENT_SECRET, oauth_template
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.pg import PgServer
from tests.ports import free_port
from tests.proxyproc import ProxyProcess

pytestmark = pytest.mark.lifecycle

TOKEN_SECONDS = 2.0
EARLIEST_REFRESH = TOKEN_SECONDS * 0.75  # the skew is a quarter of a token's lifetime
ADMIN_TOKEN = "canary-admin-token-lifecycle-3f"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORG = DEFAULT_ORGANISATION_ID
CONNECTIONS = f"/o/{ORG}/connections"
API_NAMES = ("by-flow", "by-code", "by-get")
IN_FORCE_WITHIN = 10.0
STOP_WITHIN = 30.0


@dataclass
class Fleet:
    """The replicas of one store, their config files, and what the scenario did to them."""

    replicas: list[ProxyProcess]
    store: dict[str, Any]
    provider: str  # the provider's base URL
    resource: str
    echo: str
    filed_seed: dict[str, Any]  # the token pasted into the file's oauth2 credential
    live: set[int] = field(default_factory=set)
    # Seconds in which no replica served (a restart of the only one, the key rotation): no
    # token is refreshed then, and on a loaded machine they last much longer.
    unserved: float = 0.0
    unserved_since: float | None = None
    extras: list[int] = field(default_factory=list)  # the echo connections of the file
    audience: str | None = None

    def tree(self, replica: ProxyProcess) -> dict[str, Any]:
        oauth2: dict[str, Any] = {
            "tokenUrl": self.provider + "/token",
            "grant": {
                "type": "authorizationCode",
                "authorizationCode": {"clientId": CLIENT_ID, "clientSecret": "${SECRET}"},
            },
        }
        if self.audience is not None:
            # A token parameter, and a scope (part of what the stored token descends from):
            # the stored token goes on under the new settings, never the file's used-up seed.
            oauth2["additionalTokenParams"] = f"audience={self.audience}"
            oauth2["defaultScopes"] = [self.audience]
        return {
            "listen": f"127.0.0.1:{replica.ports[0]}",
            "admin": {"listen": f"127.0.0.1:{replica.ports[1]}", "token": ADMIN_TOKEN},
            "store": self.store,
            "timeouts": {"shutdownGrace": 2},
            "templates": [oauth_template(self.provider, self.resource)],
            "connections": [
                {
                    "name": "filed",
                    "baseUrl": self.resource,
                    "credentials": [
                        {
                            "id": "filed-credential",
                            "authSchemeConfig": {"type": "oauth2", "oauth2": oauth2},
                            "credential": {
                                "type": "oauth2-token",
                                "data": {"oauth2Token": self.filed_seed},
                            },
                        }
                    ],
                },
                *(
                    {
                        "name": f"extra-{n}",
                        "baseUrl": self.echo,
                        "credentials": [
                            {
                                "authSchemeConfig": {"type": "bearer"},
                                "credential": {
                                    "type": "string",
                                    "data": {"string": {"value": f"canary-extra-{n}"}},
                                },
                            }
                        ],
                    }
                    for n in self.extras
                ),
            ],
        }

    def write(self) -> None:
        """Every replica's file, replaced as an editor or `kubectl` does (rename over it)."""
        for replica in self.replicas:
            staged = replica.config.with_suffix(".new")
            staged.write_text(yaml.safe_dump(self.tree(replica)))
            os.replace(staged, replica.config)

    async def start(self, index: int) -> None:
        await self.replicas[index].astart()
        if not self.live and self.unserved_since is not None:
            self.unserved += time.time() - self.unserved_since
            self.unserved_since = None
        self.live.add(index)

    async def stop(self, index: int) -> None:
        replica = self.replicas[index]
        self.live.discard(index)
        if not self.live:
            self.unserved_since = time.time()
        await asyncio.sleep(0.3)  # requests sent to it a moment ago have arrived
        assert await replica.astop(STOP_WITHIN) == 0, self.logs()

    def kill_all(self) -> None:
        for replica in self.replicas:
            replica.kill()

    def logs(self) -> str:
        return "\n".join(r.output() for r in self.replicas)


@dataclass
class Load:
    """Requests on every connection through every live replica, and clients that give up."""

    fleet: Fleet
    results: list[tuple[float, int, str, str]] = field(default_factory=list)
    leavers: list[tuple[float, float]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        names = ["filed", *API_NAMES]
        connector = aiohttp.TCPConnector(force_close=True)  # no keep-alive across restarts
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(index: int, name: str) -> None:
                replica = self.fleet.replicas[index]
                path, headers = "/filed/files", {}
                if name != "filed":
                    path, headers = "/gdrive/files", {"X-Connection-Id": name}
                try:
                    async with session.get(replica.base + path, headers=headers) as response:
                        outcome = str(response.status)
                        if response.status != 200:
                            outcome += " " + (await response.text())[:200]
                except aiohttp.ClientError as exc:
                    outcome = repr(exc)
                self.results.append((time.time(), index, name, outcome))

            while not self.stop.is_set():
                live = sorted(self.fleet.live)
                await asyncio.gather(*(one(i, name) for i in live for name in names))
                await asyncio.sleep(0.1)

    async def give_up(self, rng: random.Random) -> None:
        """A client every ~0.3 s that leaves after a random moment, whatever happened."""
        while not self.stop.is_set():
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            live = sorted(self.fleet.live)
            if not live:
                continue
            replica = self.fleet.replicas[rng.choice(live)]
            name = rng.choice(API_NAMES)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", replica.ports[0])
            except OSError:
                continue  # stopped meanwhile
            start = time.time()
            writer.write(
                f"GET /gdrive/files HTTP/1.1\r\nHost: p\r\nX-Connection-Id: {name}\r\n\r\n".encode()
            )
            await asyncio.sleep(rng.uniform(0.01, 0.45))
            writer.transport.abort()
            self.leavers.append((start, time.time()))

    def failures(self) -> list[tuple[float, int, str, str]]:
        return [r for r in self.results if r[3] != "200"]


async def connect_flow(
    session: aiohttp.ClientSession, init_at: ProxyProcess, callback_at: ProxyProcess
) -> None:
    """The connect flow, its redirect delivered to `callback_at` (a load balancer's choice)."""
    async with session.post(
        f"{init_at.admin}/o/{ORG}/templates/gdrive/oauth2/init",
        json={"connectionName": "by-flow", "externalId": "by-flow"},
        headers=AUTH,
    ) as response:
        assert response.status == 200, await response.text()
        url = (await response.json())["url"]
    async with session.get(url, allow_redirects=False) as response:
        location = response.headers["Location"]
    parts = urlsplit(location)
    callback = f"{callback_at.admin}{parts.path}?{parts.query}"
    async with session.get(callback, allow_redirects=False) as response:
        assert response.status == 201, await response.text()


async def code_made(session: aiohttp.ClientSession, replica: ProxyProcess) -> str:
    """A front end took the browser redirect of a flow the proxy started, hands the code over."""
    async with session.post(
        f"{replica.admin}/o/{ORG}/templates/gdrive/oauth2/init", json={}, headers=AUTH
    ) as response:
        url = (await response.json())["url"]
    async with session.get(url, allow_redirects=False) as response:
        query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    credential = {"type": "oauth2-code", "data": {"oauth2Code": query}}
    body = {
        "connectionTemplateId": "gdrive",
        "externalId": "by-code",
        "connection": {"name": "by-code", "credentials": [{"credential": credential}]},
    }
    async with session.post(replica.admin + CONNECTIONS, json=body, headers=AUTH) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return str(created["id"])


async def posted_back(
    session: aiohttp.ClientSession, replica: ProxyProcess, of: str, pasted: dict[str, Any]
) -> None:
    """`of`'s GET body POSTed back for another account, the secrets filled in (a pasted token,
    the client secret) and the ids left to the proxy. Read from another replica than the one
    that made it: there within a second (LISTEN/NOTIFY)."""
    deadline = time.monotonic() + 20  # a bound for a broken push only: a loaded machine is slow
    while True:
        async with session.get(f"{replica.admin}{CONNECTIONS}/{of}", headers=AUTH) as response:
            if response.status == 200:
                got = await response.json()
                break
        assert time.monotonic() < deadline, f"{of} never appeared on {replica.admin}"
        await asyncio.sleep(0.1)
    got.pop("id")
    got.update(name="by-get", externalId="by-get")
    [entry] = got["credentials"]
    entry.pop("id")
    entry["credential"].pop("id")
    entry["credential"]["data"]["oauth2Token"].update(
        accessToken=pasted["access_token"], refreshToken=pasted["refresh_token"]
    )
    entry["authSchemeConfig"]["oauth2"]["grant"]["authorizationCode"]["clientSecret"] = (
        CLIENT_SECRET
    )
    body = {"connectionTemplateId": "gdrive", "externalId": "by-get", "connection": got}
    async with session.post(replica.admin + CONNECTIONS, json=body, headers=AUTH) as response:
        assert response.status == 201, await response.text()


async def in_force(fleet: Fleet, removed: list[int]) -> None:
    """Every live replica serves the file's current extras, and no longer the removed ones."""
    deadline = time.monotonic() + IN_FORCE_WITHIN
    async with aiohttp.ClientSession() as session:
        while True:
            statuses = []
            for index in sorted(fleet.live):
                base = fleet.replicas[index].base
                for n in fleet.extras + removed:
                    async with session.get(f"{base}/extra-{n}/ping") as response:
                        statuses.append((n in fleet.extras) == (response.status == 200))
            if all(statuses):
                return
            assert time.monotonic() < deadline, f"update not in force: {fleet.extras}"
            await asyncio.sleep(0.2)


async def update(fleet: Fleet, n: int, how: str, remove: int | None = None) -> None:
    fleet.extras.append(n)
    removed = []
    if remove is not None:
        fleet.extras.remove(remove)
        removed.append(remove)
    if how == "sighup":
        fleet.audience = f"update-{n}"  # a setting of the file's OAuth 2.0 credential changes
    fleet.write()
    if how == "sighup":
        for index in sorted(fleet.live):
            fleet.replicas[index].signal(signal.SIGHUP)
    await in_force(fleet, removed)


async def rotate_key(fleet: Fleet) -> None:
    """`rotate-key` with every replica stopped (it refuses while one serves)."""
    for index in sorted(fleet.live):
        await fleet.stop(index)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")}
    new_key = new_key_text()
    if "key" in fleet.store:
        env["SIGNING_PROXY_NEW_STORE_KEY"] = new_key
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "rotate-key", "--config", str(fleet.replicas[0].config),
        env={**env, "SECRET": CLIENT_SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(done.communicate(), STOP_WITHIN)
    assert done.returncode == 0, (out, err)
    assert b"re-sealed" in out + err
    if "key" in fleet.store:
        fleet.store = {**fleet.store, "key": new_key}
        fleet.write()
    for index in range(len(fleet.replicas)):
        await fleet.start(index)


@asynccontextmanager
async def servers(aiohttp_server: Any) -> AsyncIterator[tuple[AuthServer, str, str, str]]:
    server = AuthServer(
        access_ttl=TOKEN_SECONDS,
        strict_rotation=True,
        delay=0.15,
        answer_delay=0.15,
        clients={CLIENT_ID: Client(CLIENT_SECRET)},
    )
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    resource: TestServer = await aiohttp_server(create_resource_app(server))

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    echo_app = web.Application()
    echo_app.router.add_route("*", "/{tail:.*}", ping)
    echo: TestServer = await aiohttp_server(echo_app)
    yield (
        server,
        str(auth.make_url("")).rstrip("/"),
        str(resource.make_url("")).rstrip("/"),
        str(echo.make_url("")).rstrip("/"),
    )


async def compressed_days(
    aiohttp_server: Any, tmp_path: Path, store: dict[str, Any], replicas: int
) -> None:
    rng = random.Random(os.environ.get("LIFECYCLE_SEED", "19"))
    async with servers(aiohttp_server) as (server, provider, resource, echo):
        seed = server.issue(CLIENT_ID)
        fleet = Fleet(
            [
                ProxyProcess(
                    tmp_path / f"proxy-{i}.yaml",
                    "--watch",
                    ports=[free_port(), free_port()],
                    env={"SECRET": CLIENT_SECRET},
                )
                for i in range(replicas)
            ],
            store,
            provider,
            resource,
            echo,
            {"accessToken": seed["access_token"], "refreshToken": seed["refresh_token"]},
        )
        fleet.write()
        load = Load(fleet)
        tasks: list[asyncio.Task[None]] = []
        try:
            for index in range(replicas):
                await fleet.start(index)
            first, last = fleet.replicas[0], fleet.replicas[-1]
            async with aiohttp.ClientSession() as session:
                await connect_flow(session, first, last)
                by_code = await code_made(session, last)
                await posted_back(session, first, by_code, server.issue(CLIENT_ID))
            started = time.time()
            tasks = [
                asyncio.create_task(load.run()),
                asyncio.create_task(load.give_up(rng)),
            ]
            await asyncio.sleep(2 * TOKEN_SECONDS + 0.5)
            await update(fleet, 1, "watch")
            await asyncio.sleep(TOKEN_SECONDS)
            # A restart between two expiries: rolling when there are replicas.
            for index in range(replicas):
                await fleet.stop(index)
                await fleet.start(index)
            await asyncio.sleep(TOKEN_SECONDS + 0.5)
            await update(fleet, 2, "sighup")
            await asyncio.sleep(TOKEN_SECONDS)
            await rotate_key(fleet)
            await asyncio.sleep(TOKEN_SECONDS + 0.5)
            await update(fleet, 3, "watch")
            await asyncio.sleep(TOKEN_SECONDS)
            await update(fleet, 4, "sighup", remove=1)
            await asyncio.sleep(TOKEN_SECONDS)
            await update(fleet, 5, "watch")
            await asyncio.sleep(2 * TOKEN_SECONDS)
            load.stop.set()
            await asyncio.gather(*tasks)
            elapsed = time.time() - started
            for index in sorted(fleet.live):
                await fleet.stop(index)
        finally:
            load.stop.set()
            for task in tasks:
                task.cancel()
            fleet.kill_all()

        logs = fleet.logs()
        assert not load.failures(), (load.failures()[:10], logs[-3000:])
        assert len(load.results) > 200
        assert server.reuses == 0 and server.invalid_grants == 0, logs[-3000:]
        assert "Traceback" not in logs and "invalid_grant" not in logs
        for secret in (CLIENT_SECRET, seed["refresh_token"], ADMIN_TOKEN):
            assert secret not in logs

        # One token request per expiry per credential: each chain is one line (strict rotation
        # refused any second use), and no token was refreshed before the last quarter of its
        # life — with 2-second tokens, about one refresh per 1.5-2 s of the run.
        chains: dict[str, int] = {}
        for token, record in server.refresh.items():
            if record.issued_by != "refresh_token" and record.used_at is not None:
                root, length = token, 0
                while (child := server.refresh[token].child) is not None:
                    token, length = child, length + 1
                chains[root] = length
            if record.used_at is not None and record.issued_by != "pasted":
                assert record.used_at - record.issued_at >= EARLIEST_REFRESH - 0.05, record
        assert len(chains) == 4  # the file's, the flow's, the code's, the pasted one
        # Over the time some replica served (stops and starts take their time).
        least = int((elapsed - fleet.unserved) / (2 * TOKEN_SECONDS))
        assert all(length >= least for length in chains.values()), (chains, elapsed)
        # The SIGHUP updates changed the file credential's token parameters: in force.
        sent = [r["form"].get("audience") for r in server.token_requests]
        assert "update-2" in sent and "update-4" in sent
        # Clients gave up while token calls were in flight.
        calls = [r["at"] for r in server.token_requests]
        mid_call = [
            leaver for leaver in load.leavers if any(leaver[0] <= at <= leaver[1] for at in calls)
        ]
        assert len(mid_call) >= 3, (len(load.leavers), len(mid_call))


async def test_compressed_days_on_sqlite(aiohttp_server: Any, tmp_path: Path) -> None:
    await compressed_days(aiohttp_server, tmp_path, {"path": str(tmp_path / "state.db")}, 1)


async def test_compressed_days_on_postgresql_with_two_replicas(
    aiohttp_server: Any, tmp_path: Path, postgres: PgServer
) -> None:
    store = {"url": postgres.new_database(), "key": new_key_text()}
    await compressed_days(aiohttp_server, tmp_path, store, 2)
