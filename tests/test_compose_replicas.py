"""The compose files the project shows (the replica snippet of docs/deployment.md,
`examples/docker-compose.yml`) restart the proxy and make it wait for a database that accepts
connections: a replica refuses to start (exit 1) while PostgreSQL is not up yet, so without both
it would stay down after a `docker compose up` or a database restart (docs/operations.md,
"Several replicas").

The YAML is parsed as compose reads it; the rules checked are those of the Compose
specification (`depends_on.<service>.condition: service_healthy` needs a `healthcheck` on that
service; `restart: no` is the default)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from proxy.config.models import Timeouts

ROOT = Path(__file__).resolve().parent.parent
RESTARTING = {"always", "unless-stopped", "on-failure"}


def documented_block(first_line: str) -> str:
    """The fenced block of docs/deployment.md whose first line is `first_line`."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    for block in re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"docs/deployment.md has no block starting {first_line!r}")


def replica_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(documented_block("# compose.replicas.yaml"))
    return compose


def databases(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("postgres")
    }


def proxies(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "signing-proxy" in str(service.get("image", "")) or "build" in service
    }


def assert_waits_for_a_healthy_database_and_restarts(compose: dict[str, Any]) -> None:
    dbs = databases(compose)
    for name, proxy in proxies(compose).items():
        assert proxy.get("restart") in RESTARTING, f"{name}: no restart policy"
        depends = proxy.get("depends_on", {})
        for db_name, db in dbs.items():
            assert isinstance(depends, dict), f"{name}: depends_on must name a condition"
            assert depends[db_name] == {"condition": "service_healthy"}, depends
            check = db["healthcheck"]["test"]
            assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check), check
            # pg_isready asks for the database and user the proxy's URL names.
            env = db["environment"]
            words = " ".join(check)
            assert f"-U {env['POSTGRES_USER']}" in words and f"-d {env['POSTGRES_DB']}" in words
            assert db.get("restart") in RESTARTING, f"{db_name}: no restart policy"


def test_the_readme_replicas_restart_and_wait_for_a_healthy_database() -> None:
    compose = replica_compose()
    assert databases(compose) and proxies(compose)  # the rules below are not vacuous
    assert_waits_for_a_healthy_database_and_restarts(compose)


def test_the_replicas_config_names_the_database_service_and_user() -> None:
    compose = replica_compose()
    [(db_name, db)] = databases(compose).items()
    proxy_yaml = yaml.safe_load(documented_block("# proxy.yaml (the same file for every replica)"))
    url = proxy_yaml["store"]["url"]
    user = db["environment"]["POSTGRES_USER"]
    assert url.startswith(f"postgresql://{user}:") and f"@{db_name}:5432/" in url
    # The stop timeout lets a drain finish (the file keeps the default shutdownGrace).
    [proxy] = proxies(compose).values()
    grace = int(str(proxy["stop_grace_period"]).rstrip("s"))
    assert grace > Timeouts().shutdown_grace


def test_the_sidecar_example_restarts() -> None:
    compose = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())
    assert proxies(compose)
    assert_waits_for_a_healthy_database_and_restarts(compose)  # (it has no database)
