"""The `secret` credential of proxy.yaml as a dict, for tests of placeholders."""

from __future__ import annotations

from typing import Any

# proxy.yaml with one `secret` connection `ai` (Authorization), its secret from ${AI_KEY}.
CONFIG = """
connections:
  - name: ai
    baseUrl: {base}
    credentials:
      - authSchemeConfig:
          type: secret
          secret: {{placeholder: {placeholder}, headers: [Authorization]}}
        credential: {{type: string, data: {{string: {{value: "${{AI_KEY}}"}}}}}}
"""


def secret(placeholder: str, headers: list[str], value: str) -> dict[str, Any]:
    """A `secret` credential: `placeholder` in `headers` is swapped for `value`."""
    return {
        "authSchemeConfig": {
            "type": "secret",
            "secret": {"placeholder": placeholder, "headers": headers},
        },
        "credential": {"type": "string", "data": {"string": {"value": value}}},
    }
