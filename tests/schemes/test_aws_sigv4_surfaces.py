"""`aws-sigv4` where people meet it: `check` errors at the field, and `explain` showing the
canonical request and string to sign (the signature recomputed here from what it prints), with
the secret key and session token as canaries that must never show (the management API:
tests/admin/test_aws_sigv4_api.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main

SECRET = "canary-aws-secret-key-3f9a"
TOKEN = "canary-aws-session-token-c71e"


def aws_entry(
    params: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    key = {"accessKeyId": "AKIDSURFACES", "secretAccessKey": SECRET, "sessionToken": TOKEN}
    return {
        "authSchemeConfig": {"type": "aws-sigv4", "awsSigV4": params or {}},
        "credential": {"type": "aws", "data": {"aws": data if data is not None else key}},
    }


def write(tmp_path: Path, *entries: dict[str, Any]) -> str:
    base = "https://sts.amazonaws.com"
    path = tmp_path / "proxy.yaml"
    tree = {"connections": [{"name": "aws", "baseUrl": base, "credentials": list(entries)}]}
    path.write_text(yaml.safe_dump(tree))
    return str(path)


@pytest.mark.parametrize(
    ("entries", "field", "message"),
    [
        (
            [aws_entry({"region": "US East 1"})],
            "connections[0].credentials[0].authSchemeConfig.awsSigV4.region",
            "pattern",
        ),
        (
            [aws_entry({"in": "cookie"})],
            "connections[0].credentials[0].authSchemeConfig.awsSigV4.in",
            "header",
        ),
        (
            [aws_entry({"expires": 604801})],
            "connections[0].credentials[0].authSchemeConfig.awsSigV4.expires",
            "604800",
        ),
        (
            [aws_entry(data={"secretAccessKey": SECRET})],
            "connections[0].credentials[0].credential.data.aws.accessKeyId",
            "required",
        ),
        (
            [aws_entry(data={"accessKeyId": "AKID", "secretAccessKey": ""})],
            "connections[0].credentials[0].credential.data.aws.secretAccessKey",
            "empty",
        ),
        (
            [aws_entry(data={"accessKeyId": "AK/ID", "secretAccessKey": SECRET})],
            "connections[0].credentials[0].credential.data.aws.accessKeyId",
            "access key id",
        ),
        (
            [
                aws_entry(
                    data={
                        "accessKeyId": "AKID",
                        "secretAccessKey": SECRET,
                        "sessionToken": TOKEN + "\n",
                    }  # fmt: skip
                )
            ],
            "connections[0].credentials[0].credential.data.aws.sessionToken",
            "control character",
        ),
        (
            [aws_entry(), aws_entry()],
            "connections[0].credentials[1].authSchemeConfig.type",
            "one aws-sigv4",
        ),
        (
            # AWS replaces Authorization and signs last: a bearer beside it would never arrive.
            [
                {
                    "authSchemeConfig": {"type": "bearer"},
                    "credential": {"type": "string", "data": {"string": {"value": SECRET}}},
                },
                aws_entry(),
            ],
            "connections[0].credentials[0].authSchemeConfig.type",
            "cannot sign beside aws-sigv4",
        ),
        (
            [
                {
                    "authSchemeConfig": {"type": "aws-sigv4"},
                    "credential": {"type": "string", "data": {"string": {"value": SECRET}}},
                }
            ],
            "connections[0].credentials[0].credential.type",
            "'aws'",
        ),
    ],
)
def test_check_names_the_field_and_never_the_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    entries: list[dict[str, Any]],
    field: str,
    message: str,
) -> None:
    assert main(["check", "--config", write(tmp_path, *entries)]) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    line = next((line for line in output.splitlines() if field + ":" in line), None)
    assert line is not None, output
    assert message in line
    assert SECRET not in output and TOKEN not in output


def test_a_valid_aws_connection_passes_check(tmp_path: Path) -> None:
    path = write(tmp_path, aws_entry({"region": "us-east-1", "service": "sts", "in": "query"}))
    assert main(["check", "--config", path]) == 0


def test_explain_shows_what_was_signed_and_masks_the_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, aws_entry({"region": "us-east-1", "service": "sts"}))
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    args = ["explain", "--config", path, "POST", "/aws/", "-H",
            "Content-Type: application/x-www-form-urlencoded", "--data", body]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and TOKEN not in out
    assert "X-Amz-Security-Token: ****" in out
    canonical_text = _block(out, "canonical request")
    to_sign_text = _block(out, "string to sign")
    authorization = re.search(r"^Authorization: (.*)$", out, re.M)
    assert authorization
    assert canonical_text.endswith(hashlib.sha256(body.encode()).hexdigest())
    assert "x-amz-security-token:****" in canonical_text
    # Recompute with the session token put back: the string to sign shown is the one signed.
    real = canonical_text.replace("****", TOKEN)
    assert to_sign_text.endswith(hashlib.sha256(real.encode()).hexdigest())
    timestamp, scope = to_sign_text.split("\n")[1:3]
    key = ("AWS4" + SECRET).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign_text.encode(), hashlib.sha256).hexdigest()
    assert authorization.group(1).endswith(f"Signature={signature}")
    assert f"Credential=AKIDSURFACES/{scope}" in authorization.group(1)
    assert timestamp in out


def _block(out: str, label: str) -> str:
    """A signed part as explain prints it: its label and size, then its lines, indented."""
    found = re.search(rf"^ +{label} \((\d+) bytes\):\n((?:          .*\n)+)", out, re.M)
    assert found, out
    text = "\n".join(line[10:] for line in found.group(2).rstrip("\n").split("\n"))
    assert len(text.encode()) == int(found.group(1)) or "****" in text
    return text


def test_the_extension_objects_follow_the_seed_rules_for_unselected_siblings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An exporter writes every sub-object: empty ones are ignored, a filled one is an error.
    entry = aws_entry({"region": "us-east-1", "service": "sts"})
    entry["authSchemeConfig"].update({"apiKey": None, "hmac": {}, "oauth2": None})
    entry["credential"]["data"].update({"string": None, "oauth2Token": {}})
    assert main(["check", "--config", write(tmp_path, entry)]) == 0
    capsys.readouterr()
    key = {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"},
           "awsSigV4": {"region": "us-east-1"}}  # fmt: skip
    string = {"type": "string", "data": {"string": {"value": SECRET}, "aws": {"accessKeyId": "A"}}}
    assert main(["check", "--config", write(tmp_path, {"authSchemeConfig": key,
                                                        "credential": string})]) == 2  # fmt: skip
    err = capsys.readouterr().err
    here = "connections[0].credentials[0]"
    assert f"{here}.authSchemeConfig.awsSigV4: only the object named by `type`" in err
    assert f"{here}.credential.data.aws: only the object named by `type`" in err
    assert SECRET not in err
