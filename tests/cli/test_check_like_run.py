"""`signing-proxy check` refuses everything `run` refuses at start, in the same words and with the
same exit status (docs/operations.md): each bad input below is given to both, as real processes,
and their refusal lines are compared. `check` creates and changes nothing on the way.

The one deliberate difference: a port held by another process *now* (the proxy being checked,
before a reload) is a `check` warning, not a refusal.
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.store import open_store
from proxy.store.crypto import new_key_text
from tests.builders import bearer, connection
from tests.pg import PgServer
from tests.ports import free_port

Setup = Callable[[Path], tuple[dict[str, Any], dict[str, str]]]


def base(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "store": {"path": str(tmp_path / "state.db")},
        "connections": [connection("api", "http://127.0.0.1:9", bearer("canary-check-token"))],
    }
    tree.update(extra)
    return tree


def invoke(command: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")}
    try:
        return subprocess.run(
            [sys.executable, "-m", "proxy", command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**clean, **env},
        )
    except subprocess.TimeoutExpired as exc:  # run started serving: it refused nothing
        raise AssertionError(f"{command} did not refuse: {exc.stderr!r}") from None


def refusal_lines(stderr: str) -> list[str]:
    """The lines that say why: not log lines, not warnings."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("warning: ") and " config warning" not in line
    ]


async def written_store(path: Path, key: str | None = None) -> None:
    store = open_store(str(path), key)
    await store.close()


def store_key(text: str) -> Setup:
    def setup(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
        tree = base(tmp_path)
        tree["store"]["key"] = text
        return tree, {}

    return setup


def wrong_key(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import asyncio

    asyncio.run(written_store(tmp_path / "state.db", new_key_text()))
    return store_key(new_key_text())(tmp_path)


def loose_key_file(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import asyncio

    asyncio.run(written_store(tmp_path / "state.db"))
    (tmp_path / "state.db.key").chmod(0o644)
    return base(tmp_path), {}


def lost_key_file(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import asyncio

    asyncio.run(written_store(tmp_path / "state.db"))
    (tmp_path / "state.db.key").unlink()
    return base(tmp_path), {}


def newer_schema(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import asyncio

    asyncio.run(written_store(tmp_path / "state.db"))
    with sqlite3.connect(tmp_path / "state.db") as database:
        database.execute("UPDATE schema_version SET version = 99")
    database.close()
    return base(tmp_path), {}


def store_path_under(levels: int) -> Setup:
    def setup(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
        (tmp_path / "a-file").write_text("not a directory")
        where = tmp_path / "a-file" / Path(*["sub"] * levels) / "state.db"
        return base(tmp_path, store={"path": str(where)}), {}

    return setup


def listen(address: str) -> Setup:
    return lambda tmp_path: (base(tmp_path, listen=address), {})


def admin_on_the_data_plane_port(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    address = f"127.0.0.1:{free_port()}"
    return base(tmp_path, listen=address, admin={"listen": address}), {}


def env(name: str, value: str) -> Setup:
    return lambda tmp_path: (base(tmp_path), {name: value})


def missing_tls_files(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    certificate = {
        "authSchemeConfig": {"type": "certificate"},
        "credential": {
            "type": "certificate",
            "data": {
                "certificate": {
                    "certificate": f"${{file:{tmp_path}/absent.crt}}",
                    "key": f"${{file:{tmp_path}/absent.key}}",
                }
            },
        },
    }
    return base(tmp_path, connections=[connection("bank", "https://bank.test", certificate)]), {}


def unreachable_postgres(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://nobody@127.0.0.1:{port}/none"
    return base(tmp_path, store={"url": url, "key": new_key_text()}), {}


CASES: dict[str, Setup] = {
    "store key not base64": store_key("not base64 at all!"),
    "store key too short": store_key(base64.b64encode(b"16 bytes only...").decode()),
    "store key not the store's": wrong_key,
    "key file readable by others": loose_key_file,
    "key file lost": lost_key_file,
    "store of a newer release": newer_schema,
    "store path under a file": store_path_under(0),
    "store path deeper under a file": store_path_under(2),
    "listen address not on this host": listen("192.0.2.1:8080"),
    "listen port out of range": listen("127.0.0.1:70000"),
    "admin on the data plane's port": admin_on_the_data_plane_port,
    "bad $SIGNING_PROXY_LISTEN": env("SIGNING_PROXY_LISTEN", "no-port-here"),
    "bad $SIGNING_PROXY_LOG_LEVEL": env("SIGNING_PROXY_LOG_LEVEL", "loud"),
    "missing TLS files": missing_tls_files,
    "unreachable PostgreSQL": unreachable_postgres,
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_refuses_what_run_refuses_with_the_same_line(tmp_path: Path, case: str) -> None:
    tree, extra_env = CASES[case](tmp_path)
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree, sort_keys=False))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    checked = invoke("check", config, extra_env)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # check created nothing
    ran = invoke("run", config, extra_env)
    assert ran.returncode != 0, ran.stderr
    assert checked.returncode == ran.returncode, (checked.stderr, ran.stderr)
    said = refusal_lines(checked.stderr)
    assert said, checked.stderr
    assert refusal_lines(ran.stderr)[-1] in said, (checked.stderr, ran.stderr)
    assert set(said) <= set(refusal_lines(ran.stderr)), (checked.stderr, ran.stderr)
    assert "Traceback" not in checked.stderr + ran.stderr
    assert "canary" not in checked.stderr + ran.stderr


def test_check_refuses_a_postgres_store_key_that_is_not_its_key(
    tmp_path: Path, postgres: PgServer
) -> None:
    url = postgres.new_database()
    import asyncio

    async def written() -> None:
        await open_store(None, new_key_text(), url=url).close()

    asyncio.run(written())
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(base(tmp_path, store={"url": url, "key": new_key_text()})))
    checked, ran = invoke("check", config, {}), invoke("run", config, {})
    assert checked.returncode == ran.returncode == 1
    assert refusal_lines(checked.stderr) == [
        "store: store.key does not match the key this store was written with"
    ]
    assert refusal_lines(ran.stderr)[-1] == refusal_lines(checked.stderr)[0]


def test_check_passes_a_good_file_and_creates_no_store(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    tree = base(tmp_path, store={"path": str(tmp_path / "new" / "dir" / "state.db")})
    config.write_text(yaml.safe_dump(tree))
    checked = invoke("check", config, {})
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / "new").exists()


def test_a_port_another_process_holds_is_a_check_warning(tmp_path: Path) -> None:
    """`check` beside the running proxy it checks (before a reload) must not fail on the ports
    that proxy holds; `run` refuses them."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        config = tmp_path / "proxy.yaml"
        config.write_text(yaml.safe_dump(base(tmp_path, listen=address)))
        checked, ran = invoke("check", config, {}), invoke("run", config, {})
    assert checked.returncode == 0 and ran.returncode == 1
    refused = f"listen {address}: Address already in use"
    assert refusal_lines(ran.stderr)[-1] == refused
    assert f"warning: {refused} (held by another process now" in checked.stderr
