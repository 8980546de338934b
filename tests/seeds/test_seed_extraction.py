"""The committed extractions are what `extract.py` reads from the seeds now, and the schema the
tests validate with differs from seed 001's only by its two repairs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.seeds import extract, make_fixtures, schema

HERE = Path(__file__).parent
# The seeds live outside the repository, beside it (`../shared/seeds`), or where
# $SIGNING_PROXY_SEEDS says.
CANDIDATES = [
    Path(os.environ.get("SIGNING_PROXY_SEEDS", HERE / "absent")),
    *(parent / "shared" / "seeds" for parent in HERE.parents[2:4]),
]
SEEDS = next((c for c in CANDIDATES if any(c.glob("001_*.txt"))), None)


@pytest.mark.skipif(SEEDS is None, reason="the seed documents are not at hand")
def test_committed_extractions_are_the_seeds() -> None:
    assert SEEDS is not None
    for name, text in extract.extract(SEEDS).items():
        assert (HERE / name).read_text(encoding="utf-8") == text, name


def test_the_seed_schema_contradicts_itself_twice_and_is_repaired() -> None:
    # Seed 001 requires properties its schemas do not define: `grantType` on both grant objects
    # (the grant's `type` is one level up) and `usage` on ParameterConfig (its property is
    # `usages`). No body can satisfy `usage` as written while meaning `usages`.
    assert schema.contradictions(schema.AS_WRITTEN) == set(schema.REPAIRS)
    repaired = schema.repaired()
    assert schema.contradictions(repaired) == set()
    schemas = repaired["components"]["schemas"]
    assert "usages" in schemas["ParameterConfig"]["required"]
    assert "grantType" not in schemas["AuthSchemeConfigOAuth2GrantAuthorizationCode"]["required"]
    # Everything else is the seed's, untouched.
    for name, value in schema.AS_WRITTEN["components"]["schemas"].items():
        if name not in {n for n, _ in schema.REPAIRS}:
            assert schemas[name] == value, name


def test_the_format_checks_bite() -> None:
    body = {"id": "not-a-ulid", "name": "x", "credentials": [], "createdAt": "yesterday",
            "updatedAt": "2025-01-31T12:00:00Z"}  # fmt: skip
    found = schema.problems(body)
    assert [p.split(":")[0] for p in found] == ["createdAt", "id"]


def test_committed_fixtures_are_what_make_fixtures_writes() -> None:
    # The derived documents (chains, Go zeros) follow the extracted schema and the cases.
    for name, document in make_fixtures.documents().items():
        committed = (make_fixtures.HERE / name).read_text(encoding="utf-8")
        assert committed == json.dumps(document, indent=1) + "\n", name
