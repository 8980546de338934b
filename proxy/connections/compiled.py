"""A connection compiled for the request path: parsed baseUrl, built schemes, header ownership.

Everything that does not depend on the request is worked out here once, at start-up (or when the
management API creates a connection), never per request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ..config import models as m
from ..config.hosts import HostPattern, connection_hosts
from ..config.ids import with_ids
from ..schemes import Scheme, SchemeConfigError, build_scheme
from ..schemes.oauth2 import parse_expires_at
from .lean import LeanPlan, lean_plan
from .urls import BadUrl, BaseUrl, parse_base_url


def default_route(name: str) -> str:
    return "/" + name


@dataclass(frozen=True, slots=True)
class CompiledConnection:
    """One connection ready to serve: where requests go and which schemes sign them."""

    id: str
    name: str
    route: str  # normalised: starts with "/", no trailing "/" ("" for the root route)
    base: BaseUrl
    schemes: tuple[Scheme, ...]
    owned_headers: frozenset[str]  # lowercase names the proxy sets; client copies are dropped
    wants_replayable_body: bool
    rewrite_response_urls: bool
    model: m.Connection
    tls: ssl.SSLContext | None = None  # a `certificate` credential's client identity (mTLS)
    # The earliest credential `expiresAt` (unix seconds): after it requests get 502
    # credential_expired (the seed: the credential is deleted then).
    expires_at: float | None = None
    lean: LeanPlan | None = None  # set when only constant headers are added (`lean.py`)
    # The hosts whose CONNECT it serves in forward-proxy mode (`config/hosts.py`).
    hosts: tuple[HostPattern, ...] = ()

    def select(self, request: object) -> CompiledConnection:
        """A plain route serves this one connection (template routes pick per request)."""
        return self


class ConnectionProblem(ValueError):
    """A connection that cannot be compiled; `field` is relative to the connection."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def normalise_route(route: str) -> str:
    if not route.startswith("/"):
        raise ConnectionProblem("route", "must start with '/'")
    if any(ch in route for ch in "?#%\\") or "//" in route or any(c.isspace() for c in route):
        raise ConnectionProblem("route", "must be a plain path (no '?', '#', '%', '\\', '//')")
    segments = route.strip("/").split("/")
    if any(seg in (".", "..") for seg in segments):
        raise ConnectionProblem("route", "must not contain '.' or '..' segments")
    return route.rstrip("/")


def compile_connection(
    model: m.Connection,
) -> tuple[CompiledConnection | None, list[ConnectionProblem]]:
    """Compile `model`, collecting every problem (relative field paths) instead of stopping."""
    problems: list[ConnectionProblem] = []
    # Ids the input left out are made here, once: stable for the file's connections, and
    # stored with an API-created one (`config/ids.py`).
    model = with_ids(model)
    connection_id = model.id or ""
    try:
        route = normalise_route(
            model.route if model.route is not None else default_route(model.name)
        )
    except ConnectionProblem as exc:
        problems.append(exc)
        route = ""
    try:
        base = parse_base_url(model.base_url)
    except BadUrl as exc:
        problems.append(ConnectionProblem("baseUrl", str(exc)))
    schemes: list[Scheme] = []
    for index, entry in enumerate(model.credentials):
        here = f"credentials[{index}]"
        mismatch = credential_mismatch(entry)
        if mismatch:
            problems.append(ConnectionProblem(f"{here}.credential.type", mismatch))
            continue
        credential_id = entry.id or ""
        try:
            schemes.append(build_scheme(entry, credential_id, model.base_url))
        except SchemeConfigError as exc:
            problems.append(ConnectionProblem(f"{here}.{exc.field}", exc.message))
    problems += signs_last_problems(model)
    problems += mtls_problems(model)
    expires_at = _earliest_expiry(model, problems)
    if problems:
        return None, problems
    # A signature over the whole request (AWS SigV4) covers what the others added: it goes last.
    schemes.sort(key=lambda s: s.signs_last)
    owned = frozenset().union(*(s.sets_headers for s in schemes))
    takes_authorization = any(s.owns_client_authorization for s in schemes)
    if (
        any(s.authenticates for s in schemes)
        and not model.forward_client_authorization
        and not takes_authorization
    ):
        # SDKs send a dummy key in Authorization; the proxy owns authentication upstream.
        owned |= {"authorization"}
    # A header whose client value a scheme rewrites (a `secret` placeholder) must reach it.
    owned -= frozenset().union(*(s.passes_headers for s in schemes))
    return (
        CompiledConnection(
            id=connection_id,
            name=model.name,
            route=route,
            base=base,
            schemes=tuple(schemes),
            owned_headers=owned,
            wants_replayable_body=any(s.wants_replayable_body for s in schemes),
            rewrite_response_urls=model.rewrite_response_urls,
            model=model,
            tls=_client_tls(schemes),
            expires_at=expires_at,
            lean=lean_plan(base, schemes, owned),
            hosts=connection_hosts(model.base_url, model.hosts),
        ),
        [],
    )


