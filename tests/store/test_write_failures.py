"""When the store cannot be written (docs/operations.md), on a real small file system.

A real `signing-proxy run` keeps its SQLite store on a tmpfs of a few MiB; the rotating test
authorization server (`tests/oauth_server.py`) issues a new refresh token on every refresh and
rejects a used-up one. The disk is filled *while* a token request is in flight (the issue's
scenario), remounted read-only, and the database files are deleted; each time:

- the token the provider issued is used (the client gets 200) and never lost: once the disk
  frees, it is in the store, and a restarted proxy serves with it;
- no refresh token is ever presented twice (the provider would answer `invalid_grant`);
- `/readyz` answers 503 with the reason while the store cannot be written, 200 after;
- a request that needs an impossible write (a refresh that must take the store's lease, an
  admin write) gets 503 `store_unavailable`; a static credential keeps serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import bearer, connection, oauth2_token
from tests.oauth_server import AuthServer, Client, Running, serve_in_thread
from tests.plainhttp import Reply
from tests.proxyproc import ProxyProcess
from tests.store.filesystems import FailingExt4, SmallFs, failing_ext4, small_filesystem, wait_for
from tests.store.stored_tokens import stored_refresh_token

SECRET = "canary-store-fault-client-secret"
STATIC = "canary-store-fault-static-token"


@pytest.fixture
def auth() -> Iterator[Running]:
    with serve_in_thread(AuthServer(clients={"cid": Client(SECRET)})) as running:
        yield running


@pytest.fixture
def fs() -> Iterator[SmallFs]:
    with small_filesystem() as mounted:
        yield mounted


def make_proxy(tmp_path: Path, fs: SmallFs, auth: Running) -> tuple[ProxyProcess, dict[str, str]]:
    server = auth.server
    seeds = {"api": server.issue("cid"), "other": server.issue("cid")}
    server.access[STATIC] = (time.time() + 3600, None)
    token_url = auth.auth_url + "/token"
    tree: dict[str, Any] = {
        "store": {"path": str(fs.path / "state.db")},
        "timeouts": {"shutdownGrace": 1},
        "connections": [
            connection(n, auth.resource_url, oauth2_token(token_url, "cid", SECRET, seeds[n]))
            for n in ("api", "other")
        ]
        + [connection("static", auth.resource_url, bearer(STATIC))],
    }
    return ProxyProcess.on_tree(tmp_path, tree), {n: s["refresh_token"] for n, s in seeds.items()}


def revoke_oauth_tokens(server: AuthServer) -> None:
    """Every OAuth access token answers 401 from now on (the next request refreshes); the
    static bearer token stays valid at the resource server."""
    server.expire_access_tokens()
    server.access[STATIC] = (time.time() + 3600, None)


def status_after_a_restart(proxy: ProxyProcess, server: AuthServer, path: str) -> int:
    """The restarted proxy's status for `path` once every OAuth access token is revoked: it
    must refresh with the token it stored before."""
    proxy.start()
    try:
        revoke_oauth_tokens(server)
        return proxy.get(path).status
    finally:
        proxy.stop()


def presented_refresh_tokens(server: AuthServer) -> list[str]:
    return [
        r["form"]["refresh_token"]
        for r in server.token_requests
        if r["form"].get("grant_type") == "refresh_token"
    ]


def refresh_during(
    proxy: ProxyProcess, server: AuthServer, fault: Callable[[], None]
) -> list[Reply]:
    """A request meets a revoked access token (401) and refreshes; `fault` strikes the store's
    file system while the provider is still answering (the lease is taken by then, the token
    write fails)."""
    revoke_oauth_tokens(server)
    hits = server.hits
    server.delay = 1.0
    replies: list[Reply] = []
    client = threading.Thread(target=lambda: replies.append(proxy.get("/api/during")))
    client.start()
    wait_for(lambda: server.hits == hits + 1, 30, "the token request")
    fault()
    client.join(15)
    server.delay = 0.0
    return replies


def assert_store_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply
    assert reply.json()["code"] == "store_unavailable"
    assert "proxy_internal_error" in reply.headers["Proxy-Status"]


@pytest.mark.slow
def test_disk_full_during_a_refresh_keeps_the_new_token(
    tmp_path: Path, fs: SmallFs, auth: Running
) -> None:
    server = auth.server
    proxy, seeds = make_proxy(tmp_path, fs, auth)
    proxy.start()
    try:
        assert proxy.readyz().status == 200
        assert proxy.get("/api/warm").status == 200
        replies = refresh_during(proxy, server, fs.fill)
        assert [r.status for r in replies] == [200]  # the token kept in memory was used
        issued = server.current_refresh_token(seeds["api"])
        assert server.refresh[issued].confirmed  # used upstream: the seed's token is dead now
        assert (
            stored_refresh_token(proxy.config, "api") == seeds["api"]
        )  # the store could not take it

        ready = proxy.readyz()
        assert ready.status == 503
        # SQLite reports a full disk as SQLITE_FULL, or as an I/O error for some writes.
        assert "full" in ready.json()["store"] or "I/O" in ready.json()["store"]
        assert "1 token write(s) waiting" in ready.json()["store"]

        # Refresh again while the disk is full: from the token in memory, never the old one.
        revoke_oauth_tokens(server)
        assert proxy.get("/api/again").status == 200
        assert proxy.get("/static/x").status == 200  # static credentials keep serving
        # A refresh that must take the store's lease (no newer token in memory) cannot happen;
        # unless its few small writes fit into space a failed write left inside SQLite's WAL
        # (a full disk refuses growth, not reuse): then it happened, and that is right too.
        other = proxy.get("/other/x")
        if other.status != 200:
            assert_store_unavailable(other)

        fs.free()
        wait_for(lambda: proxy.readyz().status == 200, 30, "/readyz to recover")
        newest = server.current_refresh_token(seeds["api"])
        assert stored_refresh_token(proxy.config, "api") == newest
        assert proxy.get("/other/x").status == 200  # the lease can be taken again
    finally:
        assert proxy.stop() == 0
    # A restart serves with the stored token: no invalid_grant, no re-authorisation.
    assert status_after_a_restart(proxy, server, "/api/after-restart") == 200
    presented = presented_refresh_tokens(server)
    assert len(presented) == len(set(presented)) >= 4  # no refresh token was sent twice
    assert server.grants["refresh_token"] == len(presented)
    assert all(server.refresh[rt].confirmed for rt in presented)
    assert SECRET not in proxy.output() and STATIC not in proxy.output()


def test_restart_at_once_after_the_disk_frees(tmp_path: Path, fs: SmallFs, auth: Running) -> None:
    """Stopped the moment the disk frees: the retry, or the last write attempt at exit, has
    stored the token, and the restarted proxy refreshes with it."""
    server = auth.server
    proxy, seeds = make_proxy(tmp_path, fs, auth)
    proxy.start()
    try:
        assert proxy.get("/api/warm").status == 200
        assert [r.status for r in refresh_during(proxy, server, fs.fill)] == [200]
        assert proxy.readyz().status == 503
        fs.free()
    finally:
        assert proxy.stop() == 0
    assert stored_refresh_token(proxy.config, "api") == server.current_refresh_token(seeds["api"])
    assert status_after_a_restart(proxy, server, "/api/after") == 200


def test_read_only_store_is_refused_at_start(tmp_path: Path, fs: SmallFs, auth: Running) -> None:
    """A file system mounted read-only: `run` refuses to start, saying why (Linux will not
    remount a file system read-only under a process holding it open for writing, so a store
    that turns read-only while serving shows as the failed writes above)."""
    proxy, _ = make_proxy(tmp_path, fs, auth)
    proxy.start()
    assert proxy.get("/api/warm").status == 200
    assert proxy.stop() == 0
    fs.read_only(True)
    try:
        with pytest.raises(AssertionError, match="the proxy exited") as exited:
            proxy.start()
        assert "store:" in str(exited.value) and "read" in str(exited.value).lower()
    finally:
        fs.read_only(False)
    proxy.start()
    try:
        assert proxy.get("/api/again").status == 200
    finally:
        proxy.stop()


def test_deleted_database_files(tmp_path: Path, fs: SmallFs, auth: Running) -> None:
    """SQLite would go on writing into the deleted file (and lose it all at exit): the proxy
    notices, says so in `/readyz`, and refuses writes instead."""
    proxy, _ = make_proxy(tmp_path, fs, auth)
    proxy.start()
    try:
        assert proxy.get("/api/warm").status == 200
        for path in fs.path.glob("state.db*"):
            path.unlink()
        ready = proxy.readyz()
        assert ready.status == 503 and "deleted" in ready.json()["store"], ready
        revoke_oauth_tokens(auth.server)
        assert_store_unavailable(proxy.get("/api/x"))
        assert proxy.get("/static/x").status == 200
        time.sleep(1.0)
        assert proxy.readyz().status == 503  # it stays unready: nothing pretends to be stored
    finally:
        proxy.stop()


@pytest.fixture
def ext4() -> Iterator[FailingExt4]:
    with failing_ext4() as mounted:
        yield mounted


def test_file_system_turns_read_only_during_a_refresh(
    tmp_path: Path, ext4: FailingExt4, auth: Running
) -> None:
    """ext4 `errors=remount-ro` after a file system error, the way a store turns read-only under
    a running process in production: the kernel aborts the journal and refuses every write.

    While it lasts the proxy behaves as with a full disk. ext4 will not remount an aborted file
    system read-write, so the repair needs the proxy stopped first: the token kept in memory
    cannot be written anywhere, the proxy says so at exit, and after the repair the store holds
    the token from before the fault. On a rotating provider that one is used up: the restarted
    proxy presents it once, gets `invalid_grant` and reports that re-authorisation is needed
    (the connection that did not refresh during the fault serves on)."""
    server = auth.server
    proxy, seeds = make_proxy(tmp_path, ext4, auth)
    proxy.start()
    try:
        assert proxy.get("/api/warm").status == 200
        ext4.sync()  # what the store holds before the fault is on disk
        assert [r.status for r in refresh_during(proxy, server, ext4.fs_error)] == [200]
        issued = server.current_refresh_token(seeds["api"])
        assert server.refresh[issued].confirmed  # used upstream: the seed's token is dead now

        ready = proxy.readyz()
        # SQLite reports the kernel's refusal as "disk I/O error"; statvfs does not show an
        # ext4 emergency read-only mount as ST_RDONLY, so nothing more precise is known.
        assert ready.status == 503 and "I/O" in ready.json()["store"], ready
        assert "1 token write(s) waiting" in ready.json()["store"]
        revoke_oauth_tokens(server)
        assert proxy.get("/api/again").status == 200
        assert presented_refresh_tokens(server)[-1] == issued  # from memory, not the seed's
        assert proxy.get("/static/x").status == 200
        assert_store_unavailable(proxy.get("/other/x"))  # the lease cannot be taken
        time.sleep(1.0)
        assert proxy.readyz().status == 503  # the retries keep failing: still unready
    finally:
        assert proxy.stop() == 0
    assert "could not be stored before exit" in proxy.output()
    before_restart = presented_refresh_tokens(server)
    assert len(before_restart) == len(set(before_restart)) == 2

    ext4.repair()
    assert stored_refresh_token(proxy.config, "api") == seeds["api"]
    proxy.start()
    try:
        assert proxy.readyz().status == 200
        revoke_oauth_tokens(server)
        after = proxy.get("/api/after")
        assert after.status == 502 and after.json()["code"] == "credential_reauthorization_required"
        assert proxy.get("/other/after").status == 200
        assert proxy.get("/static/after").status == 200
    finally:
        proxy.stop()
    # The only refresh token sent twice: the stored one, once, after the restart.
    assert presented_refresh_tokens(server)[2:] == [seeds["api"], seeds["other"]]
    output = proxy.output()
    for secret in (SECRET, STATIC, *presented_refresh_tokens(server)):
        assert secret not in output
