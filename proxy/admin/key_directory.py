"""The HTTP Message Signatures key directory (draft-meunier-http-message-signatures-directory):
`GET /.well-known/http-message-signatures-directory` on the admin listener.

A site that receives Web Bot Auth requests fetches this JWKS (RFC 7517 §5) to find the public key
named by a signature's `keyid`. It lists the public key of every `http-signature` credential with
`profile: web-bot-auth`, from proxy.yaml and from connections created through the API, once per
key; the private key never leaves its scheme (`directory_jwk()` builds the public half only).
The response is signed by each key, as the draft asks: `"@authority";req` (the authority the
directory was fetched from) with `tag="http-message-signatures-directory"`, one
`binding<n>` signature per key (docs/http-signature.md).

No admin token: the directory is public by design (a verifier on the internet reads it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from aiohttp import hdrs, web

from ..connections.compiled import CompiledConnection
from ..schemes.base import DEFAULT_CONTEXT
from ..schemes.http_signature import HttpSignatureScheme
from .context import ADMIN

DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
MEDIA_TYPE = "application/http-message-signatures-directory+json"
# How long a fetched directory (and its signatures) may be used.
MAX_AGE = 300


def directory_schemes(connections: Iterable[CompiledConnection]) -> list[HttpSignatureScheme]:
    """The web-bot-auth signers among `connections`, one per key (first seen wins)."""
    found: dict[str, HttpSignatureScheme] = {}
    for connection in connections:
        for scheme in connection.schemes:
            if isinstance(scheme, HttpSignatureScheme) and scheme.directory_jwk() is not None:
                found.setdefault(scheme.key_id, scheme)
    return list(found.values())


def _all_connections(request: web.Request) -> Iterator[CompiledConnection]:
    admin = request.app[ADMIN]
    yield from admin.file_connections.values()
    yield from admin.templates.connections()


async def serve_directory(request: web.Request) -> web.Response:
    schemes = directory_schemes(_all_connections(request))
    keys = [jwk for scheme in schemes if (jwk := scheme.directory_jwk()) is not None]
    headers: dict[str, str] = {
        hdrs.CONTENT_TYPE: MEDIA_TYPE,
        hdrs.CACHE_CONTROL: f"max-age={MAX_AGE}",
    }
    authority = request.headers.get(hdrs.HOST, "")
    if schemes and authority:
        signed = [
            scheme.sign_directory(index, authority, DEFAULT_CONTEXT, MAX_AGE)
            for index, scheme in enumerate(schemes)
        ]
        headers["Signature-Input"] = ", ".join(member for member, _ in signed)
        headers["Signature"] = ", ".join(signature for _, signature in signed)
    return web.Response(body=json.dumps({"keys": keys}).encode(), headers=headers)