# Schemes whose header AWS SigV4 replaces (`Authorization`) or whose signature its own changes
# would break (it sets `X-Amz-Date`, adds query parameters, re-frames an aws-chunked body).
_CLASH_WITH_SIGV4 = (
    m.BasicAuthSchemeConfig,
    m.BearerSchemeConfig,
    m.OAuth2SchemeConfig,
    m.JwtBearerSchemeConfig,
    m.OAuth1SchemeConfig,
    m.HmacSchemeConfig,
    m.HttpSignatureSchemeConfig,
)


def signs_last_problems(model: m.Connection) -> list[ConnectionProblem]:
    """Two signatures over the whole request cannot both come last, and nothing aws-sigv4 would
    overwrite or invalidate may sign beside it."""
    configs = [entry.auth_scheme_config for entry in model.credentials]
    if not any(isinstance(config, m.AwsSigV4SchemeConfig) for config in configs):
        return []
    seen = 0
    for index, config in enumerate(configs):
        field = f"credentials[{index}].authSchemeConfig.type"
        if isinstance(config, m.AwsSigV4SchemeConfig):
            seen += 1
            if seen > 1:
                return [
                    ConnectionProblem(
                        field,
                        "a connection takes one aws-sigv4 credential (each signs the whole "
                        "request, so only one can sign it last)",
                    )
                ]
        elif isinstance(config, _CLASH_WITH_SIGV4):
            return [
                ConnectionProblem(
                    field,
                    f"{config.type} cannot sign beside aws-sigv4: AWS Signature V4 replaces "
                    "Authorization and signs last, so this credential would be overwritten or "
                    "its signature broken",
                )
            ]
    return []


def _earliest_expiry(model: m.Connection, problems: list[ConnectionProblem]) -> float | None:
    earliest: float | None = None
    for index, entry in enumerate(model.credentials):
        text = entry.credential.expires_at
        if text is None:
            continue
        try:
            moment = parse_expires_at(text)
        except ValueError:
            problems.append(
                ConnectionProblem(
                    f"credentials[{index}].credential.expiresAt",
                    "must be an RFC 3339 time with an offset (2030-01-31T12:00:00Z)",
                )
            )
            continue
        earliest = moment if earliest is None else min(earliest, moment)
    return earliest


def _client_tls(schemes: list[Scheme]) -> ssl.SSLContext | None:
    for scheme in schemes:
        context = getattr(scheme, "ssl_context", None)
        if isinstance(context, ssl.SSLContext):
            return context
    return None


def mtls_problems(model: m.Connection) -> list[ConnectionProblem]:
    """mTLS towards a token endpoint borrows a `certificate` credential of the same connection:
    the one `mtlsCredentialId` names, else the connection's own. Caught here, at `check`,
    rather than as a failed token request at run time."""
    certificates = {
        ident
        for entry in model.credentials
        if isinstance(entry.auth_scheme_config, m.CertificateSchemeConfig)
        for ident in (entry.id, entry.credential.id)
        if ident
    }
    has_certificate = any(
        isinstance(e.auth_scheme_config, m.CertificateSchemeConfig) for e in model.credentials
    )
    problems: list[ConnectionProblem] = []
    for index, entry in enumerate(model.credentials):
        for field, enabled, named in _mtls_settings(entry):
            here = f"credentials[{index}].{field}"
            if named and named not in certificates:
                problems.append(
                    ConnectionProblem(
                        f"{here}CredentialId",
                        "names no 'certificate' credential of this connection",
                    )
                )
            elif enabled and not has_certificate:
                problems.append(
                    ConnectionProblem(
                        f"{here}Enabled", "needs a 'certificate' credential on the same connection"
                    )
                )
    return problems


def _mtls_settings(entry: m.ConnectionCredential) -> list[tuple[str, bool, str | None]]:
    """(field prefix, enabled, named certificate id) of each mTLS setting of a credential."""
    found: list[tuple[str, bool, str | None]] = []
    auth, cred = entry.auth_scheme_config, entry.credential
    if isinstance(auth, m.OAuth2SchemeConfig):
        params = auth.oauth2
        found.append(
            ("authSchemeConfig.oauth2.mtls", params.mtls_enabled, params.mtls_credential_id)
        )
    if isinstance(cred, m.OAuth2ClientCredential):
        client = cred.data.oauth2_client
        found.append(
            (
                "credential.data.oauth2Client.mTLS",
                bool(client.mtls_enabled),
                client.mtls_credential_id,
            )
        )
    return found


def credential_mismatch(entry: m.ConnectionCredential) -> str | None:
    """docs/configuration.md compatibility of `authSchemeConfig.type` and `credential.type`, or
    None if fine."""
    auth, cred = entry.auth_scheme_config, entry.credential
    if isinstance(auth, m.OAuth2SchemeConfig):
        wanted = m.OAUTH2_GRANT_CREDENTIALS[auth.oauth2.grant.type]
        if cred.type not in wanted:
            names = " or ".join(repr(t) for t in sorted(wanted))
            return f"grant {auth.oauth2.grant.type!r} needs a credential of type {names}"
        return None
    allowed = m.COMPATIBLE_CREDENTIALS[auth.type]
    if cred.type not in allowed:
        names = " or ".join(repr(t) for t in sorted(allowed))
        return f"scheme {auth.type!r} needs a credential of type {names}"
    return None
