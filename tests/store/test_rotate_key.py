"""`rotate-key` cannot brick the store (docs/security.md, docs/operations.md), on SQLite (a key
file beside the database) and on PostgreSQL (`store.key`, the new one in the environment):

- beside a running proxy it refuses, with one line and exit 1, and changes nothing; the proxy
  keeps serving and writing; once the proxy is stopped it rotates, and the proxy starts on the
  new key with every connection, the ones created after the refusal included;
- a rotation SIGKILLed half-way (a real `rotate-key` process paused at a chosen point: in the
  middle of its re-sealing transaction, or, with a key file, after its commit and before the new
  key file is renamed over the old one) leaves a store the proxy starts from, and that rotates
  again;
- a row that does not open under the key (what a proxy writing beside an unguarded rotation
  left) is named in one log line, without traceback or value, and everything else serves.

Every proxy and every rotation is a real process; the upstream answers with the credentials it
received.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.messages import TokenSet
from proxy.store.codec import token_to_json
from proxy.store.crypto import Sealer, new_key_text, parse_key
from tests.builders import connection, oauth2_token
from tests.pg import PgServer
from tests.plainhttp import http
from tests.proxyproc import ProxyProcess
from tests.store.filesystems import wait_for

ORG = DEFAULT_ORGANISATION_ID
CANARY = "canary-rotation-"  # every stored secret starts with it
NEW_KEY_ENV = "SIGNING_PROXY_NEW_STORE_KEY"

# `rotate-key` in a process of its own that stops at `point` (the marker file says it is
# there) until the test kills it: the real command, with a pause added where the test wants it.
PAUSED_ROTATION = """
import sys, time
import proxy.store.postgres as postgres, proxy.store.rotate as rotate, proxy.store.sqlite as sqlite
from proxy.cli import main

config, marker, point = sys.argv[1:4]

def pause():
    open(marker, "w").close()
    time.sleep(600)

if point == "mid-transaction":
    def pausing(reseal):
        calls = []
        def third_value_paused(*args):
            calls.append(1)
            if len(calls) == 3:
                pause()
            return reseal(*args)
        return third_value_paused
    sqlite.reseal = pausing(sqlite.reseal)
    postgres.reseal = pausing(postgres.reseal)
else:  # "after-commit": re-sealed and committed, the new key file not yet renamed
    rotate_key = rotate.rotate_key
    def committed_then_paused(*args):
        count = rotate_key(*args)
        pause()
        return count
    rotate.rotate_key = committed_then_paused
sys.exit(main(["rotate-key", "--config", config]))
"""


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"apiKey": self.headers.get("X-Api-Key"), "auth": self.headers.get("Authorization")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_tree(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"path": str(tmp_path / "state.db")}
    postgres: PgServer = request.getfixturevalue("postgres")
    return {"url": postgres.new_database(), "key": new_key_text()}


def proxy_tree(store: dict[str, Any], upstream: str) -> dict[str, Any]:
    template = {
        "id": "crm",
        "route": "/crm",
        "baseUrl": upstream,
        "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Api-Key", "in": "header"}}],
    }
    # A file OAuth 2.0 connection: its token is a sealed row too. Its seed has no expiry, so it
    # is used as it is (its token endpoint is never called).
    seed = {"access_token": CANARY + "access", "refresh_token": CANARY + "refresh"}
    credential = oauth2_token("http://127.0.0.1:9/token", "cid", CANARY + "secret", seed)
    return {
        "store": store,
        "timeouts": {"shutdownGrace": 1},
        "log": {"level": "info"},
        "templates": [template],
        "connections": [connection("api", upstream, credential)],
    }


@contextmanager
def running(proc: ProxyProcess) -> Iterator[ProxyProcess]:
    proc.start()
    try:
        yield proc
    finally:
        # A stop that had to be SIGKILLed is not 0 (and leaves the store held a moment longer).
        assert proc.stop() == 0, proc.output()


def create(proc: ProxyProcess, name: str) -> str:
    body = {
        "connectionTemplateId": "crm",
        "connection": {
            "name": name,
            "credentials": [
                {"credential": {"type": "string", "data": {"string": {"value": CANARY + name}}}}
            ],
        },
    }
    created = http("POST", proc.admin + f"/o/{ORG}/connections", body)
    assert created.status == 201, created
    return str(created.json()["id"])


def serves(proc: ProxyProcess, connection_id: str, name: str) -> None:
    reply = proc.get("/crm/x", headers={"X-Connection-Id": connection_id})
    assert reply.status == 200, reply
    assert reply.json()["apiKey"] == CANARY + name


def serves_file_oauth(proc: ProxyProcess) -> None:
    reply = proc.get("/api/x")
    assert reply.status == 200, reply
    assert reply.json()["auth"] == f"Bearer {CANARY}access"


def rotate_key(proc: ProxyProcess, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "rotate-key", "--config", str(proc.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def set_store_key(proc: ProxyProcess, key: str) -> None:
    """The operator's step after a PostgreSQL (or `store.key`) rotation."""
    tree = yaml.safe_load(proc.config.read_text())
    tree["store"]["key"] = key
    proc.config.write_text(yaml.safe_dump(tree))


