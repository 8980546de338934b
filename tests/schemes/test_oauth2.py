"""`oauth2` scheme: token requests and responses against RFC 6749's examples; the flow by hand."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl

import pytest

from proxy.config import models as m
from proxy.messages import OutboundRequest, Refresh, Send, TokenSet, UpstreamResponse
from proxy.schemes import SchemeConfigError, build_scheme
from proxy.schemes.base import SigningContext
from proxy.schemes.oauth2 import (
    OAuth2Scheme,
    OAuth2Settings,
    TokenEndpointError,
    authorization_code_params,
    basic_client_auth,
    build_token_request,
    client_credentials_params,
    parse_expires_at,
    parse_token_response,
    password_params,
    refresh_params,
)

# RFC 6749 §2.3.1 / §4.1.3: client "s6BhdRkqt3" with password "gX1fBat3bV" sends
# "Authorization: Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW".
RFC_CLIENT = ("s6BhdRkqt3", "gX1fBat3bV")
RFC_BASIC = "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"
URL = "https://server.example.com/token"


def form_of(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


def test_basic_client_auth_rfc_6749_example() -> None:
    assert basic_client_auth(*RFC_CLIENT) == RFC_BASIC


def test_basic_client_auth_form_encodes_first() -> None:
    # §2.3.1: id and secret are application/x-www-form-urlencoded before Basic; ":" → "%3A".
    header = basic_client_auth("id:1", "p w&")
    assert base64.b64decode(header[6:]) == b"id%3A1:p+w%26"


def test_authorization_code_request_rfc_6749_4_1_3() -> None:
    # §4.1.3: grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA
    #         &redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb
    params = authorization_code_params("SplxlOBeZQQYbYS6WxSbIA", "https://client.example.com/cb")
    req = build_token_request(
        URL, params, client_id=RFC_CLIENT[0], client_secret=RFC_CLIENT[1], client_auth="basic"
    )
    expected = (
        "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA"
        "&redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb"
    )
    assert form_of(req.body()) == parse_qsl(expected)
    assert ("Authorization", RFC_BASIC) in req.headers
    assert ("Content-Type", "application/x-www-form-urlencoded") in req.headers


def test_pkce_verifier_goes_into_the_code_request() -> None:
    # RFC 7636 §4.5; verifier from RFC 7636 Appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    params = authorization_code_params("c", "https://client.example.com/cb", verifier)
    assert ("code_verifier", verifier) in params


def test_refresh_request_rfc_6749_6() -> None:
    # §6: grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA
    params = refresh_params(TokenSet("x", refresh_token="tGzv3JOkF0XG5Qx2TlKWIA"))
    req = build_token_request(
        URL, params, client_id=RFC_CLIENT[0], client_secret=RFC_CLIENT[1], client_auth="basic"
    )
    assert form_of(req.body()) == parse_qsl(
        "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA"
    )


def test_password_request_rfc_6749_4_3_2() -> None:
    # §4.3.2: grant_type=password&username=johndoe&password=A3ddj3w
    req = build_token_request(
        URL,
        password_params("johndoe", "A3ddj3w", None),
        client_id=RFC_CLIENT[0],
        client_secret=RFC_CLIENT[1],
        client_auth="basic",
    )
    assert form_of(req.body()) == parse_qsl("grant_type=password&username=johndoe&password=A3ddj3w")


def test_client_credentials_request_rfc_6749_4_4_2_with_form_auth_and_extras() -> None:
    # §4.4.2: grant_type=client_credentials; §2.3.1 form style puts the pair into the body.
    req = build_token_request(
        URL,
        client_credentials_params("read write"),
        client_id=RFC_CLIENT[0],
        client_secret=RFC_CLIENT[1],
        client_auth="form",
        additional={"audience": "https://api.example.com"},
    )
    assert form_of(req.body()) == [
        ("grant_type", "client_credentials"),
        ("scope", "read write"),
        ("audience", "https://api.example.com"),
        ("client_id", RFC_CLIENT[0]),
        ("client_secret", RFC_CLIENT[1]),
    ]
    assert not any(name == "Authorization" for name, _ in req.headers)
    assert RFC_CLIENT[1] not in repr(req)


def test_public_client_sends_client_id_only() -> None:
    req = build_token_request(
        URL, client_credentials_params(None), client_id="pub", client_secret="", client_auth="basic"
    )
    assert form_of(req.body())[-1] == ("client_id", "pub")
    assert not any(name == "Authorization" for name, _ in req.headers)


def test_parse_success_rfc_6749_5_1() -> None:
    body = b"""{
       "access_token":"2YotnFZFEjr1zCsicMWpAA",
       "token_type":"example",
       "expires_in":3600,
       "refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA",
       "example_parameter":"example_value"
     }"""
    token = parse_token_response(200, body, now=1000.0, requested_scope="read")
    assert token.access_token == "2YotnFZFEjr1zCsicMWpAA"
    assert token.token_type == "example"
    assert token.refresh_token == "tGzv3JOkF0XG5Qx2TlKWIA"
    assert token.expires_at == 1000.0 + 3600
    assert token.scope == "read"  # §5.1: omitted scope = the requested one


def test_parse_keeps_old_refresh_token_and_normalises_bearer() -> None:
    previous = TokenSet("old", refresh_token="keep-me")
    body = b'{"access_token":"new","token_type":"bearer","expires_in":"60","scope":"a b"}'
    token = parse_token_response(200, body, now=0.0, previous=previous)
    assert (token.refresh_token, token.token_type, token.expires_at, token.scope) == (
        "keep-me",
        "Bearer",
        60.0,
        "a b",
    )


@pytest.mark.parametrize("expires_in", ["-5", "soon", True, None, float("inf")])
def test_parse_unusable_expiry_is_unknown(expires_in: Any) -> None:
    import json

    body = json.dumps({"access_token": "a", "token_type": "Bearer", "expires_in": expires_in})
    assert parse_token_response(200, body.encode(), now=0.0).expires_at is None


def test_parse_error_rfc_6749_5_2_drops_the_description() -> None:
    # §5.2 example: {"error":"invalid_request"}; the description may echo a secret.
    body = b'{"error":"invalid_grant","error_description":"bad refresh token canary-rt-1"}'
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(400, body, now=0.0)
    assert caught.value.error == "invalid_grant" and caught.value.status == 400
    assert "canary-rt-1" not in repr(caught.value) and "canary-rt-1" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (503, b"<html>down</html>", "token_endpoint_status_503"),
        (500, b'{"error":"temporarily_unavailable"}', "temporarily_unavailable"),
        (400, b'{"error":"has \\"quotes\\" and \\\\"}', "token_endpoint_status_400"),
        (400, b'{"error":"' + b"x" * 100 + b'"}', "token_endpoint_status_400"),
        (200, b"access_token=abc", "not_json"),
        (200, b"[1]", "not_json"),
        (200, b'{"token_type":"Bearer"}', "missing_access_token"),
        (200, b'{"access_token":""}', "missing_access_token"),
        (200, b'{"error":"invalid_scope"}', "invalid_scope"),
    ],
)
def test_parse_failures(status: int, body: bytes, code: str) -> None:
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(status, body, now=0.0)
    assert caught.value.error == code


def test_rejects_client_on_invalid_client_or_401() -> None:
    assert TokenEndpointError("invalid_client", 400).rejects_client
    assert TokenEndpointError("token_endpoint_status_401", 401).rejects_client
    assert not TokenEndpointError("invalid_grant", 400).rejects_client


def test_parse_expires_at() -> None:
    assert parse_expires_at("1970-01-01T00:01:00Z") == 60.0
    assert parse_expires_at("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError):
        parse_expires_at("1970-01-01T00:00:00")


# --- the flow, stepped by hand (in the style of httpx's own test_auth.py) ---

TOKEN = TokenSet("access-1", refresh_token="refresh-1")
FRESH = TokenSet("access-2", "MAC", refresh_token="refresh-2")


def scheme(grant: str = "authorizationCode") -> OAuth2Scheme:
    return OAuth2Scheme("cred", OAuth2Settings(grant, URL, "client", "canary-client-secret"))  # type: ignore[arg-type]


def request(body: bool = True) -> OutboundRequest:
    from proxy.dataplane.body import BufferedBody

    return OutboundRequest("POST", "https://api", "/x", "", (), BufferedBody() if body else None)


def test_flow_success_sends_once() -> None:
    flow = scheme().auth_flow(request(), SigningContext(token=TOKEN))
    sent = next(flow)
    assert isinstance(sent, Send) and sent.request.header("authorization") == "Bearer access-1"
    with pytest.raises(StopIteration):
        flow.send(UpstreamResponse(200))


def test_flow_401_refreshes_and_retries_once() -> None:
    flow = scheme().auth_flow(request(), SigningContext(token=TOKEN))
    next(flow)
    assert flow.send(UpstreamResponse(401)) == Refresh(stale=TOKEN)
    retry = flow.send(FRESH)
    assert isinstance(retry, Send) and retry.request.header("authorization") == "MAC access-2"
    with pytest.raises(StopIteration):
        flow.send(UpstreamResponse(401))  # a second 401 goes to the client


@pytest.mark.parametrize(
    ("body", "token", "grant"),
    [
        (False, TOKEN, "authorizationCode"),  # streamed body: cannot be sent again
        (True, TokenSet("access-1"), "authorizationCode"),  # nothing to refresh with
    ],
)
def test_flow_401_passes_through(body: bool, token: TokenSet, grant: str) -> None:
    flow = scheme(grant).auth_flow(request(body), SigningContext(token=token))
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(UpstreamResponse(401))


def test_client_credentials_refresh_needs_no_refresh_token() -> None:
    assert scheme("clientCredentials").can_refresh(TokenSet("a"))
    assert not scheme("authorizationCode").can_refresh(TokenSet("a"))


def test_repr_and_describe_hold_no_secret() -> None:
    s = scheme()
    assert "canary-client-secret" not in repr(s)
    assert "canary-client-secret" not in str(s.describe())
    assert s.describe()["grant"] == "authorizationCode"


# --- building from config ---


def entry(oauth2: dict[str, Any], credential: dict[str, Any]) -> m.ConnectionCredential:
    return m.ConnectionCredential.model_validate(
        {"authSchemeConfig": {"type": "oauth2", "oauth2": oauth2}, "credential": credential}
    )


CC_GRANT = {"type": "clientCredentials"}


def cc_credential(**extra: Any) -> dict[str, Any]:
    client = {"clientId": "cid", "clientSecret": "sec", **extra}
    return {"type": "oauth2-client", "data": {"oauth2Client": client}}


def test_client_credential_token_url_and_scopes_win() -> None:
    built = build_scheme(
        entry(
            {"tokenUrl": URL, "defaultScopes": ["a"], "grant": CC_GRANT},
            cc_credential(tokenUrl="https://other.example/token", scopes=["b", "c"]),
        ),
        "id",
    )
    assert isinstance(built, OAuth2Scheme)
    assert built.settings.token_url == "https://other.example/token"
    assert built.settings.scope == "b c"


@pytest.mark.parametrize(
    ("oauth2", "field"),
    [
        ({"grant": CC_GRANT}, "authSchemeConfig.oauth2.tokenUrl"),
        ({"tokenUrl": "ftp://x/token", "grant": CC_GRANT}, "authSchemeConfig.oauth2.tokenUrl"),
        (
            {"tokenUrl": URL, "grant": CC_GRANT, "additionalTokenParams": {"grant_type": "x"}},
            "authSchemeConfig.oauth2.additionalTokenParams.grant_type",
        ),
    ],
)
def test_config_problems_name_the_field(oauth2: dict[str, Any], field: str) -> None:
    with pytest.raises(SchemeConfigError) as caught:
        build_scheme(entry(oauth2, cc_credential()), "id")
    assert caught.value.field == field


def test_token_credential_seed_and_bad_expiry() -> None:
    grant = {"type": "authorizationCode", "authorizationCode": {"clientId": "c"}}
    token = {"accessToken": "a", "refreshToken": "r", "expiresAt": "2030-01-01T00:00:00Z"}
    built = build_scheme(
        entry(
            {"tokenUrl": URL, "grant": grant},
            {"type": "oauth2-token", "data": {"oauth2Token": token}},
        ),
        "id",
    )
    assert isinstance(built, OAuth2Scheme) and built.settings.seed_token is not None
    assert built.settings.seed_token.expires_at == parse_expires_at("2030-01-01T00:00:00Z")
    bad = {**token, "expiresAt": "tomorrow"}
    with pytest.raises(SchemeConfigError) as caught:
        build_scheme(
            entry(
                {"tokenUrl": URL, "grant": grant},
                {"type": "oauth2-token", "data": {"oauth2Token": bad}},
            ),
            "id",
        )
    assert caught.value.field == "credential.data.oauth2Token.expiresAt"
