"""`${VAR}`, `${VAR:-default}` and `${file:/path}` in any string of proxy.yaml
(docs/configuration.md).

Interpolation runs on the parsed YAML tree before validation, so every problem can name the
field it sits in. Messages name the variable or file, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FieldError, loc_to_path
from .advice import shown_loc

# `$${` escapes a literal `${`.
_PATTERN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_EXPRESSION = (
    "bad interpolation: use ${NAME}, ${NAME:-default} or ${file:PATH} (write $${ for a literal ${)"
)


# What `check --offline` puts where an expression stands: a plain word, which is also a valid
# host name, so `https://${HOST}/api` still parses as a URL.
PLACEHOLDER = "offline-placeholder"


@dataclass
class Expansions:
    """What interpolation did, for the checks that follow it.

    `offline`: resolve nothing (no environment, no secret file): every expression becomes
    `PLACEHOLDER` and its field is listed in `paths`, so a problem there can be told from a
    problem of the file's structure. `empty`: fields whose whole value was one expression that
    resolved to an empty string, with the variable or file it came from (never the value).
    """

    offline: bool = False
    paths: list[str] = field(default_factory=list)
    empty: list[tuple[str, str]] = field(default_factory=list)

    def covers(self, path: str) -> bool:
        """True when `path` is, or lies inside, a field that held an expression."""
        return any(
            path == held or path.startswith(held) and path[len(held)] in ".[" for held in self.paths
        )


def interpolate(
    tree: Any,
    env: Mapping[str, str],
    problems: list[FieldError],
    loc: tuple[int | str, ...] = (),
    *,
    record: Expansions | None = None,
) -> Any:
    """Return `tree` with every string interpolated; problems are appended with their path."""
    if isinstance(tree, str):
        return _expand(tree, env, problems, loc_to_path(shown_loc(loc)), record or Expansions())
    if isinstance(tree, dict):
        return {
            k: interpolate(v, env, problems, (*loc, str(k)), record=record) for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [interpolate(v, env, problems, (*loc, i), record=record) for i, v in enumerate(tree)]
    return tree


def _expand(
    text: str, env: Mapping[str, str], problems: list[FieldError], path: str, record: Expansions
) -> str:
    sources: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        expr = match.group(1)
        if expr.startswith("file:"):
            sources.append(f"file {expr[5:]}")
            if record.offline:
                return PLACEHOLDER
            return _read_secret_file(expr[5:], problems, path)
        name, has_default, default = expr.partition(":-")
        if not _NAME.fullmatch(name):
            # Not echoed: text that only looks like `${...}` may be part of a secret.
            problems.append(FieldError(path, _BAD_EXPRESSION))
            return ""
        sources.append(f"variable {name}")
        if record.offline:
            return PLACEHOLDER
        if name in env:
            return env[name]
        if has_default:
            return default
        problems.append(FieldError(path, f"environment variable {name} is not set"))
        return ""

    if "$" not in text:
        return text
    known = len(problems)
    result = _PATTERN.sub(replace, text)
    if sources:
        record.paths.append(path)
        if result == "" and len(sources) == 1 and len(problems) == known:
            record.empty.append((path, sources[0]))
    return result


def _read_secret_file(name: str, problems: list[FieldError], path: str) -> str:
    try:
        content = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        problems.append(FieldError(path, f"cannot read secret file {name}: {reason}"))
        return ""
    # Docker/Kubernetes secret files usually end in one newline that is not part of the secret.
    return content[:-1] if content.endswith("\n") else content
