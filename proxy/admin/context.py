"""What the management API handlers share: the runtime, the live template routes, the store.

The admin app and the data-plane app of one process hold the *same* `Templates`, store and token
provider, so a connection created here serves traffic at once and a token refreshed by either
plane is the one the other sees.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..config.load import validation_problems
from ..connections.compiled import CompiledConnection
from ..connections.runtime import Runtime
from ..connections.templates import Templates
from ..errors import FieldError, InvalidRequest, NotFound, ProxyError
from ..store import Store
from ..tokens.manager import TokenManager

ModelT = TypeVar("ModelT", bound=BaseModel)

CALLBACK_PATH = "/connections/oauth2/callback"


class ValidationFailed(InvalidRequest):
    """400 `validation_failed` with the field paths of every problem (docs/errors.md)."""

    def __init__(self, message: str, fields: list[FieldError] | tuple[FieldError, ...] = ()):
        super().__init__("validation_failed", message, fields=fields)


@dataclass(frozen=True, slots=True, eq=False)
class Admin:
    """The management API's view of the process."""

    runtime: Runtime
    templates: Templates
    store: Store
    tokens: TokenManager
    clock: Callable[[], float] = time.time
    file_connections: Mapping[str, CompiledConnection] = field(default_factory=dict)
    # When proxy.yaml was read: the createdAt of its connections that give none.
    loaded_at: float = field(default_factory=time.time)

    @property
    def organisation_id(self) -> str:
        return self.runtime.config.organisation_id

    @property
    def redirect_uri(self) -> str:
        """`admin.publicUrl` (default `http://` + `admin.listen`) + the callback path."""
        return self.runtime.oauth2_redirect_uri

    def check_organisation(self, request: web.Request) -> None:
        """A proxy serves one organisation: any other id in the path is 404 (docs/admin-api.md)."""
        if request.match_info.get("organisation_id") != self.organisation_id:
            raise NotFound("not_found", "no such organisation")

    def find(self, connection_id: str) -> CompiledConnection | None:
        """A connection from the file or created through the API, by id."""
        found = self.file_connections.get(connection_id)
        return found if found is not None else self.templates.connection(connection_id)

    def all_connections(self) -> list[CompiledConnection]:
        return [*self.file_connections.values(), *self.templates.connections()]


ADMIN = web.AppKey("admin", Admin)


# No body of this API nests deeper than about ten levels; the limit keeps a hostile body far from
# the interpreter's recursion limit in the JSON decoder and in validation.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


class UnsupportedMediaType(ProxyError):
    status = 415
    proxy_status = "proxy_internal_response"

    def __init__(self) -> None:
        super().__init__(
            "unsupported_media_type",
            "the body must be JSON, sent as Content-Type: application/json",
        )


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (strings skipped), without parsing it."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Parse and validate a JSON body; malformed JSON or a bad field is 400 with its path.

    Only `application/json` is read: a cross-site form post can send `text/plain` or a form
    without a preflight, never `application/json`, so a token-less loopback admin listener
    cannot be driven from a web page.
    """
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    raw = await request.read()
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ValidationFailed(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        tree: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("validation_failed", "the body is not valid JSON") from None
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ValidationFailed("the body is invalid", validation_problems(exc)) from None


def json_response(body: Any, status: int = 200) -> web.Response:
    # No caching anywhere: some responses carry secrets (include_secrets), none are static.
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


__all__ = [
    "ADMIN",
    "Admin",
    "CALLBACK_PATH",
    "ProxyError",
    "ValidationFailed",
    "json_response",
    "read_body",
]
