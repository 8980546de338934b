"""The OpenAPI 3.1 document of the management API, served at `/openapi.json`.

Request bodies are the JSON Schemas of the very pydantic models that validate them, so the
document cannot drift from what the API accepts; responses are written here by hand (reads leave
secrets out, so they are looser than the request models). `proxy/admin/openapi.json` is this
document written out (`python -m proxy.admin.openapi > proxy/admin/openapi.json`); a test
checks that the two are equal.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .models import ConnectionCreate, OAuth2Init

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json(_ref("Error"))}


_STRING = {"type": "string"}

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
        "description": "A credential with its secret values left out (include_secrets shows them).",
        "required": ["type", "data"],
        "properties": {
            "type": _STRING,
            "id": _STRING,
            "name": _STRING,
            "expiresAt": _STRING,
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
        "description": "The seed `Connection`; secret values are left out.",
        "required": ["id", "name", "baseUrl", "route", "credentials"],
        "properties": {
            "id": _STRING,
            "name": _STRING,
            "baseUrl": _STRING,
            "route": _STRING,
            "externalId": _STRING,
            "connectionTemplateId": _STRING,
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
        "description": "The seed credential shape, `data` redacted, plus the connection's id.",
        "required": ["id", "organisationID", "type", "data", "connectionId"],
        "properties": {
            "id": _STRING,
            "organisationID": _STRING,
            "name": _STRING,
            "type": {"const": "oauth2-token"},
            "data": {"type": "object"},
            "expiresAt": _STRING,
            "connectionId": _STRING,
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
            "parameters": [_CONNECTION_ID],
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
                ],
                "responses": {
                    "200": {"description": "the connection", **_json(_ref("Connection"))},
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
        [(ConnectionCreate, "validation"), (OAuth2Init, "validation")],
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
