"""Three replicas on one PostgreSQL store, as real `signing-proxy run` processes (docs/operations.md
"Several replicas"). Each test starts its own replicas on a fresh database of the session's real
server (`tests/pg.py`) against the rotating test authorization server (`tests/oauth_server.py`):

- 60 concurrent requests on an expired token, spread over the replicas: exactly 1 token request;
- a replica paused (SIGSTOP) in the middle of its refresh, past its lease, then resumed: another
  replica refreshed meanwhile; the paused one's late token loses the fenced write and is
  discarded, the stored token never goes back;
- SIGKILL of random replicas during refreshes, again and again: no rotated token is lost;
- a connection created or deleted through one replica's admin API serves (or stops) on the
  others within a second, by push (LISTEN/NOTIFY), not by the data plane's catch-up;
- the OAuth 2.0 connect flow started on one replica completes on another;
- a SIGHUP reload of one replica under load disturbs neither the others nor the shared token.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.store.crypto import new_key_text
from tests.builders import connection, oauth2_token
from tests.oauth_server import AuthServer, Client, Running, serve_in_thread
from tests.pg import PgServer
from tests.plainhttp import Reply, http
from tests.ports import free_port
from tests.proxyproc import ProxyProcess
from tests.store.filesystems import wait_for
from tests.store.stored_tokens import stored_refresh_token

# Several real replicas on a real PostgreSQL each: minutes in all (pyproject: `slow`).
pytestmark = pytest.mark.slow

SECRET = "canary-replica-client-secret"
REPLICAS = 3
ORG = DEFAULT_ORGANISATION_ID


@pytest.fixture
def auth() -> Iterator[Running]:
    with serve_in_thread(AuthServer(clients={"cid": Client(SECRET)})) as running:
        yield running


@pytest.fixture
def store_tree(postgres: PgServer) -> dict[str, Any]:
    return {"url": postgres.new_database(), "key": new_key_text()}


@contextmanager
def replicas(
    tmp_path: Path, tree: dict[str, Any], count: int = REPLICAS, **options: Any
) -> Iterator[list[ProxyProcess]]:
    procs = [ProxyProcess.on_tree(tmp_path, tree, **options) for _ in range(count)]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop(timeout=10)
    for proc in procs:
        assert SECRET not in proc.output()


def oauth_tree(
    auth: Running, store: dict[str, Any], seed: dict[str, Any], expires_at: str | None = None
) -> dict[str, Any]:
    credential = oauth2_token(auth.auth_url + "/token", "cid", SECRET, seed, expires_at)
    return {
        "store": store,
        "timeouts": {"shutdownGrace": 1},
        "log": {"level": "info"},
        "connections": [connection("api", auth.resource_url, credential)],
    }


PAST = datetime.fromtimestamp(time.time() - 60, UTC).isoformat()


def test_60_concurrent_requests_on_an_expired_token_one_token_request(
    tmp_path: Path, auth: Running, store_tree: dict[str, Any]
) -> None:
    server = auth.server
    seed = server.issue("cid")
    with replicas(tmp_path, oauth_tree(auth, store_tree, seed, PAST)) as procs:
        server.delay = 0.3  # every replica is waiting while the one call is in flight
        with ThreadPoolExecutor(60) as pool:
            replies = list(
                pool.map(lambda i: procs[i % REPLICAS].get(f"/api/{i}", timeout=30), range(60))
            )
        assert [r.status for r in replies] == [200] * 60
        assert server.hits == 1 and server.grants["refresh_token"] == 1
        assert stored_refresh_token(procs[0].config) == server.current_refresh_token(
            seed["refresh_token"]
        )


def test_a_replica_paused_past_its_lease_cannot_regress_the_token(
    tmp_path: Path, auth: Running, store_tree: dict[str, Any]
) -> None:
    server = auth.server
    seed = server.issue("cid")
    with replicas(tmp_path, oauth_tree(auth, store_tree, seed, PAST)) as (a, b, c):
        server.answer_delay = 1.0  # A's token is issued at once, its answer arrives late
        late: list[Reply] = []
        client = threading.Thread(target=lambda: late.append(a.get("/api/a", timeout=60)))
        client.start()
        wait_for(lambda: server.hits == 1, 30, "A's token request")
        a.signal(signal.SIGSTOP)
        try:
            server.answer_delay = 0.0
            first_issued = server.current_refresh_token(seed["refresh_token"])
            started = time.monotonic()
            # B waits for A's lease (10 s, not renewed by a stopped process), then refreshes:
            # the provider still takes the seed's refresh token (A's successor was never
            # used) and retires A's.
            assert b.get("/api/b", timeout=60).status == 200
            waited = time.monotonic() - started
            assert server.grants["refresh_token"] == 2
            newest = server.current_refresh_token(seed["refresh_token"])
            assert newest != first_issued and server.refresh[first_issued].revoked
        finally:
            a.signal(signal.SIGCONT)
        client.join(30)
        # A's late token lost the fence: discarded, and A served with B's token.
        assert [r.status for r in late] == [200]
        assert stored_refresh_token(a.config) == newest
        assert a.get("/api/again").status == 200 and c.get("/api/c").status == 200
        assert server.grants["refresh_token"] == 2  # nobody refreshed again
    assert "discarded" in a.output()
    assert 5.0 < waited < 20.0, waited  # bounded by the lease, not by A's pause


def test_sigkill_of_replicas_during_refreshes_loses_no_token(
    tmp_path: Path, store_tree: dict[str, Any]
) -> None:
    """Access tokens live 0.3 s (refreshed a quarter of that before they expire), so refreshes
    follow one another on every replica in turn; a random replica is killed at a random moment,
    then restarted."""
    server = AuthServer(access_ttl=0.3, clients={"cid": Client(SECRET)})
    rng = random.Random(os.environ.get("SIGKILL_SEED", "14"))
    with serve_in_thread(server) as running:
        seed = server.issue("cid")
        with replicas(tmp_path, oauth_tree(running, store_tree, seed)) as procs:
            started = time.monotonic()
            kills = 0
            while kills < 8 and time.monotonic() - started < 90:
                stop, statuses = threading.Event(), list[int]()
                workers = [threading.Thread(target=load, args=(p, stop, statuses)) for p in procs]
                for worker in workers:
                    worker.start()
                time.sleep(rng.uniform(0.1, 0.6))
                victim = rng.choice(procs)
                victim.signal(signal.SIGKILL)
                stop.set()
                for worker in workers:
                    worker.join(10)
                victim.kill()
                kills += 1
                assert set(statuses) <= {200}, statuses
                stored = stored_refresh_token(procs[0].config)
                assert stored is not None and server.accepts(stored)
                newest = server.current_refresh_token(seed["refresh_token"])
                if stored != newest:
                    # Killed between the provider's answer and the commit: never used.
                    assert server.refresh[newest].parent == stored
                    assert not server.refresh[newest].confirmed
                victim.start()
                assert victim.get("/api/after-restart").status == 200
            assert kills >= 5  # 8 unless the machine is very slow; bounded in time either way
            assert server.grants["refresh_token"] > kills
            for proc in procs:
                assert proc.get("/api/final").status == 200


def load(proc: ProxyProcess, stop: threading.Event, statuses: list[int]) -> None:
    while not stop.is_set():
        try:
            statuses.append(proc.get("/api/x", timeout=5).status)
        except OSError:
            return  # killed


def api_key_template(base_url: str) -> dict[str, Any]:
    return {
        "id": "crm",
        "route": "/crm",
        "baseUrl": base_url,
        "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Api-Key", "in": "header"}}],
    }


def test_connection_changes_reach_every_replica_within_a_second(
    tmp_path: Path, auth: Running, store_tree: dict[str, Any]
) -> None:
    tree = {
        "store": store_tree,
        "timeouts": {"shutdownGrace": 1},
        "templates": [api_key_template(auth.resource_url)],
    }
    with replicas(tmp_path, tree) as procs:
        creator, others = procs[0], procs[1:]
        body = {
            "connectionTemplateId": "crm",
            "connection": {
                "name": "acme",
                "credentials": [
                    {"credential": {"type": "string", "data": {"string": {"value": "k-acme"}}}}
                ],
            },
        }
        created = http("POST", creator.admin + f"/o/{ORG}/connections", body)
        assert created.status == 201, created
        # The second starts once the change is committed (the creator has answered): how long
        # the request itself took on a loaded machine is not the propagation being measured.
        started = time.monotonic()
        connection_id = created.json()["id"]

        def listed(proc: ProxyProcess) -> bool:
            items = http("GET", proc.admin + f"/o/{ORG}/connections").json()["items"]
            return any(item["id"] == connection_id for item in items)

        # The admin list of the others shows what their own sync applied: no catch-up there.
        for proc in others:
            wait_for(lambda p=proc: listed(p), 1.0 - (time.monotonic() - started), "the push")
        assert time.monotonic() - started < 1.0
        deleted = http("DELETE", creator.admin + f"/o/{ORG}/connections/{connection_id}")
        assert deleted.status == 204
        started = time.monotonic()
        for proc in others:
            wait_for(lambda p=proc: not listed(p), 1.0 - (time.monotonic() - started), "delete")
            gone = proc.get("/crm/x", headers={"X-Connection-Id": connection_id})
            assert gone.status == 404 and gone.json()["code"] == "connection_not_found"
        assert time.monotonic() - started < 1.0
    for proc in procs:  # by push: the fallback poll runs every 10 s only
        assert "connection changes are pushed by the store" in proc.output()


def test_oauth_connect_flow_started_on_one_replica_completes_on_another(
    tmp_path: Path, auth: Running, store_tree: dict[str, Any]
) -> None:
    callback_port = free_port()  # the load balancer sends the browser's callback to replica B
    template = {
        "id": "drive",
        "route": "/drive",
        "baseUrl": auth.resource_url,
        "authSchemeConfigs": [
            {
                "type": "oauth2",
                "oauth2": {
                    "authorizeUrl": auth.auth_url + "/authorize",
                    "tokenUrl": auth.auth_url + "/token",
                    "grant": {
                        "type": "authorizationCode",
                        "authorizationCode": {"clientId": "cid", "clientSecret": SECRET},
                    },
                },
            }
        ],
    }
    tree = {
        "store": store_tree,
        "timeouts": {"shutdownGrace": 1},
        "templates": [template],
        "admin": {"publicUrl": f"http://127.0.0.1:{callback_port}"},
    }
    a = ProxyProcess.on_tree(tmp_path, tree)
    b = ProxyProcess.on_tree(tmp_path, tree, admin_port=callback_port)
    try:
        a.start()
        b.start()
        init = http("POST", a.admin + f"/o/{ORG}/templates/drive/oauth2/init", {})
        assert init.status == 200, init
        authorized = http("GET", init.json()["url"])
        assert authorized.status == 302
        location = authorized.headers["Location"]
        assert location.startswith(b.admin)
        done = http("GET", location)
        assert done.status == 201, done
        connection_id = done.json()["connectionId"]
        for proc in (a, b):
            reply = proc.get("/drive/files", headers={"X-Connection-Id": connection_id})
            assert reply.status == 200, reply
    finally:
        a.stop(timeout=10)
        b.stop(timeout=10)


def test_sighup_reload_of_one_replica_does_not_disturb_the_others(
    tmp_path: Path, auth: Running, store_tree: dict[str, Any]
) -> None:
    """A's file gains a connection and A reloads (SIGHUP) under load on every replica: A serves
    the new connection, nobody misses a request, and the shared OAuth 2.0 token is neither
    reset to the file's seed nor refreshed again."""
    import yaml

    server = auth.server
    seed = server.issue("cid")
    with replicas(tmp_path, oauth_tree(auth, store_tree, seed, PAST)) as procs:
        a = procs[0]
        assert all(p.get("/api/warm").status == 200 for p in procs)
        assert server.grants["refresh_token"] == 1
        stop, statuses = threading.Event(), list[int]()
        workers = [threading.Thread(target=load, args=(p, stop, statuses)) for p in procs]
        for worker in workers:
            worker.start()
        try:
            tree = yaml.safe_load(a.config.read_text())
            bearer = {
                "authSchemeConfig": {"type": "bearer"},
                "credential": {"type": "string", "data": {"string": {"value": "t-new"}}},
            }
            tree["connections"].append(connection("fresh", auth.resource_url, bearer))
            a.config.write_text(yaml.safe_dump(tree))
            server.access["t-new"] = (time.time() + 3600, None)
            a.signal(signal.SIGHUP)
            wait_for(lambda: "config reloaded" in a.output(), 30, "A's reload")
            time.sleep(0.5)  # load goes on after the reload
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
        assert statuses and set(statuses) == {200}
        assert a.get("/fresh/x").status == 200
        for other in procs[1:]:
            assert other.get("/fresh/x").status == 404  # their files did not change
        assert server.grants["refresh_token"] == 1  # the stored token survived A's reload
        assert stored_refresh_token(a.config) == server.current_refresh_token(seed["refresh_token"])
