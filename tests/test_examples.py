"""Every shipped example config passes `signing-proxy check`; a broken one is reported well.

Examples read secrets from the environment and from Docker secret files; the test supplies
dummy values (canaries) for both and checks that none of them is ever printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CANARY = "CANARYex48"
SECRETS_DIR = "/run/secrets/"


def with_dummy_secrets(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, set[str]]:
    """Copy `example` with secret files redirected to tmp_path and env vars set to canaries."""
    text = example.read_text(encoding="utf-8")
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    for name in variables:
        monkeypatch.setenv(name, f"{CANARY}-{name}")
    for name in re.findall(r"\$\{file:" + re.escape(SECRETS_DIR) + r"([^}]+)\}", text):
        (tmp_path / name).write_text(f"{CANARY}-{name}\n", encoding="utf-8")
    copy = tmp_path / example.name
    copy.write_text(text.replace(SECRETS_DIR, f"{tmp_path}/"), encoding="utf-8")
    return copy, variables


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"github.yaml", "stripe.yaml", "query-key.yaml", "sidecar.yaml"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(
    example: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, variables = with_dummy_secrets(example, tmp_path, monkeypatch)
    assert main(["check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"{re.escape(str(config))}: ok, [1-9]\d* connection\(s\)\n", out)
    assert err == "" and CANARY not in out
    # And without the variables, each one is named as unset (nothing silently empty).
    for name in variables:
        monkeypatch.delenv(name)
    expected = 2 if variables else 0
    assert main(["check", "--config", str(config)]) == expected
    err = capsys.readouterr().err
    assert {f"environment variable {name} is not set" for name in variables} == set(
        re.findall(r"environment variable \w+ is not set", err)
    )


def test_compose_sidecar_matches_the_image_contract() -> None:
    compose = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())
    proxy = compose["services"]["signing-proxy"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert mounted["/etc/signing-proxy/proxy.yaml"] == "./sidecar.yaml"
    assert set(proxy["secrets"]) == set(compose["secrets"])
    sidecar = (ROOT / "examples" / "sidecar.yaml").read_text()
    for secret in compose["secrets"]:
        assert f"${{file:{SECRETS_DIR}{secret}}}" in sidecar
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "SIGNING_PROXY_CONFIG=/etc/signing-proxy/proxy.yaml" in dockerfile
    assert "SIGNING_PROXY_LISTEN=0.0.0.0:8080" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile


def test_broken_example_is_reported_with_field_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", CANARY)
    monkeypatch.setenv("OPENWEATHER_API_KEY", CANARY)
    broken = ROOT / "tests" / "data" / "broken-example.yaml"
    assert main(["check", "--config", str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "connections[1].credentials[0].authSchemeConfig.apiKey.in: "
        "Input should be 'header', 'query' or 'cookie'",
        "connections[1].credentials[0].expiresAt: unknown key",
    ]
    # Once the shapes are right, the scheme/credential mismatch is reported at credential.type.
    text = broken.read_text(encoding="utf-8")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(
        text.replace("in: body", "in: query").replace("        expiresAt: never\n", ""),
        encoding="utf-8",
    )
    assert main(["check", "--config", str(fixed)]) == 2
    out, second = capsys.readouterr()
    assert second.splitlines() == [
        "connections[0].credentials[0].credential.type: "
        "scheme 'bearer' needs a credential of type 'string'"
    ]
    assert CANARY not in err + second
