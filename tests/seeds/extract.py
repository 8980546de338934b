"""Regenerate what the tests read from the seeds: `seed_paths.json` and `connection_schema.json`.

The seed documents are not part of the repository, so the suite reads these extractions; run by
hand when the seeds change (`test_seed_extraction.py` compares them with the seeds whenever the
seed folder is at hand):

    python tests/seeds/extract.py ../shared/seeds

- `seed_paths.json`: every property path of the seed schemas. Seed 001 (CreateConnection)
  carries the OpenAPI schemas: each schema listed in `SCHEMAS` is walked through `$ref`s, `allOf`
  and array items, giving paths such as `credentials[].authSchemeConfig.oauth2.scopes[].name`.
  Seed 000 (GetConnection) carries an example response body; its JSON keys are walked the same
  way under the name `GetConnection.example`.
- `connection_schema.json`: seed 001's `Connection` schema and every schema it references, as
  the seed writes them (OpenAPI 3.1 schemas are JSON Schema 2020-12), under
  `components.schemas` so each `$ref` resolves inside the file. Nothing is changed here; the
  repairs the tests apply are in the tests, named there.
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


def referenced(name: str, schemas: dict[str, Any]) -> list[str]:
    """`name` and every schema it references, directly or not, in the order first reached."""
    found = [name]
    for current in found:
        text = json.dumps(schemas[current])
        for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text):
            if ref not in found:
                found.append(ref)
    return found


def connection_schema(schemas: dict[str, Any]) -> dict[str, Any]:
    """Seed 001's `Connection` with what it references, `$ref`s resolvable in the document."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Extracted from seed 001 by tests/seeds/extract.py; do not edit by hand.",
        "$ref": "#/components/schemas/Connection",
        "components": {
            "schemas": {name: schemas[name] for name in sorted(referenced("Connection", schemas))}
        },
    }


def extract(folder: str | Path) -> dict[str, str]:
    """File name → the text to write, from the seeds in `folder`."""
    seeds = {p.name[:3]: p.read_text(encoding="utf-8") for p in Path(folder).glob("*.txt")}
    schemas = openapi_of(seeds["001"])["components"]["schemas"]
    out = {name: sorted(set(walk(schemas[name], schemas, "", frozenset()))) for name in SCHEMAS}
    body = seeds["000"]
    start = body.index("\n{\n")
    example, _ = json.JSONDecoder().raw_decode(body[start + 1 :])
    out["GetConnection.example"] = sorted(set(example_paths(example)))
    return {
        "seed_paths.json": json.dumps(out, indent=1, sort_keys=True) + "\n",
        "connection_schema.json": json.dumps(connection_schema(schemas), indent=1) + "\n",
    }


def main(folder: str) -> None:
    for name, text in extract(folder).items():
        Path(__file__).with_name(name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds")
