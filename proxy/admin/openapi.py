"""The OpenAPI 3.1 document of the management API, served at `/openapi.json`.

Request bodies are the JSON Schemas of the very pydantic models that validate them, so the
document cannot drift from what the API accepts; responses are written here by hand (reads
redact secrets, so they are looser than the request models; every read is also checked against
seed 001's own `Connection` schema by a test). `proxy/admin/openapi.json` is this
document written out (`python -m proxy.admin.openapi > proxy/admin/openapi.json`); a test
checks that the two are equal.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .models import ConnectionCreate, OAuth2Init
from .oauth1_flow import OAuth1Init

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json(_ref("Error"))}


_STRING = {"type": "string"}
_DATE_TIME = {"type": "string", "format": "date-time"}

_RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "The error shape of docs/errors.md, also in the `Proxy-Status` header "
        "(RFC 9209).",
        "required": ["code", "message"],
        "properties": {
            "code": _STRING,
            "message": _STRING,
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": _STRING, "message": _STRING},
                },
            },
            "details": _STRING,
        },
    },
    "CredentialRead": {
        "type": "object",
        "description": 'The seed `Credential` with its secret values redacted as "" '
        "(OpenInt's include_secrets shows them).",
        "required": ["id", "organisationId", "type", "data"],
        "properties": {
            "id": _STRING,
            "organisationId": _STRING,
            "type": _STRING,
            "name": _STRING,
            "expiresAt": _DATE_TIME,
            "data": {"type": "object"},
        },
    },
    "ConnectionCredentialRead": {
        "type": "object",
        "required": ["id", "authSchemeConfig", "credential"],
        "properties": {
            "id": _STRING,
            "authSchemeConfig": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": _STRING},
            },
            "credential": _ref("CredentialRead"),
        },
    },
    "Connection": {
        "type": "object",
        "description": "The seed `Connection` (GetConnection); secret values are redacted as "
        '"". POSTed back as `connection` with the secrets filled in, it creates the same '
        "connection.",
        "required": ["id", "name", "credentials", "createdAt", "updatedAt", "baseUrl", "route"],
        "properties": {
            "id": _STRING,
            "name": _STRING,
            "baseUrl": _STRING,
            "createdAt": _DATE_TIME,
            "updatedAt": _DATE_TIME,
            "systemId": _STRING,
            "connectionTemplateId": _STRING,
            "route": _STRING,
            "externalId": _STRING,
            "forwardClientAuthorization": {"type": "boolean"},
            "rewriteResponseUrls": {"type": "boolean"},
            "credentials": {"type": "array", "items": _ref("ConnectionCredentialRead")},
        },
    },
    "ConnectionList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Connection")}},
    },
    "AuthorizeUrl": {
        "type": "object",
        "required": ["url"],
        "properties": {"url": {"type": "string", "format": "uri"}},
    },
    "OAuth2Credential": {
        "type": "object",
        "description": "Seed 003's credential: `type` from its enum (OAuth2Refresh: the token "
        "can be refreshed; Raw: it cannot), `data` the non-secret fields as base64 strings, "
        "`redactFields` the secret fields left out; plus the connection's id.",
        "required": ["id", "organisationID", "name", "type", "data", "connectionId"],
        "properties": {
            "id": _STRING,
            "organisationID": _STRING,
            "name": _STRING,
            "type": {"enum": ["Default", "OAuth2Refresh", "Raw", "BasicAuth"]},
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
            "redactFields": {"type": "array", "items": _STRING},
            "expiresAt": _DATE_TIME,
            "connectionId": _STRING,
        },
    },
    "OpenIntConnection": {
        "type": "object",
        "description": "Seed 004 (OpenInt getConnection): the connection in snake_case; "
        "secret values only with include_secrets=true.",
        "required": [
            "id",
            "connector_name",
            "connector_config_id",
            "display_name",
            "created_at",
            "updated_at",
            "status",
            "settings",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^conn_"},
            "customer_id": _STRING,
            "connector_config_id": _STRING,
            "connector_name": _STRING,
            "display_name": _STRING,
            "created_at": _STRING,
            "updated_at": _STRING,
            "disabled": {"type": "boolean"},
            "status": {"enum": ["healthy", "disconnected", "error"]},
            "status_message": _STRING,
            "metadata": {"type": "object"},
            "settings": {
                "type": "object",
                "properties": {
                    "oauth": {
                        "type": "object",
                        "properties": {
                            "credentials": {
                                "type": "object",
                                "properties": {
                                    "access_token": _STRING,
                                    "refresh_token": _STRING,
                                    "client_id": _STRING,
                                    "scope": _STRING,
                                    "expires_in": {"type": "integer"},
                                    "expires_at": _STRING,
                                    "token_type": _STRING,
                                    "raw": {"type": "object"},
                                },
                            },
                            "created_at": _STRING,
                            "updated_at": _STRING,
                            "metadata": {"type": "object"},
                        },
                    },
                    "access_token": _STRING,
                    "api_key": _STRING,
                    "username": _STRING,
                    "password": _STRING,
                    "credentials": {"type": "array", "items": {"type": "object"}},
                },
            },
            "connector": {
                "type": "object",
                "required": ["name", "display_name", "auth_type", "scopes"],
                "properties": {
                    "name": _STRING,
                    "display_name": _STRING,
                    "auth_type": {
                        "enum": ["BASIC", "OAUTH1", "OAUTH2", "OAUTH2CC", "API_KEY", "CUSTOM"]
                    },
                    "scopes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "scope": _STRING,
                                "display_name": _STRING,
                                "description": _STRING,
                            },
                        },
                    },
                },
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": _STRING, "store": _STRING},
    },
}

_ORG = {
    "name": "organisation_id",
    "in": "path",
    "required": True,
    "schema": _STRING,
    "description": "The proxy's `organisationId`; any other is 404.",
}
_CONNECTION_ID = {"name": "connection_id", "in": "path", "required": True, "schema": _STRING}
_OPENINT_ID = {
    **_CONNECTION_ID,
    "description": "The connection's id, with or without OpenInt's `conn_` prefix.",
}
_UNAUTHORIZED = _error("missing or wrong admin token")
_NOT_FOUND = _error("unknown organisation or connection")
_UNSUPPORTED_MEDIA_TYPE = _error("the body is not sent as Content-Type: application/json")
_PUBLIC: list[dict[str, Any]] = [{}]


def _paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "summary": "Process is up",
                "security": _PUBLIC,
                "responses": {"200": {"description": "up", **_json(_ref("Status"))}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Config loaded and store reachable",
                "security": _PUBLIC,
                "responses": {
                    "200": {"description": "ready", **_json(_ref("Status"))},
                    "503": {"description": "the store does not answer", **_json(_ref("Status"))},
                },
            }
        },
        "/o/{organisation_id}/connections": {
            "parameters": [_ORG],
            "post": {
                "operationId": "CreateConnection",
                "summary": "Create a connection from a template; it serves traffic at once",
                "requestBody": {"required": True, **_json(_ref("ConnectionCreate"))},
                "responses": {
                    "201": {"description": "created", **_json(_ref("Connection"))},
                    "400": _error(
                        "malformed or too deeply nested JSON, or invalid fields (`fields[]`)"
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _error("name or externalId already taken within the template"),
                    "502": _error("the token endpoint failed to exchange an oauth2-code"),
                    "413": _error("body too large"),
                    "415": _UNSUPPORTED_MEDIA_TYPE,
                },
            },
            "get": {
                "operationId": "ListConnections",
                "summary": "All connections, secrets left out",
                "responses": {
                    "200": {"description": "connections", **_json(_ref("ConnectionList"))},
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                },
            },
        },
        "/o/{organisation_id}/connections/{connection_id}": {
            "parameters": [_ORG, _CONNECTION_ID],
            "get": {
                "operationId": "GetConnection",
                "summary": "One connection, secrets left out",
                "responses": {
                    "200": {"description": "the connection", **_json(_ref("Connection"))},
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                },
            },
            "delete": {
                "operationId": "DeleteConnection",
                "summary": "Delete an API-created connection and its stored tokens",
                "responses": {
                    "204": {"description": "deleted"},
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _error("the connection is defined in proxy.yaml"),
                },
            },
        },
        "/o/{organisation_id}/templates/{template_id}/oauth2/init": {
            "parameters": [
                _ORG,
                {"name": "template_id", "in": "path", "required": True, "schema": _STRING},
            ],
            "post": {
                "operationId": "InitialiseOAuth2Connection",
                "summary": "Start the connect flow: the authorize URL (PKCE S256, state)",
                "requestBody": {"required": True, **_json(_ref("OAuth2Init"))},
                "responses": {
                    "200": {"description": "open this URL", **_json(_ref("AuthorizeUrl"))},
                    "400": _error("invalid body, or a template the flow cannot fill"),
                    "401": _UNAUTHORIZED,
                    "404": _error("unknown organisation or template"),
                    "413": _error("body too large"),
                    "415": _UNSUPPORTED_MEDIA_TYPE,
                },
            },
        },
        "/o/{organisation_id}/templates/{template_id}/oauth1/init": {
            "parameters": [
                _ORG,
                {"name": "template_id", "in": "path", "required": True, "schema": _STRING},
            ],
            "post": {
                "operationId": "InitialiseOAuth1Connection",
                "summary": "Start the OAuth 1.0a three-legged flow (RFC 5849 §2): temporary "
                "credentials, then the resource owner authorization URL",
                "requestBody": {"required": True, **_json(_ref("OAuth1Init"))},
                "responses": {
                    "200": {"description": "open this URL", **_json(_ref("AuthorizeUrl"))},
                    "400": _error(
                        "invalid body, missing params, or a template the flow cannot fill"
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _error("unknown organisation or template"),
                    "413": _error("body too large"),
                    "415": _UNSUPPORTED_MEDIA_TYPE,
                    "502": _error("the temporary credential endpoint failed"),
                },
            },
        },
        "/connections/oauth1/callback": {
            "get": {
                "operationId": "OAuth1Callback",
                "summary": "The provider's redirect: token credentials (RFC 5849 §2.3), "
                "connection created or updated",
                "security": _PUBLIC,
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": _STRING}
                    for name in ("oauth_token", "oauth_verifier")
                ],
                "responses": {
                    "201": {"description": "connected", **_json(_ref("OAuth2Credential"))},
                    "400": _error(
                        "missing parameters, unknown/used/expired oauth_token, or a "
                        "verifier the provider refused"
                    ),
                    "409": _error("the connection name or externalId was taken meanwhile"),
                    "502": _error("the token endpoint failed"),
                },
            }
        },
        "/connections/oauth2/callback": {
            "get": {
                "operationId": "OAuth2Callback",
                "summary": "The provider's redirect: exchange the code, store the credential",
                "security": _PUBLIC,
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": _STRING}
                    for name in ("code", "state", "error", "error_description")
                ],
                "responses": {
                    "201": {"description": "connected", **_json(_ref("OAuth2Credential"))},
                    "400": _error("provider error, missing code, or bad/used/expired state"),
                    "409": _error("the connection name or externalId was taken meanwhile"),
                    "502": _error("the token endpoint failed"),
                },
            }
        },
        "/connection/{connection_id}": {
            "parameters": [_OPENINT_ID],
            "get": {
                "operationId": "getConnection",
                "summary": "OpenInt getConnection",
                "parameters": [
                    {
                        "name": "include_secrets",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean", "default": False},
                    },
                    {
                        "name": "refresh_policy",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["none", "force", "auto"], "default": "auto"},
                    },
                    {
                        "name": "expand",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "array", "items": {"enum": ["connector"]}},
                        "style": "form",
                        "explode": True,
                    },
                ],
                "responses": {
                    "200": {"description": "the connection", **_json(_ref("OpenIntConnection"))},
                    "400": _error("bad query parameter"),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "502": _error("the token could not be refreshed"),
                },
            },
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once; request schemas come from the validating models)."""
    _, defs = models_json_schema(
        [
            (ConnectionCreate, "validation"),
            (OAuth2Init, "validation"),
            (OAuth1Init, "validation"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "signing-proxy management API",
            "version": "1",
            "description": "The management API of docs/admin-api.md. Every route but health, this "
            "document and the OAuth 2.0 "
            "callback needs `Authorization: Bearer <admin.token>`.",
        },
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {**defs["$defs"], **_RESPONSE_SCHEMAS},
        },
        "security": [{"adminToken": []}],
        "paths": _paths(),
    }


def main() -> None:
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
