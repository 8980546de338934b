"""`http-signature`: RFC 9421 HTTP Message Signatures on outbound requests (docs/http-signature.md).

What is sent: `Signature-Input` and `Signature`, two RFC 8941 Dictionaries holding one member
each under `label`, and with `contentDigest` an RFC 9530 `Content-Digest` that the signature
covers. The signature base (RFC 9421 §2.5) is one line per covered component,
`"<component-id>": <value>`, then `"@signature-params": <the Signature-Input member>`, joined by
LF with no trailing newline.

Components (RFC 9421 §2.1, §2.2): the derived `@method`, `@target-uri`, `@authority`, `@scheme`,
`@request-target`, `@path`, `@query`, and header fields by lowercase name. The request is the one
earlier credentials left (a header set by an API key before this scheme can be covered), and the
values are those that go on the wire: `@authority` is the upstream's `Host`.

Algorithms (RFC 9421 §3.3): `ed25519` (§3.3.6), `ecdsa-p256-sha256` (§3.3.4, `r || s`, 64 bytes,
not DER), `rsa-pss-sha512` (§3.3.1, MGF1-SHA-512, 64-byte salt), `hmac-sha256` (§3.3.3).

`profile: web-bot-auth` (draft-meunier-web-bot-auth-architecture): Ed25519, components
`@authority` plus `signature-agent` when the request carries that header, `keyid` the RFC 7638
JWK thumbprint of the public key, `tag="web-bot-auth"`, a nonce, and `expires`. Its public keys
are what the admin listener's key directory serves (`directory_jwk()`).

Pure: the clock and the nonce come from `SigningContext`; the body (for `Content-Digest`) is
read by the driver first and fed to the hash chunk by chunk, so a spilled body is never held
whole.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..config import models as m
from ..errors import InvalidRequest
from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SchemeConfigError, SigningContext
from .hmac import decode_binary_key
from .jws import b64url
from .structured_fields import (
    InnerList,
    Item,
    serialize_dictionary,
    serialize_inner_list,
    serialize_item,
)

Algorithm = Literal["ed25519", "ecdsa-p256-sha256", "rsa-pss-sha512", "hmac-sha256"]
DigestAlgorithm = Literal["sha-256", "sha-512"]

WEB_BOT_AUTH = "web-bot-auth"
SIGNATURE_AGENT = "signature-agent"
# RFC 9421 §2.2: the derived components a request has (`@query-param` and `@status` are left
# out: the first needs a parameter, the second is a response's).
DERIVED = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
# RFC 9110 §5.1: a field name is a token; RFC 9421 §2.1 covers it lowercased.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
# RFC 9421 §3.3.1: RSASSA-PSS with SHA-512, MGF1 with SHA-512, salt as long as the hash.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)

SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | bytes


# -- the signature base (RFC 9421 §2.5) ------------------------------------------------------


def component_value(name: str, request: OutboundRequest) -> str | None:
    """The value of one covered component of `request`; None when the request has none.

    RFC 9421 §2.2 for derived components; §2.1 for header fields: every field line's value,
    leading and trailing whitespace removed, joined by `, ` in the order they are sent.
    """
    if name.startswith("@"):
        scheme, _, authority = request.origin.partition("://")
        match name:
            case "@method":
                return request.method  # §2.2.1
            case "@target-uri":
                return request.url  # §2.2.2: the absolute target URI as sent
            case "@authority":
                return authority.lower()  # §2.2.3: the default port is already left out
            case "@scheme":
                return scheme.lower()  # §2.2.4
            case "@request-target":
                return request.target  # §2.2.5: origin-form, as on the request line
            case "@path":
                return request.path or "/"  # §2.2.6: an empty path is `/`
            case "@query":
                return "?" + request.query  # §2.2.7: `?` alone when there is none
        return None
    values = [value.strip() for key, value in request.headers if key.lower() == name]
    return ", ".join(values) if values else None


def signature_base(covered: Sequence[tuple[Item, str]], params: InnerList) -> str:
    """RFC 9421 §2.5: each covered component's identifier and value, then `@signature-params`.

    `params` is the `Signature-Input` member (the component identifiers with the signature
    parameters); `covered` pairs each identifier with its value, in the same order.
    """
    lines = [f"{serialize_item(ident)}: {value}" for ident, value in covered]
    lines.append(f'"@signature-params": {serialize_inner_list(params)}')
    return "\n".join(lines)


def content_digest(algorithm: DigestAlgorithm, chunks: Iterable[bytes]) -> str:
    """RFC 9530 §2: `Content-Digest: sha-256=:<base64>:`, a Dictionary of one Byte Sequence."""
    digest = _DIGESTS[algorithm]()
    for chunk in chunks:
        digest.update(chunk)
    return serialize_dictionary({algorithm: Item(digest.digest())})


# -- keys and algorithms (RFC 9421 §3.3) -----------------------------------------------------


def sign_bytes(algorithm: Algorithm, key: SigningKey, message: bytes) -> bytes:
    """The signature of `message` (the signature base's bytes) with `key`."""
    if algorithm == "hmac-sha256":
        assert isinstance(key, bytes)
        return hmac.new(key, message, hashlib.sha256).digest()  # §3.3.3
    if algorithm == "ed25519":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(message)  # §3.3.6
    if algorithm == "ecdsa-p256-sha256":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        # §3.3.4: the two integers r and s, each 32 bytes big-endian, not the DER sequence.
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(message, _PSS, hashes.SHA512())  # §3.3.1


def load_key(algorithm: Algorithm, material: bytes, field: str) -> SigningKey:
    """The key of `algorithm` from a credential's bytes: the secret itself for HMAC, a PEM (or
    DER) private key otherwise. Errors name `field` and never quote the material."""
    if algorithm == "hmac-sha256":
        if not material:
            raise SchemeConfigError(field, "must not be empty")
        return material
    key: Any
    try:
        if material.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(material, password=None)
        else:
            key = serialization.load_der_private_key(material, password=None)
    except (ValueError, TypeError):
        raise SchemeConfigError(
            field, "is not an unencrypted private key in PEM (PKCS #8 or the key type's own)"
        ) from None
    except Exception:  # cryptography's UnsupportedAlgorithm and kin
        raise SchemeConfigError(field, "is a private key of an unsupported type") from None
    expected = {
        "ed25519": ("an Ed25519 key", isinstance(key, ed25519.Ed25519PrivateKey)),
        "ecdsa-p256-sha256": (
            "an EC key on P-256",
            isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1",
        ),
        "rsa-pss-sha512": ("an RSA key", isinstance(key, rsa.RSAPrivateKey)),
    }
    wanted, matches = expected[algorithm]
    if not matches:
        raise SchemeConfigError(field, f"algorithm {algorithm} needs {wanted}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise SchemeConfigError(field, "an RSA key needs at least 2048 bits")
    signing_key: SigningKey = key
    return signing_key


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7517) with only its required members (RFC 7638 §3.2)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}  # RFC 8037 §2
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        pub = key.public_key().public_numbers()
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        return {"e": b64url(e), "kty": "RSA", "n": b64url(n)}
    raise TypeError("an HMAC secret has no public key")


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace; base64url."""
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# -- the scheme ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """One signature, with what `explain` shows."""

    base: str
    signature_input: str
    signature: str
    content_digest: str | None


class HttpSignatureScheme(Scheme):
    type_name = "http-signature"

    def __init__(
        self,
        credential_id: str,
        key: SigningKey,
        *,
        algorithm: Algorithm,
        key_id: str,
        components: Sequence[str],
        label: str,
        tag: str | None,
        expires_in: int | None,
        digest: DigestAlgorithm | None,
        profile: Literal["web-bot-auth", "custom"] = "custom",
    ) -> None:
        self.credential_id = credential_id
        self._key = key
        self.algorithm = algorithm
        self.key_id = key_id
        self.components = tuple(components)
        self.label = label
        self.tag = tag
        self.expires_in = expires_in
        self.digest = digest
        self.profile = profile
        # Only a Content-Digest makes the driver read (and maybe spill) the body first.
        self.requires_body = digest is not None
        owned = {"signature", "signature-input"}
        if digest is not None:
            owned.add("content-digest")  # ours replaces a client's: it is what is signed
        self.sets_headers = frozenset(owned)

    def __repr__(self) -> str:
        return f"HttpSignatureScheme({self.profile}, {self.algorithm}, {self.components})"

    def covered(self, request: OutboundRequest) -> list[str]:
        """The components this request's signature covers, in order."""
        names = list(self.components)
        if self.profile == WEB_BOT_AUTH and request.header(SIGNATURE_AGENT) is not None:
            names.append(SIGNATURE_AGENT)
        if self.digest is not None and "content-digest" not in names:
            names.append("content-digest")
        return names

    def build(self, request: OutboundRequest, ctx: SigningContext) -> Signed:
        digest_header = None
        if self.digest is not None:
            if request.body is None:
                # The driver reads the body for a scheme with requires_body; a digest of an
                # empty body instead would be a wrong signature sent quietly.
                raise RuntimeError("Content-Digest over the body, but the body was not read")
            digest_header = content_digest(self.digest, request.body.iter_bytes())
            request = request.patched(RequestPatch(headers={"Content-Digest": digest_header}))
        covered: list[tuple[Item, str]] = []
        for name in self.covered(request):
            value = component_value(name, request)
            if value is None:
                # RFC 9421 §2.5: a component that cannot be resolved is an error, never a
                # signature over less than was configured.
                raise InvalidRequest(
                    "signature_component_missing",
                    f"the request has no {name} header, which the connection's http-signature "
                    "covers",
                )
            covered.append((Item(name), value))
        created = int(ctx.now())
        params: list[tuple[str, int | str | bool | bytes]] = [("created", created)]
        if self.expires_in is not None:
            params.append(("expires", created + self.expires_in))
        params.append(("keyid", self.key_id))
        if self.profile == WEB_BOT_AUTH:
            # Web Bot Auth verifiers read `alg` and expect a nonce. Elsewhere `alg` is left out:
            # RFC 9421 §3.2 has the verifier take the algorithm from its key material.
            params += [("alg", self.algorithm), ("nonce", ctx.nonce())]
        if self.tag is not None:
            params.append(("tag", self.tag))
        member = InnerList([ident for ident, _ in covered], params)
        base = signature_base(covered, member)
        signature = sign_bytes(self.algorithm, self._key, _base_bytes(base))
        return Signed(
            base=base,
            signature_input=serialize_dictionary({self.label: member}),
            signature=serialize_dictionary({self.label: Item(signature)}),
            content_digest=digest_header,
        )

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        signed = self.build(request, ctx)
        headers = {"Signature-Input": signed.signature_input, "Signature": signed.signature}
        if signed.content_digest is not None:
            headers = {"Content-Digest": signed.content_digest, **headers}
        return RequestPatch(headers=headers)

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]:
        """What `explain` shows: the signature base, byte for byte."""
        return [("signature base", _base_bytes(self.build(request, ctx).base))]

    def directory_jwk(self) -> dict[str, str] | None:
        """The public key for the key directory (web-bot-auth only), with its `kid`."""
        if self.profile != WEB_BOT_AUTH:
            return None
        return {**public_jwk(self._key), "kid": self.key_id}

    def sign_directory(
        self, index: int, authority: str, ctx: SigningContext, expires_in: int
    ) -> tuple[str, str]:
        """`(Signature-Input member, Signature member)` for a key-directory response: the
        directory draft signs `"@authority";req` (the authority the directory was fetched
        from) with `tag="http-message-signatures-directory"`, one `binding<index>` per key."""
        ident = Item("@authority", (("req", True),))
        created = int(ctx.now())
        params: list[tuple[str, int | str | bool | bytes]] = [
            ("created", created),
            ("expires", created + expires_in),
            ("keyid", self.key_id),
            ("alg", self.algorithm),
            ("tag", "http-message-signatures-directory"),
        ]
        member = InnerList([ident], params)
        base = signature_base([(ident, authority.lower())], member)
        signature = sign_bytes(self.algorithm, self._key, _base_bytes(base))
        label = f"binding{index}"
        return (
            serialize_dictionary({label: member}),
            serialize_dictionary({label: Item(signature)}),
        )

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "type": self.type_name,
            "profile": self.profile,
            "algorithm": self.algorithm,
            "keyId": self.key_id,
            "label": self.label,
            "components": list(self.components),
        }
        if self.tag is not None:
            facts["tag"] = self.tag
        if self.expires_in is not None:
            facts["expiresIn"] = self.expires_in
        if self.digest is not None:
            facts["contentDigest"] = self.digest
        return facts