def assert_clean(output: str, *secrets: str) -> None:
    assert "Traceback" not in output
    assert CANARY not in output
    for secret in secrets:
        assert secret not in output


@pytest.mark.slow
def test_rotate_key_refuses_beside_a_running_proxy_then_rotates_once_it_stopped(
    tmp_path: Path, upstream: str, store_tree: dict[str, Any]
) -> None:
    new_key = new_key_text()
    env = {NEW_KEY_ENV: new_key}
    proc = ProxyProcess.on_tree(tmp_path, proxy_tree(store_tree, upstream))
    with running(proc):
        acme = create(proc, "acme")
        refused = rotate_key(proc, env)
        assert refused.returncode == 1
        assert refused.stdout == ""
        lines = refused.stderr.splitlines()
        assert len(lines) == 1 and "is in use by a running proxy" in lines[0], refused.stderr
        assert "stop every process serving from it" in lines[0]
        assert_clean(refused.stderr, new_key)
        # Nothing changed: the proxy serves and writes under its key as before.
        beta = create(proc, "beta")
        serves(proc, acme, "acme")
        serves(proc, beta, "beta")
        serves_file_oauth(proc)
    done = rotate_key(proc, env)
    assert done.returncode == 0, done.stderr
    assert "value(s) re-sealed" in done.stdout
    assert_clean(done.stdout + done.stderr, new_key)
    if "url" in store_tree:
        set_store_key(proc, new_key)
    with running(proc):
        serves(proc, acme, "acme")
        serves(proc, beta, "beta")
        serves_file_oauth(proc)
    assert "does not open" not in proc.output()
    assert_clean(proc.output(), new_key)


@pytest.mark.parametrize("point", ["mid-transaction", "after-commit"])
@pytest.mark.slow
def test_a_rotation_killed_half_way_leaves_a_store_that_starts(
    tmp_path: Path, upstream: str, store_tree: dict[str, Any], point: str
) -> None:
    if point == "after-commit" and "url" in store_tree:
        pytest.skip("a key file only: a committed store.key rotation is done; set the new key")
    env = {NEW_KEY_ENV: new_key_text()}
    proc = ProxyProcess.on_tree(tmp_path, proxy_tree(store_tree, upstream))
    with running(proc):
        ids = {name: create(proc, name) for name in ("acme", "beta", "gamma", "delta")}
    marker = tmp_path / "paused"
    rotation = subprocess.Popen(
        [sys.executable, "-c", PAUSED_ROTATION, str(proc.config), str(marker), point],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, 30, f"the rotation to reach {point}")
    finally:
        rotation.send_signal(signal.SIGKILL)
        rotation.communicate(timeout=10)
    with running(proc):
        for name, connection_id in ids.items():
            serves(proc, connection_id, name)
        serves_file_oauth(proc)
    output = proc.output()
    assert_clean(output)
    if "path" in store_tree:
        key_file = Path(store_tree["path"] + ".key")
        assert not Path(store_tree["path"] + ".key.new").exists()
        completed = "an interrupted key rotation was completed" in output
        assert completed == (point == "after-commit"), output
        assert stat_mode(key_file) == 0o600
    # Not bricked for the next rotation either.
    again = rotate_key(proc, env)
    assert again.returncode == 0, again.stderr
    if "url" in store_tree:
        set_store_key(proc, env[NEW_KEY_ENV])
    with running(proc):
        for name, connection_id in ids.items():
            serves(proc, connection_id, name)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.slow
