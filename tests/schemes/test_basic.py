"""`basic-auth`: RFC 7617 HTTP Basic."""

from __future__ import annotations

import base64

import pytest

from proxy.messages import OutboundRequest
from proxy.schemes.base import DEFAULT_CONTEXT, SchemeConfigError
from proxy.schemes.basic import BasicAuthScheme, basic_credentials

CANARY = "CANARYbasic62"
REQUEST = OutboundRequest("GET", "https://api.stripe.com", "/v1/charges", "", ())


def authorization(username: str, password: str) -> str | None:
    scheme = BasicAuthScheme("cred", username, password)
    return REQUEST.patched(scheme.sign(REQUEST, DEFAULT_CONTEXT)).header("Authorization")


def test_rfc7617_section2_example() -> None:
    # RFC 7617 §2: user-id "Aladdin", password "open sesame" →
    # "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".
    assert authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def test_rfc7617_section2_1_utf8_example() -> None:
    # RFC 7617 §2.1: user-id "test", password "123£" with charset="UTF-8" →
    # "dGVzdDoxMjPCow==".
    assert basic_credentials("test", "123\u00a3") == "dGVzdDoxMjPCow=="


def test_empty_password_stripe_style() -> None:
    # Stripe: the secret key is the user-id and the password is empty ("sk_test_x:").
    expected = "Basic " + base64.b64encode(b"sk_test_x:").decode()
    assert authorization("sk_test_x", "") == expected


def test_password_may_contain_colons() -> None:
    # Only the user-id is split at the first colon (RFC 7617 §2), so the password may hold any.
    encoded = basic_credentials("user", "a:b:c")
    assert base64.b64decode(encoded).decode().split(":", 1) == ["user", "a:b:c"]


def test_user_id_with_a_colon_is_refused_without_echoing_it() -> None:
    with pytest.raises(SchemeConfigError) as caught:
        BasicAuthScheme("cred", f"{CANARY}:x", "pw")
    assert caught.value.field == "credential.data.basicAuth.username"
    assert CANARY not in str(caught.value) and CANARY not in repr(caught.value)


def test_flags_and_no_secret_in_repr() -> None:
    scheme = BasicAuthScheme("cred", CANARY, CANARY + "pw")
    assert scheme.sets_headers == {"authorization"}
    assert CANARY not in repr(scheme)
    assert CANARY not in str(scheme.describe())
