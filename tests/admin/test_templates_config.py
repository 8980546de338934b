"""`templates:` in proxy.yaml: checked at config time like connections (docs/admin-api.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.connections.runtime import build_runtime, load_runtime
from tests.builders import config_problems

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "templates.yaml"


def template(template_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": template_id, "baseUrl": "https://api.example.com", **extra}


def test_the_example_loads_with_its_templates() -> None:
    env = {"PROXY_ADMIN_TOKEN": "t", "GOOGLE_CLIENT_SECRET": "s", "GITHUB_TOKEN": "g"}
    runtime = load_runtime(EXAMPLE, env)
    assert [(t.id, t.route) for t in runtime.templates] == [
        ("google-drive", "/gdrive"),
        ("crm", "/crm"),
    ]


def test_route_defaults_to_the_id() -> None:
    (compiled,) = build_runtime({"templates": [template("crm")]}, {}).templates
    assert compiled.route == "/crm"


def test_routes_are_unique_across_connections_and_templates() -> None:
    tree = {
        "connections": [{"name": "crm", "baseUrl": "https://a.example.com"}],
        "templates": [template("crm"), template("other", route="/crm/")],
    }
    assert config_problems(tree) == [
        "templates[0].route: route already used by connections[0]",
        "templates[1].route: route already used by connections[0]",
    ]


def test_duplicate_ids_reserved_and_bad_routes() -> None:
    tree = {
        "templates": [
            template("a"),
            template("a", route="/b"),
            template("h", route="/healthz"),
            template("x", route="no-slash"),
        ]
    }
    assert config_problems(tree) == [
        "templates[1].id: duplicate of templates[0]",
        "templates[2].route: /healthz is reserved",
        "templates[3].route: must start with '/'",
    ]


def test_scheme_config_paths() -> None:
    tree = {"templates": [template("a", authSchemeConfigs=[{"type": "api-key", "apiKey": {}}])]}
    assert sorted(config_problems(tree)) == [
        "templates[0].authSchemeConfigs[0].apiKey.in: required: one of header, query, cookie",
        "templates[0].authSchemeConfigs[0].apiKey.name: required",
    ]
