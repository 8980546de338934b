"""Write `fixtures/*.json`: the example bodies of seeds 000–004 with realistic values.

Run by hand (`python tests/seeds/make_fixtures.py`) after editing; the JSON files are committed
and the tests read those. Each document keeps every property its seed example shows, spelled and
placed as there, the way a Go exporter fills them (unselected objects `null` or `{}`, unset
strings `""`, the zero time). `${NAME}` marks a value the tests fill in (a local server's URL, a
token the local provider issued, a PEM made for the run): proxy.yaml interpolates them from the
environment, API bodies get them substituted. Ids are ULIDs, template ids included (seed 001's
`TemplateID` is one).

Two documents are derived from those cases:
- `000-chains.json`: connections of several credentials applied in order (seed 001
  `ConnectionCredentials`: "a user session token and an API key"), built from the single cases.
- `000-go-zero.json`: every case with the Go zero value in every position seed 001's schema
  (`connection_schema.json`, extracted from the seed) leaves optional: `""` for a string, `null`
  for a list, the zero time for a date-time, `false` for an absent boolean, `null` for an absent
  object; a present object and a `true` are kept (they carry the case). `KEPT` lists the few
  positions whose value the proxy needs to sign at all, with the reason.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).with_name("fixtures")
SCHEMA = json.loads(Path(__file__).with_name("connection_schema.json").read_text("utf-8"))
ORG = "01JAAAAAAAAAAAAAAAAAAAAAAA"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
SCHEMES = ["none", "apiKey", "basicAuth", "oauth2", "oauth1", "hmac", "certificate"]
DATA = [
    "binary",
    "none",
    "string",
    "basicAuth",
    "oauth2Client",
    "oauth2Token",
    "oauth2Code",
    "oauth2Password",
    "certificate",
    "oauth1",
    "oauth1Token",
]


def base(ident: str, description: str) -> dict[str, Any]:
    return {
        "id": ident,
        "description": description,
        "validationMessages": [{"text": "validated", "severity": "info", "detail": []}],
    }


def scheme_config(kind: str, field: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """An AuthSchemeConfig as seed 000 prints it: every sub-object key present."""
    config: dict[str, Any] = {"type": kind}
    for index, name in enumerate(SCHEMES):
        # Exporters differ: some write null, some {}; both mean "not this one".
        config[name] = body if name == field else (None if index % 2 else {})
    return config


def credential(
    ident: str, kind: str, field: str, value: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    data = {name: (value if name == field else None) for name in DATA}
    return {
        "id": ident,
        "organisationId": ORG,
        "type": kind,
        "name": f"{kind} credential",
        "errors": [],
        "data": data,
        "expiresAt": GO_ZERO_TIME,
        **extra,
    }


GRANT_CLIENT = {
    "credentialId": "",
    "organisationId": "",
    "clientId": "${CLIENT_ID}",
    "clientSecret": "${CLIENT_SECRET}",
}


def oauth2(grant_type: str, **extra: Any) -> dict[str, Any]:
    grant: dict[str, Any] = {
        "authorizationCode": None,
        "clientCredentials": None,
        "password": None,
        "type": grant_type,
    }
    grant[grant_type] = {} if grant_type == "clientCredentials" else dict(GRANT_CLIENT)
    return {
        **base("01JB00000000000000000000A2", "OAuth 2.0 as exported"),
        "authorizeUrl": "${AUTHORIZE_URL}",
        "tokenUrl": "${TOKEN_URL}",
        "scopes": [
            {"name": "files.read", "description": "Read your files"},
            {"name": "files.write", "description": "Change your files"},
        ],
        "defaultScopes": ["files.read"],
        "additionalAuthorizeParams": "access_type=offline",
        "additionalTokenParams": "",
        "mtlsEnabled": False,
        "mtlsCredentialId": "",
        "pkce": True,
        "grant": grant,
        **extra,
    }


def endpoint(url: str, usage: str) -> dict[str, Any]:
    return {
        "url": url,
        "additionalParamConfigs": [
            {
                "parameterName": "realm",
                "targetName": "",
                "location": "LOCATION_HEADER_PARAMETER",
                "usages": usage,
                "required": False,
                "modifiable": False,
            }
        ],
        "parameterTransmission": "AUTH_STYLE_AUTHORIZATION_HEADER",
    }


def connections() -> dict[str, dict[str, Any]]:
    """Seed 000's GetConnection body, one per auth scheme (and grant)."""
    cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "none": (
            scheme_config("none", "none", base("01JB0000000000000000000N0N", "public API")),
            credential("01JB0000000000000000000C0N", "none", "none", {}),
        ),
        "api-key": (
            scheme_config(
                "api-key",
                "apiKey",
                {
                    **base("01JB0000000000000000000AK1", "key header"),
                    "name": "X-Api-Key",
                    "in": "header",
                },
            ),
            credential("01JB0000000000000000000C1K", "string", "string", {"value": "${API_KEY}"}),
        ),
        "basic-auth": (
            scheme_config("basic-auth", "basicAuth", base("01JB0000000000000000000BA1", "basic")),
            credential(
                "01JB0000000000000000000C1B",
                "basic-auth",
                "basicAuth",
                {"username": "${BASIC_USER}", "password": "${BASIC_PASSWORD}"},
            ),
        ),
        "hmac": (
            scheme_config(
                "hmac",
                "hmac",
                {
                    **base("01JB0000000000000000000HM1", "webhook signature"),
                    "name": "X-Signature",
                    "in": "header",
                    "algorithm": "sha256",
                    "digestInputs": ["body"],
                    "encoding": "hex",
                },
            ),
            credential(
                "01JB0000000000000000000C1H",
                "binary",
                "binary",
                {"valueBase64": "${HMAC_KEY_BASE64}"},
            ),
        ),
        "oauth2-authorization-code": (
            scheme_config("oauth2", "oauth2", oauth2("authorizationCode")),
            credential(
                "01JB0000000000000000000C2A",
                "oauth2-token",
                "oauth2Token",
                {
                    "scopes": ["files.read"],
                    "accessToken": "${ACCESS_TOKEN}",
                    "tokenType": "",
                    "expiresAt": GO_ZERO_TIME,
                    "refreshToken": "${REFRESH_TOKEN}",
                },
            ),
        ),
        "oauth2-client-credentials": (
            scheme_config("oauth2", "oauth2", oauth2("clientCredentials")),
            credential(
                "01JB0000000000000000000C2C",
                "oauth2-client",
                "oauth2Client",
                {
                    "clientId": "${CLIENT_ID}",
                    "clientSecret": "${CLIENT_SECRET}",
                    "tokenUrl": "",
                    "scopes": None,
                    "additionalParams": "audience=https%3A%2F%2Fapi.example.com",
                    "mTLSEnabled": False,
                    "mTLSCredentialId": "",
                },
            ),
        ),
        "oauth2-password": (
            scheme_config("oauth2", "oauth2", oauth2("password")),
            credential(
                "01JB0000000000000000000C2P",
                "oauth2-password",
                "oauth2Password",
                {"username": "${RESOURCE_OWNER}", "password": "${RESOURCE_OWNER_PASSWORD}"},
            ),
        ),
        "oauth1": (
            scheme_config(
                "oauth1",
                "oauth1",
                {
                    **base("01JB000000000000000000001A", "NetSuite token-based auth"),
                    "tokenAuth": True,
                    "consumerKey": "${CONSUMER_KEY}",
                    "consumerSecret": "${CONSUMER_SECRET}",
                    "tempCredentialEndpoint": endpoint(
                        "https://{accountId}.restlets.api.netsuite.com/rest/requesttoken",
                        "USAGE_TEMP_CREDENTIAL_ENDPOINT",
                    ),
                    "resourceOwnerAuthorizationEndpoint": endpoint(
                        "https://{accountId}.app.netsuite.com/app/login/secure/authorizetoken.nl",
                        "USAGE_UNKNOWN",
                    ),
                    "tokenEndpoint": endpoint(
                        "https://{accountId}.restlets.api.netsuite.com/rest/accesstoken",
                        "USAGE_TOKEN_REQUEST_ENDPOINT",
                    ),
                    "signatureMethod": "sha256",
                    "credentialId": "",
                },
            ),
            credential(
                "01JB0000000000000000000C10",
                "oauth1-token",
                "oauth1Token",
                {
                    "token": "${OAUTH1_TOKEN}",
                    "tokenSecret": "${OAUTH1_TOKEN_SECRET}",
                    "additionalParams": [{"name": "realm", "value": "1234567_SB1"}],
                },
            ),
        ),
        "certificate": (
            scheme_config("certificate", "certificate", base("01JB0000000000000000000CE1", "mTLS")),
            credential(
                "01JB0000000000000000000C1C",
                "certificate",
                "certificate",
                {"certificate": "${CLIENT_CERT}", "key": "${CLIENT_KEY}", "ca": "${CA_CERT}"},
            ),
        ),
    }
    out: dict[str, dict[str, Any]] = {}
    for number, (name, (auth, cred)) in enumerate(cases.items()):
        out[name] = {
            "id": f"01JC00000000000000000000{number:02d}",
            "name": f"acme-{name}",
            "credentials": [
                {
                    "id": f"01JD00000000000000000000{number:02d}",
                    "authSchemeConfig": auth,
                    "credential": cred,
                }
            ],
            "baseUrl": "${UPSTREAM}",
            "createdAt": "2025-01-31T12:00:00Z",
            "updatedAt": "2025-02-01T08:30:00Z",
            "systemId": "01JE0000000000000000000S01",
            "connectionTemplateId": template_id(name),
        }
    return out


