"""PostgreSQL's driver (asyncpg) comes with the `postgres` extra, not with the core install: a
config whose `store.url` names PostgreSQL, run where asyncpg is missing, is refused with a line
naming the extra, by `check`, `run` and `rotate-key` alike, and the SQLite store still opens."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from proxy.store import StoreError, open_store, verify_store
from proxy.store.crypto import new_key_text
from tests.builders import bearer, connection

# Nothing listens here: the driver's absence must be reported before any connection is tried.
URL = "postgresql://proxy:canary-pg-password-51@127.0.0.1:9/proxy"
EXTRA = "pip install 'signing-proxy[postgres]'"


@pytest.fixture
def without_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import asyncpg` fails in this process, as it does after `pip install .`."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)


@pytest.mark.usefixtures("without_asyncpg")
def test_opening_or_verifying_a_postgres_store_names_the_extra() -> None:
    for attempt in (open_store, verify_store):
        with pytest.raises(StoreError) as caught:
            attempt(None, new_key_text(), url=URL)
        assert EXTRA in str(caught.value)
        assert "canary" not in str(caught.value)


@pytest.mark.usefixtures("without_asyncpg")
def test_the_sqlite_store_needs_no_extra(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "state.db"))
    assert type(store).__module__ == "proxy.store.sqlite"


@pytest.mark.usefixtures("without_asyncpg")
@pytest.mark.parametrize("command", ["check", "run", "rotate-key"])
def test_commands_refuse_a_postgres_store_naming_the_extra(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.yaml"
    tree = {
        "listen": "127.0.0.1:0",
        "store": {"url": URL, "key": new_key_text()},
        "connections": [connection("api", "https://api.example.com", bearer("canary-t-52"))],
    }
    config.write_text(yaml.safe_dump(tree))
    status = main([command, "--config", str(config)])
    err = capsys.readouterr().err
    assert status != 0
    assert f"store: store.url names PostgreSQL, whose driver is not installed: {EXTRA}" in err
    assert "canary" not in err
