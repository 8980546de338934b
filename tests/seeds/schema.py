"""Seed 001's `Connection` schema as the tests validate with it: the committed extraction
(`connection_schema.json`, written from the seed by `extract.py`) with the seed's two
self-contradictions repaired, and a format checker for the formats it names (`ulid`,
`date-time`)."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from ulid import ULID

AS_WRITTEN: dict[str, Any] = json.loads(
    Path(__file__).with_name("connection_schema.json").read_text(encoding="utf-8")
)

# The seed's `required` lists that name a property the schema does not have, and the repair:
# the grant objects' `grantType` is the enclosing grant's `type` (already required there), so it
# is dropped; `ParameterConfig`'s `usage` is its `usages` property.
REPAIRS: dict[tuple[str, str], str | None] = {
    ("AuthSchemeConfigOAuth2GrantAuthorizationCode", "grantType"): None,
    ("AuthSchemeConfigOAuth2GrantPassword", "grantType"): None,
    ("ParameterConfig", "usage"): "usages",
}


def contradictions(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(schema, name) for every `required` name that is not one of the schema's properties."""
    found = set()
    for name, schema in document["components"]["schemas"].items():
        for part in [schema, *schema.get("allOf", [])]:
            if "$ref" in part:
                continue
            for required in part.get("required", []):
                if required not in part.get("properties", {}):
                    found.add((name, required))
    return found


def repaired() -> dict[str, Any]:
    document = copy.deepcopy(AS_WRITTEN)
    schemas = document["components"]["schemas"]
    for (name, wrong), right in REPAIRS.items():
        required = schemas[name]["required"]
        required.remove(wrong)
        if right is not None:
            required.append(right)
    return document


FORMATS = FormatChecker(formats=())


@FORMATS.checks("ulid", raises=ValueError)
def _ulid(value: object) -> bool:
    return not isinstance(value, str) or bool(ULID.from_str(value))


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # RFC 3339: a date, a time and an offset (`Z` or `±hh:mm`).
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def connection_validator() -> Draft202012Validator:
    """Validates a body against the repaired seed `Connection`, formats asserted."""
    document = repaired()
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=FORMATS)


def problems(body: Any) -> list[str]:
    """Every way `body` fails the schema, as `path: message` (empty when it validates)."""
    return sorted(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in connection_validator().iter_errors(body)
    )


def problems_but_template_id(body: Any) -> list[str]:
    """`problems()`, except that `connectionTemplateId` may be a name: the template ids of
    proxy.yaml are chosen there (docs/admin-api.md "Reads"), the seed's are ULIDs."""
    return [p for p in problems(body) if not p.startswith("connectionTemplateId: ")]
