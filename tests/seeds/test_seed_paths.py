"""Every property path of every seed 001 schema (and of seed 000's example body) is accepted by
the project's models at its place.

`seed_paths.json` was extracted once from the seed documents by `extract.py` (the seeds are not
part of the repository). A path is accepted when the model's own JSON Schema (validation mode,
by alias: exactly what the models read) has that property along the path in at least one branch
of its unions; an object that must stay empty (`{}` or null: an unselected sibling) accepts no
property below it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from proxy.admin import models as api
from proxy.config import models as m

PATHS: dict[str, list[str]] = json.loads(
    Path(__file__).with_name("seed_paths.json").read_text(encoding="utf-8")
)

CredentialData = (
    m.NoneData
    | m.StringData
    | m.BinaryData
    | m.BasicAuthData
    | m.CertificateData
    | m.OAuth1TokenData
    | m.OAuth1Data
    | m.OAuth2TokenData
    | m.OAuth2ClientData
    | m.OAuth2CodeData
    | m.OAuth2PasswordData
)

# Seed schema → the project's type that reads it (in proxy.yaml and in API bodies).
MODELS: dict[str, list[Any]] = {
    "EnvSystemConnectionCreate": [api.ConnectionCreate],
    "ConnectionCreate": [api.ConnectionCreateFields],
    "Connection": [m.Connection, api.ConnectionCreateFields],
    "ConnectionCredential": [m.ConnectionCredential, m.ConnectionCredentialInput],
    "AuthSchemeConfig": [m.AuthSchemeConfig],
    "AuthSchemeConfigBase": [m.SchemeBase],
    "AuthSchemeConfigNone": [m.SchemeBase],
    "AuthSchemeConfigAPIKey": [m.ApiKeyParams],
    "AuthSchemeConfigBasicAuth": [m.SchemeBase],
    "AuthSchemeConfigOAuth2": [m.OAuth2Params],
    "AuthSchemeConfigOAuth1": [m.OAuth1Params],
    "AuthSchemeConfigHMAC": [m.HmacParams],
    "AuthSchemeConfigCertificate": [m.SchemeBase],
    "AuthSchemeConfigOAuth2Grant": [m.OAuth2Grant],
    "AuthSchemeConfigOAuth2GrantAuthorizationCode": [m.GrantClient],
    "AuthSchemeConfigOAuth2GrantClientCredentials": [m.Empty],
    "AuthSchemeConfigOAuth2GrantPassword": [m.GrantClient],
    "Endpoint": [m.Endpoint],
    "ParameterConfig": [m.ParameterConfig],
    "Credential": [m.Credential],
    "CredentialData": [CredentialData],
    "CredentialDataBinary": [m.BinaryValue],
    "CredentialDataNone": [m.Empty],
    "CredentialDataString": [m.StringValue],
    "CredentialDataBasicAuth": [m.BasicAuthValue],
    "CredentialDataOAuth2Client": [m.OAuth2ClientValue],
    "CredentialDataOAuth2Token": [m.OAuth2TokenValue],
    "CredentialDataOAuth2Code": [m.OAuth2CodeValue],
    "CredentialDataOAuth2Password": [m.OAuth2PasswordValue],
    "CredentialDataCertificate": [m.CertificateValue],
    "CredentialDataOAuth1": [m.OAuth1Value],
    "CredentialDataOAuth1Token": [m.OAuth1TokenValue],
    "GetConnection.example": [m.Connection, api.ConnectionCreateFields],
}


class Schema:
    """A JSON Schema with its `$defs`, walked along property paths."""

    def __init__(self, kind: Any) -> None:
        document = TypeAdapter(kind).json_schema(mode="validation", by_alias=True)
        self.defs: dict[str, Any] = document.pop("$defs", {})
        self.root = document

    def branches(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """`schema` and every alternative it allows, with `$ref`s resolved."""
        if "$ref" in schema:
            return self.branches(self.defs[schema["$ref"].rsplit("/", 1)[1]])
        found = [schema]
        for key in ("anyOf", "oneOf", "allOf"):
            for part in schema.get(key, []):
                found += self.branches(part)
        return found

    def accepts(self, schema: dict[str, Any], parts: list[str]) -> bool:
        if not parts:
            return True
        head, rest = parts[0], parts[1:]
        name, is_list = (head[:-2], True) if head.endswith("[]") else (head, False)
        for branch in self.branches(schema):
            if branch.get("maxProperties") == 0 or name not in branch.get("properties", {}):
                continue
            targets = [branch["properties"][name]]
            if is_list:
                targets = [b["items"] for b in self.branches(targets[0]) if "items" in b]
            if any(self.accepts(target, rest) for target in targets):
                return True
        return False

    def accepts_path(self, path: str) -> bool:
        return self.accepts(self.root, path.split("."))


def test_every_seed_schema_is_mapped() -> None:
    assert set(PATHS) == set(MODELS)
    assert sum(len(paths) for paths in PATHS.values()) > 1000  # the extraction found them all


@pytest.mark.parametrize("seed_schema", sorted(MODELS))
def test_every_property_path_is_read_at_its_place(seed_schema: str) -> None:
    for kind in MODELS[seed_schema]:
        schema = Schema(kind)
        missing = [path for path in PATHS[seed_schema] if not schema.accepts_path(path)]
        assert missing == [], f"{seed_schema} read as {kind}: not accepted"


def test_the_walk_fails_on_a_path_the_models_do_not_read() -> None:
    schema = Schema(m.AuthSchemeConfig)
    assert schema.accepts_path("apiKey.name")
    assert not schema.accepts_path("apiKey.nmae")
    assert not schema.accepts_path("oauth2.grant.authorizationCode.clientSecrett")