def test_a_proxy_starting_during_a_rotation_waits_for_it(
    tmp_path: Path, upstream: str, store_tree: dict[str, Any]
) -> None:
    """A replica (re)started while the rotation holds the store opens after it, on the key it
    left: never on the old key half-way through."""
    if "url" in store_tree:
        pytest.skip("on PostgreSQL a replica started during the rotation then has the old key")
    proc = ProxyProcess.on_tree(tmp_path, proxy_tree(store_tree, upstream))
    with running(proc):
        acme = create(proc, "acme")
    marker = tmp_path / "paused"
    script = PAUSED_ROTATION.replace("time.sleep(600)", "time.sleep(2)")
    rotation = subprocess.Popen(
        [sys.executable, "-c", script, str(proc.config), str(marker), "after-commit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, 30, "the rotation to commit")
        with running(proc):  # its store opens once the rotation let go of the store
            # By then the rotation had renamed its new key over the old: the proxy waited.
            assert not Path(store_tree["path"] + ".key.new").exists()
            serves(proc, acme, "acme")
            serves_file_oauth(proc)
        out, err = rotation.communicate(timeout=30)
    finally:
        if rotation.poll() is None:
            rotation.kill()
            rotation.communicate(timeout=10)
    assert rotation.returncode == 0, (out, err)
    assert "interrupted" not in proc.output()


def test_an_unreadable_row_is_named_and_everything_else_serves(
    tmp_path: Path, upstream: str, store_tree: dict[str, Any]
) -> None:
    """What a proxy that kept writing beside an unguarded rotation left behind: rows sealed under
    another key. The proxy starts, names each such row once, and serves the rest."""
    proc = ProxyProcess.on_tree(tmp_path, proxy_tree(store_tree, upstream))
    with running(proc):
        acme, beta = create(proc, "acme"), create(proc, "beta")
    other = Sealer(parse_key(new_key_text()))
    token = TokenSet(CANARY + "lost-access", refresh_token=CANARY + "lost-refresh")
    credential_id = reseal_rows_under(store_tree, other, token, beta)
    with running(proc):
        serves(proc, acme, "acme")
        gone = proc.get("/crm/x", headers={"X-Connection-Id": beta})
        assert (gone.status, gone.json()["code"]) == (404, "connection_not_found")
        lost = proc.get("/api/x")
        assert (lost.status, lost.json()["code"]) == (502, "credential_reauthorization_required")
        # The unreadable connection can be deleted, freeing its name for a new one.
        assert http("DELETE", proc.admin + f"/o/{ORG}/connections/{beta}").status == 204
        serves(proc, create(proc, "beta"), "beta")
    output = proc.output()
    unreadable = [line for line in output.splitlines() if "does not open under store.key" in line]
    assert len(unreadable) == 2, output
    assert any(f"connection {beta} (template crm, name beta)" in line for line in unreadable)
    assert any(f"token of credential {credential_id}" in line for line in unreadable)
    assert_clean(output)


def reseal_rows_under(
    store: dict[str, Any], other: Sealer, token: TokenSet, connection_id: str
) -> str:
    """Write the (only) token row and connection `connection_id` sealed under `other`, with
    their right row ids, straight into the database; the token's credential id."""
    sealed_connection = other.seal(b'{"name": "beta"}', f"connection:{connection_id}")
    if "path" in store:
        with sqlite3.connect(store["path"]) as database:
            (credential_id,) = database.execute("SELECT credential_id FROM tokens").fetchone()
            sealed_token = other.seal(token_to_json(token), f"token:{credential_id}")
            database.execute(
                "UPDATE tokens SET sealed = ? WHERE credential_id = ?",
                (sealed_token, credential_id),
            )
            database.execute(
                "UPDATE connections SET sealed = ? WHERE id = ?",
                (sealed_connection, connection_id),
            )
        database.close()
        return str(credential_id)

    async def rewrite() -> str:
        database = await asyncpg.connect(store["url"])
        try:
            found: str = await database.fetchval("SELECT credential_id FROM tokens")
            sealed_token = other.seal(token_to_json(token), f"token:{found}")
            await database.execute(
                "UPDATE tokens SET sealed = $1 WHERE credential_id = $2", sealed_token, found
            )
            await database.execute(
                "UPDATE connections SET sealed = $1 WHERE id = $2",
                sealed_connection,
                connection_id,
            )
            return found
        finally:
            await database.close()

    return asyncio.run(rewrite())


@pytest.mark.slow
def test_the_refusal_learns_of_the_proxy_through_the_store_not_the_process_table(
    tmp_path: Path, upstream: str
) -> None:
    """A proxy of another machine is invisible to `ps`: what counts is a holder of the store.
    A proxy killed with SIGKILL holds nothing any more (the kernel dropped its lock)."""
    proc = ProxyProcess.on_tree(
        tmp_path, proxy_tree({"path": str(tmp_path / "state.db")}, upstream)
    )
    proc.start()
    try:
        assert rotate_key(proc, {}).returncode == 1
    finally:
        proc.kill()
    started = time.monotonic()
    done = rotate_key(proc, {})
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
