"""`aws-sigv4` end to end: AWS SDK clients with a placeholder key, through the proxy, to a real
`moto_server` process that checks every signature (S3, STS, Secrets Manager), and to a raw
upstream that records the bytes, where the body hash and the chunk chain are checked from the
AWS algorithm (moto trusts the declared `x-amz-content-sha256` and reads no chunk signature).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests import rawhttp
from tests.aws_chunks import CHUNK_SIGNATURE, aws_chunk_signatures, aws_chunked, chunks_of
from tests.builders import connection
from tests.moto_server import REGION, MotoServer, moto_server
from tests.plane import MakeProxy

CANARY_SECRET = "canary-aws-secret-5be0c2"
PLACEHOLDER = {"aws_access_key_id": "placeholder", "aws_secret_access_key": "placeholder"}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def aws(
    key_id: str,
    secret: str,
    *,
    region: str | None = None,
    service: str | None = None,
    where: str = "header",
) -> dict[str, Any]:
    params: dict[str, Any] = {"in": where}
    if region:
        params["region"] = region
    if service:
        params["service"] = service
    return {
        "authSchemeConfig": {"type": "aws-sigv4", "awsSigV4": params},
        "credential": {
            "type": "aws",
            "data": {"aws": {"accessKeyId": key_id, "secretAccessKey": secret}},
        },
    }


def sdk(proxy: Any, route: str, service: str) -> Any:
    """An AWS SDK client that talks to the proxy's route with a placeholder key."""
    return boto3.client(
        service,
        endpoint_url=str(proxy.make_url(route)),
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        **PLACEHOLDER,
    )


async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # The SDK blocks; the proxy runs on this test's event loop.
    return await asyncio.to_thread(function, *args, **kwargs)


async def test_s3_sts_and_secrets_manager_accept_the_proxys_signature(
    make_proxy: MakeProxy, moto: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_id, secret = moto.access_key_id, moto.secret_access_key
    proxy = await make_proxy(
        {
            "connections": [
                connection("s3", moto.url, aws(key_id, secret, region=REGION, service="s3")),
                connection("sts", moto.url, aws(key_id, secret, region=REGION, service="sts")),
                # Region and service from the SDK's own (placeholder) credential scope.
                connection("secrets", moto.url, aws(key_id, secret)),
            ],
            # A 3 MiB object spills to a file before it is hashed.
            "limits": {"memoryBodyBytes": 64 * 1024},
        }
    )
    s3 = sdk(proxy, "/s3", "s3")
    await call(s3.create_bucket, Bucket="proxy-bucket")
    big = bytes(range(256)) * (3 * 4096)
    await call(s3.put_object, Bucket="proxy-bucket", Key="small.txt", Body=b"hello")
    await call(s3.put_object, Bucket="proxy-bucket", Key="dir/big file.bin", Body=big)
    got = await call(s3.get_object, Bucket="proxy-bucket", Key="dir/big file.bin")
    assert await call(got["Body"].read) == big
    listed = await call(s3.list_objects_v2, Bucket="proxy-bucket", Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/big file.bin"]

    identity = await call(sdk(proxy, "/sts", "sts").get_caller_identity)
    assert identity["Arn"] == moto.user_arn  # signed with the proxy's key, not the SDK's

    secrets = sdk(proxy, "/secrets", "secretsmanager")
    await call(secrets.create_secret, Name="db", SecretString="s3cr3t-value")
    value = await call(secrets.get_secret_value, SecretId="db")
    assert value["SecretString"] == "s3cr3t-value"
    assert secret not in caplog.text


async def test_a_wrong_key_is_refused_by_each_service(
    make_proxy: MakeProxy, moto: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = aws(moto.access_key_id, CANARY_SECRET)
    proxy = await make_proxy(
        {
            "connections": [
                connection("s3", moto.url, wrong),
                connection("sts", moto.url, wrong),
                connection("secrets", moto.url, wrong),
            ]
        }
    )
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (sdk(proxy, "/s3", "s3").list_buckets, {}),
        (sdk(proxy, "/sts", "sts").get_caller_identity, {}),
        (sdk(proxy, "/secrets", "secretsmanager").list_secrets, {}),
    ]
    for function, kwargs in calls:
        with pytest.raises(ClientError) as refused:
            await call(function, **kwargs)
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
        # (moto answers S3 in the IAM error shape: botocore's S3 parser leaves it in Message)
        assert "SignatureDoesNotMatch" in str(error["Error"])
    assert CANARY_SECRET not in caplog.text


# --- the bytes that go up -------------------------------------------------------------------


async def _drip(body: bytes, piece: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), piece):
        yield body[start : start + piece]
        await asyncio.sleep(0)


def chunked_upload_headers(body: bytes, decoded: int) -> dict[str, str]:
    return {
        "Authorization": (
            "AWS4-HMAC-SHA256 Credential=placeholder/20200101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "9" * 64
        ),
        "X-Amz-Date": "20200101T000000Z",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
        "Content-Length": str(len(body)),
    }


def botocore_signature(request: rawhttp.Message, secret: str) -> str:
    """The request's signature recomputed by botocore from what arrived (moto's way)."""
    authorization = request.get("Authorization") or ""
    scope = authorization.split("Credential=")[1].split(",")[0].split("/")
    names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k: v for k, v in request.headers if k.lower() in names}
    theirs = AWSRequest(
        method=request.method,
        url=f"http://{request.get('Host')}{request.target}",
        headers=headers,
    )
    theirs.context["timestamp"] = request.get("X-Amz-Date")
    signer = S3SigV4Auth(Credentials(scope[0], secret), scope[3], scope[2])
    canonical = signer.canonical_request(theirs)
    signature: str = signer.signature(signer.string_to_sign(theirs, canonical), theirs)
    return signature