def _base_bytes(base: str) -> bytes:
    # Header values are latin-1 text off the wire (RFC 9110 §5.5); a configured value outside
    # latin-1 goes out as UTF-8, as `http1/wire.py` writes it.
    try:
        return base.encode("latin-1")
    except UnicodeEncodeError:
        return base.encode("utf-8")


# -- from the configuration ------------------------------------------------------------------

_PARAMS = "authSchemeConfig.httpSignature"


def build_http_signature_scheme(
    params: m.HttpSignatureParams,
    cred: m.StringCredential | m.BinaryCredential,
    credential_id: str,
) -> HttpSignatureScheme:
    """The scheme for one credential, its settings checked together (docs/http-signature.md).

    Raises:
        SchemeConfigError: at the field (relative to the connection credential).
    """
    if isinstance(cred, m.BinaryCredential):
        field = "credential.data.binary.valueBase64"
        material = decode_binary_key(cred.data.binary.value_base64.get_secret_value())
    else:
        field = "credential.data.string.value"
        material = cred.data.string.value.get_secret_value().encode("utf-8")
    if params.profile == WEB_BOT_AUTH:
        return _web_bot_auth(params, material, field, credential_id)
    if params.algorithm is None:
        raise SchemeConfigError(
            f"{_PARAMS}.algorithm",
            "is required: one of ed25519, ecdsa-p256-sha256, rsa-pss-sha512, hmac-sha256",
        )
    if params.key_id is None:
        raise SchemeConfigError(f"{_PARAMS}.keyId", "is required (the upstream's name for the key)")
    components = params.components if params.components is not None else ["@method", "@target-uri"]
    _check_components(components)
    key = load_key(params.algorithm, material, field)
    return HttpSignatureScheme(
        credential_id,
        key,
        algorithm=params.algorithm,
        key_id=params.key_id,
        components=components,
        label=params.label,
        tag=params.tag,
        expires_in=params.expires_in,
        digest=params.content_digest,
    )


