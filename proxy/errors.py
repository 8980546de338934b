"""Every error the proxy itself produces, and how it is rendered (docs/errors.md).

One flat family, as h11 and httpx do it: `ProxyError` carries everything needed to render it —
the stable snake_case `code`, the HTTP `status`, and the RFC 9209 `Proxy-Status` error type that
tells a client the proxy (not the upstream) answered. Subclasses only fix the defaults.

Messages are written by this code, never copied from user input: pydantic's `input` and a
provider's `error_description` may hold secrets, so neither is ever put into an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PROXY_NAME = "signing-proxy"

# RFC 9209 §2.3 error types used here.
PROXY_INTERNAL_RESPONSE = "proxy_internal_response"
PROXY_INTERNAL_ERROR = "proxy_internal_error"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, addressed as `a.b[0].c`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ProxyError(Exception):
    """An error answered by the proxy itself (never an upstream's response)."""

    status: int = 500
    proxy_status: str = PROXY_INTERNAL_ERROR

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        proxy_status: str | None = None,
        fields: Sequence[FieldError] = (),
        details: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        if proxy_status is not None:
            self.proxy_status = proxy_status
        self.fields = tuple(fields)
        self.details = details
        # Extra response headers the error needs (`WWW-Authenticate`, `Retry-After`).
        self.headers = tuple(headers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, status={self.status})"

    def to_json(self) -> dict[str, Any]:
        """The seed `Error` shape: code, message, optional fields and details."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = [{"field": f.field, "message": f.message} for f in self.fields]
        if self.details is not None:
            body["details"] = self.details
        return body

    def body_bytes(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    def proxy_status_header(self) -> str:
        """RFC 9209 `Proxy-Status` value; `details` carries the JSON code (an sf-string)."""
        detail = self.code if self.details is None else f"{self.code}: {self.details}"
        return f'{PROXY_NAME}; error={self.proxy_status}; details="{_sf_string(detail)}"'


def _sf_string(text: str) -> str:
    # RFC 8941 §3.3.3: printable ASCII only, with `"` and `\` escaped.
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return printable.replace("\\", "\\\\").replace('"', '\\"')


class InvalidRequest(ProxyError):
    status = 400
    proxy_status = PROXY_INTERNAL_RESPONSE


class NotFound(ProxyError):
    status = 404
    proxy_status = PROXY_INTERNAL_RESPONSE


class Conflict(ProxyError):
    status = 409
    proxy_status = PROXY_INTERNAL_RESPONSE


class PayloadTooLarge(ProxyError):
    status = 413
    proxy_status = PROXY_INTERNAL_RESPONSE

    def __init__(self, limit: int) -> None:
        super().__init__("payload_too_large", f"request body exceeds the limit of {limit} bytes")


class CredentialError(ProxyError):
    """A credential could not be applied (token refresh failed, re-authorisation needed)."""

    status = 502
    proxy_status = PROXY_INTERNAL_ERROR


class UpstreamUnavailable(ProxyError):
    """The upstream could not be reached; `proxy_status` names the RFC 9209 network type."""

    status = 502

    def __init__(self, reason: str, *, proxy_status: str = "destination_unavailable") -> None:
        super().__init__(
            "upstream_unavailable",
            "the upstream could not be reached",
            proxy_status=proxy_status,
            details=reason,
        )


class UpstreamTimeout(ProxyError):
    status = 504

    def __init__(self, reason: str, *, proxy_status: str = "http_response_timeout") -> None:
        super().__init__(
            "upstream_timeout",
            "the upstream did not answer in time",
            proxy_status=proxy_status,
            details=reason,
        )


class UpstreamBadResponse(ProxyError):
    """The upstream answered with a response the proxy refuses to relay (a head too large)."""

    status = 502

    def __init__(self, reason: str, *, proxy_status: str) -> None:
        super().__init__(
            "upstream_bad_response",
            "the upstream sent a response the proxy cannot relay",
            proxy_status=proxy_status,
            details=reason,
        )


# A key that reads as a name (`baseUrl`, `X-Api-Key`, `additionalParams`) may be shown. Anything
# else may be a value typed where a key belongs: YAML reads `{value:SECRET}` (no space after the
# colon) as the one key `value:SECRET`, so such a key is never printed.
_PLAIN_KEY = re.compile(r"[A-Za-z_$@][A-Za-z0-9_.-]{0,63}")
HIDDEN_KEY = "<key>"


def is_plain_key(key: str) -> bool:
    """True when `key` reads as a field name, so it can be printed without risk."""
    return _PLAIN_KEY.fullmatch(key) is not None


def loc_to_path(loc: Iterable[int | str]) -> str:
    """Render a pydantic `loc` as `a.b[0].c` (ints as indexes, strings as names).

    A part that does not read as a name is shown as `<key>` (see `is_plain_key`).
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if is_plain_key(part) else HIDDEN_KEY
            path += f".{name}" if path else name
    return path