def template_id(case: str) -> str:
    """The ULID of the template a case's connections are created from."""
    return f"01JE{'0' * 19}T{sorted(CASES).index(case):02d}"


CASES = [
    "none",
    "api-key",
    "basic-auth",
    "hmac",
    "oauth2-authorization-code",
    "oauth2-client-credentials",
    "oauth2-password",
    "oauth1",
    "certificate",
]


def chains() -> dict[str, dict[str, Any]]:
    """Connections whose credentials apply in order, made of the single cases' entries."""
    single = connections()
    plans = {
        "api-key+hmac": ["api-key", "hmac"],
        "none+basic-auth+api-key": ["none", "basic-auth", "api-key"],
        "oauth1+api-key": ["oauth1", "api-key"],
        "certificate+oauth2-client-credentials": ["certificate", "oauth2-client-credentials"],
        "oauth2-authorization-code+hmac": ["oauth2-authorization-code", "hmac"],
    }
    out: dict[str, dict[str, Any]] = {}
    for number, (name, parts) in enumerate(plans.items()):
        entries = []
        for index, part in enumerate(parts):
            entry = copy.deepcopy(single[part]["credentials"][0])
            # Ids of their own: the same credential id in two connections is one credential.
            entry["id"] = entry["credential"]["id"] = f"01JD{'0' * 18}K{number}{index:02d}"
            entries.append(entry)
        if name.startswith("certificate+"):
            # The token endpoint is reached with the certificate credential (mTLS).
            oauth2 = entries[1]["authSchemeConfig"]["oauth2"]
            oauth2["mtlsEnabled"] = True
            oauth2["mtlsCredentialId"] = entries[0]["id"]
            # The credential's own switch, in its own spelling (seed `CredentialDataOAuth2Client`).
            client = entries[1]["credential"]["data"]["oauth2Client"]
            client["mTLSEnabled"] = True
            client["mTLSCredentialId"] = entries[0]["id"]
        out[name] = {
            **single[parts[0]],
            "id": f"01JC{'0' * 19}K{number:02d}",
            "name": f"chain-{name}",
            "credentials": entries,
            "connectionTemplateId": "",
        }
    return out


