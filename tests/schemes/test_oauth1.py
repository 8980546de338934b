"""`oauth1`: RFC 5849's own examples reproduce their published base string and signature.

Vectors (RFC 5849, https://www.rfc-editor.org/rfc/rfc5849):
- §1.2: the photos GET, HMAC-SHA1, consumer secret `kd94hf93k423kf44`, token secret
  `pfkkdhi9sl3r4s00`, nonce `chapoH`, timestamp `137131202` → `MdpQcU8iPSUjWoN/UDMsK2sui9I=`.
- §3.4.1.1: the POST to `/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b` with body `c2&a3=2+q`
  → the published signature base string; §3.4.1.3.2 → its normalised parameter string.
The independent check against oauthlib's verifier is in
`tests/dataplane/test_signing_integration.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from typing import Any

import pytest

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.dataplane.body import BufferedBody
from proxy.messages import OutboundRequest
from proxy.schemes.base import SigningContext
from proxy.schemes.oauth1 import (
    OAuth1Scheme,
    base_string_uri,
    form_params,
    hmac_signature,
    normalize_parameters,
    signature_base_string,
)

RFC_3411_PROTOCOL = [
    ("oauth_consumer_key", "9djdj82h48djs9d2"),
    ("oauth_token", "kkk9d7dh3k39sjv7"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "137131201"),
    ("oauth_nonce", "7d8f3e4a"),
]
RFC_3411_BASE_STRING = (
    "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
    "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
    "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m"
    "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
    "9d7dh3k39sjv7"
)
RFC_34132_NORMALIZED = (
    "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj"
    "dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1"
    "&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)


def rfc_3411_request() -> OutboundRequest:
    return OutboundRequest(
        "POST",
        "http://example.com",
        "/request",
        "b5=%3D%253D&a3=a&c%40=&a2=r%20b",
        FORM,
        BufferedBody(b"c2&a3=2+q"),
    )


def scheme(method: str = "sha1", **kw: Any) -> OAuth1Scheme:
    params: dict[str, Any] = {
        "consumer_key": "9djdj82h48djs9d2",
        "consumer_secret": "j49sk3j29djd",
        "token": "kkk9d7dh3k39sjv7",
        "token_secret": "dh893hdasih9",
        "signature_method": method,
    }
    params.update(kw)
    return OAuth1Scheme("cred", **params)


def test_rfc_3_4_1_1_base_string() -> None:
    request = rfc_3411_request()
    assert scheme().base_string(request, RFC_3411_PROTOCOL) == RFC_3411_BASE_STRING


def test_rfc_3_4_1_3_2_normalized_parameters() -> None:
    params = RFC_3411_PROTOCOL + form_params(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b")
    params += form_params(b"c2&a3=2+q")
    assert normalize_parameters(params) == RFC_34132_NORMALIZED


def test_rfc_1_2_signature() -> None:
    protocol: list[tuple[bytes | str, bytes | str]] = [
        ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
        ("oauth_token", "nnch734d00sl2jdk"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131202"),
        ("oauth_nonce", "chapoH"),
    ]
    query = form_params(b"file=vacation.jpg&size=original")
    base = signature_base_string(
        "GET",
        base_string_uri("http://photos.example.net", "/photos"),
        normalize_parameters([*protocol, *query]),
    )
    signature = hmac_signature(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00", "sha1")
    assert signature == "MdpQcU8iPSUjWoN/UDMsK2sui9I="


def test_rfc_3_4_1_2_base_string_uri() -> None:
    # §3.4.1.2 examples (the origin arrives with its default port already dropped by
    # `BaseUrl.origin`): scheme and host lowercase, path as sent, non-default port kept.
    assert base_string_uri("HTTP://EXAMPLE.COM", "/r%20v/X") == "http://example.com/r%20v/X"
    assert base_string_uri("https://www.example.net:8080", "/") == "https://www.example.net:8080/"


def fixed(nonce: str = "n0nce", now: float = 1_700_000_000.9) -> SigningContext:
    return SigningContext(now=lambda: now, nonce=lambda: nonce)


def parse_header(value: str) -> dict[str, str]:
    assert value.startswith("OAuth ")
    pairs = [part.strip().split("=", 1) for part in value[len("OAuth ") :].split(",")]
    return {name: quoted.strip('"') for name, quoted in pairs}


@pytest.mark.parametrize(("method", "digest", "name"), [
    ("sha1", hashlib.sha1, "HMAC-SHA1"), ("sha256", hashlib.sha256, "HMAC-SHA256"),
])  # fmt: skip
def test_header_carries_signature_over_the_request(method: str, digest: Any, name: str) -> None:
    signer = scheme(method)
    request = rfc_3411_request()
    header = request.patched(signer.sign(request, fixed())).header("Authorization")
    assert header is not None
    params = parse_header(header)
    assert params["oauth_signature_method"] == name
    assert params["oauth_nonce"] == "n0nce" and params["oauth_timestamp"] == "1700000000"
    assert params["oauth_version"] == "1.0"
    protocol = [(k, v) for k, v in params.items() if k != "oauth_signature"]
    base = signer.base_string(request, protocol)
    # Key and MAC built here by hand: RFC 5849 §3.4.2, key = secret & token secret.
    mac = hmac.new(b"j49sk3j29djd&dh893hdasih9", base.encode(), digest).digest()
    assert params["oauth_signature"] == base64.b64encode(mac).decode().replace("+", "%2B").replace(
        "/", "%2F"
    ).replace("=", "%3D")


def test_realm_in_header_but_not_signed_and_other_params_signed() -> None:
    signer = scheme(additional_params=[("realm", "1234567_SB1"), ("xoauth_app", "a b")])
    request = OutboundRequest("GET", "https://x.example", "/r", "", ())
    header = signer.sign(request, fixed()).headers["Authorization"]
    assert header.startswith('OAuth realm="1234567_SB1", oauth_consumer_key=')
    assert 'xoauth_app="a%20b"' in header
    [(_, base)] = signer.signed_parts(request, fixed())
    assert b"realm" not in base and b"xoauth_app%3Da%2520b" in base


def test_nonce_and_timestamp_are_fresh_per_request() -> None:
    counter = itertools.count()
    ctx = SigningContext(now=lambda: 1000.0 + next(counter), nonce=lambda: f"n{next(counter)}")
    signer = scheme()
    request = OutboundRequest("GET", "https://x.example", "/r", "", ())
    first = parse_header(signer.sign(request, ctx).headers["Authorization"])
    second = parse_header(signer.sign(request, ctx).headers["Authorization"])
    assert first["oauth_nonce"] != second["oauth_nonce"]
    assert first["oauth_signature"] != second["oauth_signature"]
    default = SigningContext()
    nonces = {parse_header(signer.sign(request, default).headers["Authorization"])["oauth_nonce"]
              for _ in range(5)}  # fmt: skip
    assert len(nonces) == 5


@pytest.mark.parametrize(("content_type", "reads"), [
    ("application/x-www-form-urlencoded", True),
    ("Application/X-WWW-Form-Urlencoded; charset=utf-8", True),
    ("application/json", False),
    ("multipart/form-data; boundary=x", False),
    (None, False),
])  # fmt: skip
def test_body_is_read_only_for_form_requests(content_type: str | None, reads: bool) -> None:
    headers = (("Content-Type", content_type),) if content_type else ()
    request = OutboundRequest("POST", "https://x.example", "/r", "", headers)
    assert scheme().reads_body(request) is reads


def test_json_body_is_not_signed() -> None:
    signer = scheme()
    bare = OutboundRequest("POST", "https://x.example", "/r", "a=1", (("Content-Type", "a/json"),))
    with_body = OutboundRequest(
        "POST", "https://x.example", "/r", "a=1", (("Content-Type", "a/json"),),
        BufferedBody(b'{"b": 2}'),
    )  # fmt: skip
    assert signer.signed_parts(bare, fixed()) == signer.signed_parts(with_body, fixed())


def test_form_bytes_that_are_not_utf8_are_signed_as_sent() -> None:
    params = form_params(b"n=%FF%FE&m=a+b")
    assert normalize_parameters(params) == "m=a%20b&n=%FF%FE"


def test_two_legged_request_leaves_out_oauth_token() -> None:
    signer = scheme(token="", token_secret="")
    request = OutboundRequest("GET", "https://x.example", "/r", "", ())
    assert "oauth_token" not in signer.sign(request, fixed()).headers["Authorization"]


def oauth1_tree(additional: list[dict[str, str]], **config: Any) -> dict[str, Any]:
    return {
        "connections": [
            {
                "name": "ns",
                "baseUrl": "https://ns.example.com",
                "credentials": [
                    {
                        "authSchemeConfig": {
                            "type": "oauth1",
                            "oauth1": {
                                "consumerKey": "ck",
                                "consumerSecret": "canary-consumer-secret",
                                "signatureMethod": "sha256",
                                "tokenAuth": True,
                                **config,
                            },
                        },
                        "credential": {
                            "type": "oauth1-token",
                            "data": {
                                "oauth1Token": {
                                    "token": "tk",
                                    "tokenSecret": "canary-token-secret",
                                    "additionalParams": additional,
                                }
                            },
                        },
                    }
                ],
            }
        ]
    }


def test_config_builds_and_refuses_proxy_owned_params() -> None:
    [connection] = build_runtime(oauth1_tree([{"name": "realm", "value": "R"}]), {}).connections
    assert connection.schemes[0].describe()["realm"] == "R"
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(oauth1_tree([{"name": "oauth_nonce", "value": "x"}]), {})
    [problem] = caught.value.problems
    assert problem.field == (
        "connections[0].credentials[0].credential.data.oauth1Token.additionalParams[0].name"
    )


def test_three_legged_config_needs_endpoints() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(oauth1_tree([], tokenAuth=False), {})
    [problem] = caught.value.problems
    assert problem.field.endswith("authSchemeConfig.oauth1.tempCredentialEndpoint")
    assert "canary" not in str(problem)
