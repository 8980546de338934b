"""Regenerate `seed_paths.json`: every property path of the seed schemas, read from the seeds.

Not run by the test suite (the seed documents are not part of the repository); run by hand when
the seeds change:

    python tests/seeds/extract.py ../shared/seeds > tests/seeds/seed_paths.json

Seed 001 (CreateConnection) carries the OpenAPI schemas: each schema listed in `SCHEMAS` is
walked through `$ref`s, `allOf` and array items, giving paths such as
`credentials[].authSchemeConfig.oauth2.scopes[].name`. Seed 000 (GetConnection) carries an example
response body; its JSON keys are walked the same way under the name `GetConnection.example`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMAS = [
    "EnvSystemConnectionCreate",
    "ConnectionCreate",
    "Connection",
    "ConnectionCredential",
    "AuthSchemeConfig",
    "AuthSchemeConfigBase",
    "AuthSchemeConfigNone",
    "AuthSchemeConfigAPIKey",
    "AuthSchemeConfigBasicAuth",
    "AuthSchemeConfigOAuth2",
    "AuthSchemeConfigOAuth1",
    "AuthSchemeConfigHMAC",
    "AuthSchemeConfigCertificate",
    "AuthSchemeConfigOAuth2Grant",
    "AuthSchemeConfigOAuth2GrantAuthorizationCode",
    "AuthSchemeConfigOAuth2GrantClientCredentials",
    "AuthSchemeConfigOAuth2GrantPassword",
    "Endpoint",
    "ParameterConfig",
    "Credential",
    "CredentialData",
    "CredentialDataBinary",
    "CredentialDataNone",
    "CredentialDataString",
    "CredentialDataBasicAuth",
    "CredentialDataOAuth2Client",
    "CredentialDataOAuth2Token",
    "CredentialDataOAuth2Code",
    "CredentialDataOAuth2Password",
    "CredentialDataCertificate",
    "CredentialDataOAuth1",
    "CredentialDataOAuth1Token",
]


def openapi_of(text: str) -> dict[str, Any]:
    """The YAML between the ```` fences of a seed page."""
    match = re.search(r"````yaml[^\n]*\n(.*?)````", text, re.S)
    assert match, "no OpenAPI block"
    document: dict[str, Any] = yaml.safe_load(match.group(1))
    return document


def properties(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties, through `$ref` and `allOf`."""
    if "$ref" in schema:
        return properties(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    found: dict[str, Any] = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        found.update(properties(part, schemas))
    return found


def resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def walk(
    schema: dict[str, Any], schemas: dict[str, Any], prefix: str, seen: frozenset[str]
) -> list[str]:
    paths: list[str] = []
    for name, sub in properties(schema, schemas).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        refs = {sub.get("$ref", "")}
        target = resolve(sub, schemas)
        if target.get("type") == "array" and "items" in target:
            path += "[]"
            refs.add(target["items"].get("$ref", ""))
            target = resolve(target["items"], schemas)
        refs.discard("")
        if refs & seen:
            continue  # a schema inside itself: its paths are listed once
        paths += walk(target, schemas, path, seen | refs)
    return paths


def example_paths(tree: Any, prefix: str = "") -> list[str]:
    paths: list[str] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.append(path)
            paths += example_paths(value, path)
    elif isinstance(tree, list) and tree:
        paths += example_paths(tree[0], prefix + "[]")
    return paths


def main(folder: str) -> None:
    seeds = {p.name[:3]: p.read_text(encoding="utf-8") for p in Path(folder).glob("*.txt")}
    schemas = openapi_of(seeds["001"])["components"]["schemas"]
    out = {name: sorted(set(walk(schemas[name], schemas, "", frozenset()))) for name in SCHEMAS}
    body = seeds["000"]
    start = body.index("\n{\n")
    example, _ = json.JSONDecoder().raw_decode(body[start + 1 :])
    out["GetConnection.example"] = sorted(set(example_paths(example)))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds")