async def test_a_chunk_signed_upload_is_resigned_as_it_streams(make_proxy: MakeProxy) -> None:
    sizes = [65536, 65536, 1000]
    body = aws_chunked(sizes, fill=b"q", signature="e" * 64)
    async with rawhttp.serving(rawhttp.RawUpstream()) as upstream:
        proxy = await make_proxy(
            {"connections": [connection("s3", upstream.base, aws("AKIDPROXY", CANARY_SECRET))]}
        )
        headers = chunked_upload_headers(body, sum(sizes))
        async with proxy.put("/s3/bucket/key", data=_drip(body, 4000), headers=headers) as r:
            assert r.status == 200
    sent = upstream.received[0].request
    assert sent.get("Content-Length") == str(len(body)) and len(sent.body) == len(body)
    assert sent.get("x-amz-content-sha256") == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert chunks_of(sent.body) == [b"q" * size for size in [*sizes, 0]]
    seed = (sent.get("Authorization") or "").rsplit("Signature=", 1)[1]
    assert seed == botocore_signature(sent, CANARY_SECRET)
    timestamp = sent.get("X-Amz-Date") or ""
    scope = f"{timestamp[:8]}/us-east-1/s3/aws4_request"
    expected = aws_chunk_signatures(CANARY_SECRET, timestamp, scope, seed, chunks_of(sent.body))
    assert [s.decode() for s in CHUNK_SIGNATURE.findall(sent.body)] == expected


async def test_a_chunk_signed_upload_is_stored_by_moto(
    make_proxy: MakeProxy, moto: MotoServer
) -> None:
    key = aws(moto.access_key_id, moto.secret_access_key)
    proxy = await make_proxy({"connections": [connection("s3", moto.url, key)]})
    s3 = sdk(proxy, "/s3", "s3")
    await call(s3.create_bucket, Bucket="chunked-bucket")
    sizes = [8192, 8192, 17]
    body = aws_chunked(sizes, fill=b"w", signature="e" * 64)
    headers = chunked_upload_headers(body, sum(sizes))
    async with proxy.put("/s3/chunked-bucket/obj", data=_drip(body, 5000), headers=headers) as r:
        assert r.status == 200, await r.text()
    got = await call(s3.get_object, Bucket="chunked-bucket", Key="obj")
    assert await call(got["Body"].read) == b"w" * sum(sizes)


async def test_a_hashed_body_goes_up_with_its_sha256(make_proxy: MakeProxy) -> None:
    body = b"\x00payload\xff" * 50000  # past the memory limit: spilled, then hashed
    async with rawhttp.serving(rawhttp.RawUpstream()) as upstream:
        proxy = await make_proxy(
            {
                "connections": [
                    connection(
                        "s3",
                        upstream.base,
                        aws("AKIDPROXY", CANARY_SECRET, service="s3", region="eu-west-1"),
                    )
                ],
                "limits": {"memoryBodyBytes": 4096},
            }
        )
        declared = {"x-amz-content-sha256": "0" * 64}  # a client's (wrong) hash is replaced
        async with proxy.put("/s3/b/k", data=_drip(body, 7000), headers=declared) as r:
            assert r.status == 200
    sent = upstream.received[0].request
    assert sent.body == body
    assert sent.get("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    signature = (sent.get("Authorization") or "").rsplit("Signature=", 1)[1]
    assert signature == botocore_signature(sent, CANARY_SECRET)


async def test_a_broken_aws_chunked_body_is_not_completed_upstream(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    body = aws_chunked([100]).replace(b"\r\n0;", b"\r\nXX;")
    async with rawhttp.serving(rawhttp.RawUpstream()) as upstream:
        proxy = await make_proxy(
            {"connections": [connection("s3", upstream.base, aws("AKIDPROXY", CANARY_SECRET))]}
        )
        headers = chunked_upload_headers(body, 100)
        async with proxy.put("/s3/b/k", data=body, headers=headers) as r:
            assert r.status == 400
            assert (await r.json())["code"] == "bad_aws_chunked"
    # The upstream never got a whole request: its length was never reached.
    assert all(len(r.request.body) < len(body) for r in upstream.received)
    assert CANARY_SECRET not in caplog.text