def _web_bot_auth(
    params: m.HttpSignatureParams, material: bytes, field: str, credential_id: str
) -> HttpSignatureScheme:
    fixed = {
        "algorithm": (params.algorithm not in (None, "ed25519"), "is ed25519 with web-bot-auth"),
        "components": (
            params.components is not None,
            "is fixed by web-bot-auth (@authority, and signature-agent when sent): leave it out",
        ),
        "tag": (params.tag not in (None, WEB_BOT_AUTH), 'is "web-bot-auth" with web-bot-auth'),
        "contentDigest": (
            params.content_digest is not None,
            "is not part of web-bot-auth (it signs @authority and signature-agent only)",
        ),
    }
    for name, (wrong, message) in fixed.items():
        if wrong:
            raise SchemeConfigError(f"{_PARAMS}.{name}", message)
    key = load_key("ed25519", material, field)
    thumbprint = jwk_thumbprint(public_jwk(key))
    if params.key_id is not None and params.key_id != thumbprint:
        raise SchemeConfigError(
            f"{_PARAMS}.keyId",
            "with web-bot-auth the keyid is the key's JWK thumbprint (RFC 7638): leave it out",
        )
    return HttpSignatureScheme(
        credential_id,
        key,
        algorithm="ed25519",
        key_id=thumbprint,
        components=["@authority"],
        label=params.label,
        tag=WEB_BOT_AUTH,
        # The architecture draft requires `expires`; a minute outlasts any request's trip and
        # keeps a captured signature's use short (docs/http-signature.md).
        expires_in=params.expires_in if params.expires_in is not None else 60,
        digest=None,
        profile="web-bot-auth",
    )


def _check_components(components: Sequence[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(components):
        where = f"{_PARAMS}.components[{index}]"
        if name.startswith("@"):
            if name not in DERIVED:
                raise SchemeConfigError(
                    where, f"unknown derived component; one of {', '.join(sorted(DERIVED))}"
                )
        elif name == "host":
            raise SchemeConfigError(where, "cover @authority instead (RFC 9421 §2.2.3)")
        elif not _FIELD_NAME.fullmatch(name):
            raise SchemeConfigError(
                where, "a header field name is a lowercase token (RFC 9421 §2.1)"
            )
        if name in seen:
            raise SchemeConfigError(where, "is covered twice (RFC 9421 §2.5 forbids it)")
        seen.add(name)
