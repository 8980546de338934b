"""`${VAR}`, `${VAR:-default}` and `${file:/path}` in any string of proxy.yaml
(docs/configuration.md).

Interpolation runs on the parsed YAML tree before validation, so every problem can name the
field it sits in. Messages name the variable or file, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FieldError, loc_to_path

# `$${` escapes a literal `${`.
_PATTERN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_EXPRESSION = (
    "bad interpolation: use ${NAME}, ${NAME:-default} or ${file:PATH} (write $${ for a literal ${)"
)


def interpolate(
    tree: Any, env: Mapping[str, str], problems: list[FieldError], loc: tuple[int | str, ...] = ()
) -> Any:
    """Return `tree` with every string interpolated; problems are appended with their path."""
    if isinstance(tree, str):
        return _expand(tree, env, problems, loc_to_path(loc))
    if isinstance(tree, dict):
        return {k: interpolate(v, env, problems, (*loc, str(k))) for k, v in tree.items()}
    if isinstance(tree, list):
        return [interpolate(v, env, problems, (*loc, i)) for i, v in enumerate(tree)]
    return tree


def _expand(text: str, env: Mapping[str, str], problems: list[FieldError], path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        expr = match.group(1)
        if expr.startswith("file:"):
            return _read_secret_file(expr[5:], problems, path)
        name, has_default, default = expr.partition(":-")
        if not _NAME.fullmatch(name):
            # Not echoed: text that only looks like `${...}` may be part of a secret.
            problems.append(FieldError(path, _BAD_EXPRESSION))
            return ""
        if name in env:
            return env[name]
        if has_default:
            return default
        problems.append(FieldError(path, f"environment variable {name} is not set"))
        return ""

    return _PATTERN.sub(replace, text) if "$" in text else text


def _read_secret_file(name: str, problems: list[FieldError], path: str) -> str:
    try:
        content = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        problems.append(FieldError(path, f"cannot read secret file {name}: {reason}"))
        return ""
    # Docker/Kubernetes secret files usually end in one newline that is not part of the secret.
    return content[:-1] if content.endswith("\n") else content