# Positions the Go zero is not written to, though the seed leaves them optional: without their
# value nothing can be signed (a file connection's upstream, the credential's type that selects
# its data, the client a refresh authenticates as, and its secret, when the credential names
# none), so an export always has them.
GRANT = "credentials[].authSchemeConfig.oauth2.grant"
KEPT = {
    "baseUrl",
    "credentials[].credential.type",
    *(f"{GRANT}.{grant}.{field}" for grant in ("authorizationCode", "password")
      for field in ("clientId", "clientSecret")),
}  # fmt: skip


def go_zero() -> dict[str, dict[str, Any]]:
    """Each single case with the Go zero value in every optional position of the seed schema."""
    root = resolve({"$ref": SCHEMA["$ref"]})
    out = {}
    for number, (name, case) in enumerate(connections().items()):
        document = zeroed(case, root, "")
        # Ids and name of their own, so the variant can be served beside its case.
        document.update(id=f"01JC{'0' * 19}Z{number:02d}", name=f"zero-{name}")
        for index, entry in enumerate(document["credentials"]):
            entry["id"] = entry["credential"]["id"] = f"01JD{'0' * 18}Z{number}{index:02d}"
        out[name] = document
    return out


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema through its `$ref`s, with `allOf` parts merged (properties, required)."""
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    merged = {**schema, "properties": dict(schema.get("properties", {}))}
    merged["required"] = list(schema.get("required", []))
    for part in schema.get("allOf", []):
        part = resolve(part)
        merged["properties"].update(part["properties"])
        merged["required"] += part["required"]
        merged.setdefault("type", part.get("type"))
    return merged


def zeroed(document: Any, schema: dict[str, Any], path: str) -> Any:
    if schema.get("type") == "array" and isinstance(document, list):
        items = resolve(schema.get("items", {}))
        return [zeroed(item, items, path + "[]") for item in document]
    if not isinstance(document, dict) or not schema.get("properties"):
        return document
    out = dict(document)
    for name, sub in schema["properties"].items():
        sub = resolve(sub)
        here = f"{path}.{name}".lstrip(".")
        value = out.get(name)
        if name in schema["required"] or here in KEPT:
            if value is not None:
                out[name] = zeroed(value, sub, here)
            continue
        kind = sub.get("type")
        if kind == "string":
            out[name] = GO_ZERO_TIME if sub.get("format") == "date-time" else ""
        elif kind == "array":
            out[name] = None
        elif kind == "boolean":
            out[name] = bool(value)  # an absent flag is false; a true is the case's own
        elif value is None:
            out[name] = None  # an absent object: Go's nil pointer
        else:
            out[name] = zeroed(value, sub, here)
    return out


def pending() -> dict[str, dict[str, Any]]:
    """The two credential types that stand for a connect flow half done (seed 001 enum)."""
    code = connections()["oauth2-authorization-code"]["credentials"][0]
    oauth1 = connections()["oauth1"]["credentials"][0]
    return {
        "oauth2-code": {
            "authSchemeConfig": code["authSchemeConfig"],
            "credential": credential(
                "01JD0000000000000000000P01",
                "oauth2-code",
                "oauth2Code",
                {
                    "code": "${AUTHORIZATION_CODE}",
                    "state": "",
                    "additionalParams": "resource=files",
                },
            ),
        },
        "oauth1": {
            "authSchemeConfig": {
                **oauth1["authSchemeConfig"],
                "oauth1": {**oauth1["authSchemeConfig"]["oauth1"], "tokenAuth": False},
            },
            "credential": credential(
                "01JD0000000000000000000P02",
                "oauth1",
                "oauth1",
                {
                    "state": "st-81c2",
                    "oauthToken": "${OAUTH1_TEMP_TOKEN}",
                    "oauthVerifier": "${OAUTH1_VERIFIER}",
                },
            ),
        },
    }


def create_bodies() -> dict[str, dict[str, Any]]:
    """Seed 001's EnvSystemConnectionCreate, one per case, `baseUrl` a Go zero (the template's)."""
    return {
        name: {
            "connectionTemplateId": template_id(name),
            "connection": {"name": c["name"], "credentials": c["credentials"], "baseUrl": ""},
            "externalId": f"customer-{name}",
        }
        for name, c in connections().items()
    }


INIT = {
    "authorizeUrl": "${AUTHORIZE_URL}",
    "clientId": "${CLIENT_ID}",
    "scopes": ["files.read", "files.write"],
    "disableOfflineAccess": False,
    "prompt": "consent+select_account",
    "additionalParams": "access_type=offline&include_granted_scopes=true",
}

CALLBACK = {
    "id": "01JF0000000000000000000CB1",
    "organisationID": ORG,
    "name": "acme-drive",
    "data": {"tokenType": "QmVhcmVy", "expiresAt": "MjAyNS0wMi0wMVQwOTozMDowMFo="},
    "type": "OAuth2Refresh",
    "redactFields": ["accessToken", "refreshToken"],
    "expiresAt": "2025-02-01T09:30:00Z",
}

OPENINT = {
    "id": "conn_01JC0000000000000000000004",
    "customer_id": "customer-42",
    "connector_config_id": "oauth2-authorization-code",
    "integration_id": "",
    "status_message": "",
    "created_at": "2025-01-31T12:00:00Z",
    "updated_at": "2025-02-01T08:30:00Z",
    "display_name": "acme drive",
    "disabled": False,
    "status": "healthy",
    "metadata": {},
    "connector_name": "oauth2-authorization-code",
    "settings": {
        "oauth": {
            "credentials": {
                "access_token": "ya29.a0AfB_byC",
                "client_id": "drive-client",
                "scope": "files.read",
                "refresh_token": "1//0gLx",
                "expires_in": 3599,
                "expires_at": "2025-02-01T09:30:00Z",
                "token_type": "Bearer",
                "raw": {},
            },
            "created_at": "2025-01-31T12:00:00Z",
            "updated_at": "2025-02-01T08:30:00Z",
            "last_fetched_at": "2025-02-01T08:30:00Z",
            "metadata": {},
        },
        "access_token": "ya29.a0AfB_byC",
    },
}


def documents() -> dict[str, Any]:
    """File name → document."""
    return {
        "000-get-connection.json": connections(),
        "000-exchange-pending.json": pending(),
        "000-chains.json": chains(),
        "000-go-zero.json": go_zero(),
        "001-create-connection.json": create_bodies(),
        "002-initialise-oauth2.json": {"request": INIT, "response": {"url": "https://..."}},
        "003-oauth2-callback.json": CALLBACK,
        "004-openint-get-connection.json": OPENINT,
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, document in documents().items():
        (HERE / name).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
