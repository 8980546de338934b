"""The seed 001 `Connection` that reads answer (GET, the list, the 201 of create): pure.

Every body validates against the seed's `Connection` schema (docs/admin-api.md "Reads"):

- secret fields are present and `""` (the seed marks them required and "redacted when read");
- each credential's `id` and `organisationId`, and its scheme sub-object's `id` and
  `description`, are present (ids are ULIDs made once, `config/ids.py`);
- a field the seed requires that the input left unset is written as the empty value of its type
  (`oauth2Client.tokenUrl: ""`, `oauth2Token.refreshToken: ""`, `certificate.ca: ""`), the way
  the platform's own Go exporter writes it;
- only the sub-object `type` selects is written (`null` is not an object in the schema).

A body read this way can be POSTed back with only its secrets filled in.
"""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

from ..config import models as m
from ..config.ids import SCHEME_FIELDS
from .redact import to_json

# What the seed requires in a scheme sub-object that the models may leave unset.
_SCHEME_REQUIRED: dict[str, dict[str, Any]] = {
    "oauth2": {"tokenUrl": "", "scopes": [], "defaultScopes": []},
}
# The same for credential data, by `CredentialData` key.
_DATA_REQUIRED: dict[str, dict[str, Any]] = {
    "oauth2Client": {"tokenUrl": "", "clientSecret": ""},
    "oauth2Token": {"refreshToken": "", "scopes": []},
    "oauth2Code": {"state": ""},
    "certificate": {"ca": ""},
}


def connection_body(
    model: m.Connection, *, route: str, organisation_id: str, loaded_at: str
) -> dict[str, Any]:
    """`model` as the seed `Connection`, secrets `""`.

    Args:
        route: where it serves (`/` for the root route).
        loaded_at: `createdAt` of a connection that has none (one from proxy.yaml: the time the
            file was loaded).
    """
    body = to_json(model, blank_secrets=True)
    body["route"] = route
    body.setdefault("createdAt", loaded_at)
    body.setdefault("updatedAt", body["createdAt"])
    body.setdefault("credentials", [])
    for entry in body["credentials"]:
        _fill_entry(entry, organisation_id)
    return body


def _fill_entry(entry: dict[str, Any], organisation_id: str) -> None:
    credential = entry["credential"]
    credential.setdefault("id", entry["id"])
    credential.setdefault("organisationId", organisation_id)
    for key, value in credential.get("data", {}).items():
        _fill(value, _DATA_REQUIRED.get(key, {}))
    auth = entry["authSchemeConfig"]
    key = to_camel(SCHEME_FIELDS[auth["type"]])  # the sub-object `type` selects
    sub = auth.setdefault(key, {})
    _fill(sub, {"description": "", **_SCHEME_REQUIRED.get(key, {})})


def _fill(target: dict[str, Any], required: dict[str, Any]) -> None:
    for name, empty in required.items():
        target.setdefault(name, empty.copy() if isinstance(empty, list) else empty)
