"""botocore errors -> typed store errors, and the retry layer, with botocore's Stubber.

Why a Stubber here and not moto: moto does not enforce IAM policies by default and cannot be told to throttle,
so it cannot produce AccessDenied or SlowDown on demand. The Stubber makes the real client raise exactly the
``ClientError`` botocore raises for those answers (same code, status and operation name), without a network.
NoSuchBucket against a real endpoint (moto server) is covered in tests/integration/test_store_s3.py.
"""

from __future__ import annotations

import io
import random
import re

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
)
from botocore.response import StreamingBody
from botocore.stub import Stubber
from s3transfer.exceptions import RetriesExceededError

from resnet_serving.errors import AccessDenied, NoSuchBucket, NotFound, StoreError, StoreUnavailable, Throttled
from resnet_serving.store import RetryPolicy, Store, s3_errors
from resnet_serving.store.s3 import S3Backend

BUCKET = "models-bucket"


@pytest.fixture
def client():
    c = boto3.session.Session().client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(c) as stubber:
        c.stubber = stubber
        yield c
        stubber.assert_no_pending_responses()


@pytest.fixture
def sleeps():
    return []


def make_store(client, sleeps, attempts=4):
    backend = S3Backend(
        BUCKET,
        "prod",
        client=client,
        retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=2.0),
        sleep=sleeps.append,
    )
    return Store(backend)


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_access_denied_names_action_and_key(client, sleeps):
    client.stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    with pytest.raises(AccessDenied) as info:
        make_store(client, sleeps).read_manifest("resnet50", "3")
    err = info.value
    assert err.action == "s3:GetObject"
    assert err.key == f"s3://{BUCKET}/prod/resnet50/3/manifest.json"
    assert "s3:GetObject" in err.message and err.key in err.message
    assert f"arn:aws:s3:::{BUCKET}/prod/resnet50/3/manifest.json" in err.message
    assert err.http_status == 403
    assert isinstance(err.__cause__, ClientError)
    assert sleeps == []  # a permission problem is not retried


def test_access_denied_on_write(client, sleeps):
    client.stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    store = make_store(client, sleeps)
    with pytest.raises(AccessDenied) as info:
        store.backend.put_bytes("resnet50/channels/stable.json", b'{"version": "3"}\n')
    assert info.value.action == "s3:PutObject"
    # small objects go to a hidden temp sibling first, then are copied into place: the denied key is that one
    assert re.fullmatch(rf"s3://{BUCKET}/prod/resnet50/channels/\.stable\.json\.[0-9a-f]{{12}}\.tmp", info.value.key)


def test_access_denied_on_list_points_at_the_bucket(client, sleeps):
    client.stubber.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
    with pytest.raises(AccessDenied) as info:
        make_store(client, sleeps).list_versions()
    assert info.value.action == "s3:ListBucket"
    assert f"arn:aws:s3:::{BUCKET} " in info.value.message


def test_kms_access_denied_mentions_the_key_permissions(client, sleeps):
    client.stubber.add_client_error("get_object", "AccessDenied", "User is not authorized to perform kms:Decrypt", 403)
    with pytest.raises(AccessDenied, match="kms:Decrypt on the KMS key"):
        make_store(client, sleeps).backend.get_bytes("resnet50/3/manifest.json")


def test_throttling_is_retried_with_backoff(client, sleeps):
    for _ in range(2):
        client.stubber.add_client_error("get_object", "SlowDown", "Please reduce your request rate.", 503)
    client.stubber.add_response("get_object", {"Body": body(b"payload")})
    store = make_store(client, sleeps)
    assert store.backend.get_bytes("resnet50/channels/stable.json") == b"payload"
    assert len(sleeps) == 2
    for n, delay in enumerate(sleeps):  # full jitter under a capped exponential bound
        assert 0 <= delay <= min(2.0, 0.5 * 2**n)


def test_throttled_after_all_attempts(client, sleeps):
    for _ in range(3):
        client.stubber.add_client_error("get_object", "SlowDown", "Please reduce your request rate.", 503)
    with pytest.raises(Throttled) as info:
        make_store(client, sleeps, attempts=3).backend.get_bytes("resnet50/1/manifest.json")
    assert "gave up after 3 attempts" in info.value.message
    assert "resnet50/1/manifest.json" in info.value.message
    assert info.value.transient and info.value.http_status == 503
    assert len(sleeps) == 2


def test_server_errors_are_transient(client, sleeps):
    client.stubber.add_client_error("head_object", "InternalError", "We encountered an internal error.", 500)
    client.stubber.add_response("head_object", {"ContentLength": 12})
    assert make_store(client, sleeps).backend.size("resnet50/1/model.mar") == 12
    assert len(sleeps) == 1


def test_no_such_bucket(client, sleeps):
    client.stubber.add_client_error("list_objects_v2", "NoSuchBucket", "The specified bucket does not exist", 404)
    with pytest.raises(NoSuchBucket) as info:
        make_store(client, sleeps).list_versions()
    assert f"bucket {BUCKET!r} does not exist" in info.value.message
    assert f"aws s3 mb s3://{BUCKET}" in info.value.message
    assert sleeps == []


def test_missing_key_is_not_found_and_not_retried(client, sleeps):
    client.stubber.add_client_error("head_object", "404", "Not Found", 404)
    assert make_store(client, sleeps).backend.exists("resnet50/9/manifest.json") is False
    assert sleeps == []


def test_other_client_errors_keep_the_code(client, sleeps):
    client.stubber.add_client_error("put_object", "KMS.NotFoundException", "Invalid keyId nope", 400)
    with pytest.raises(StoreError, match=r"KMS\.NotFoundException: Invalid keyId nope") as info:
        make_store(client, sleeps).backend.put_bytes("resnet50/1/manifest.json", b"{}", kms_key_id="nope")
    assert type(info.value) is StoreError
    assert sleeps == []


def test_convert_credentials_and_connection_errors():
    common = {"operation": "GetObject", "bucket": BUCKET, "key": "k", "endpoint": "http://127.0.0.1:9"}
    creds = s3_errors.convert(NoCredentialsError(), **common)
    assert isinstance(creds, AccessDenied) and "AWS_PROFILE" in creds.message
    down = s3_errors.convert(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), attempts=5, **common)
    assert isinstance(down, StoreUnavailable) and down.transient
    assert "gave up after 5 attempts" in down.message and "http://127.0.0.1:9" in down.message
    missing = s3_errors.convert(
        ClientError({"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject"),
        **common,
    )
    assert isinstance(missing, NotFound)
    assert s3_errors.convert(ValueError("not ours"), **common) is None


def test_retry_policy_delays_are_bounded_and_counted():
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=5.0)
    delays = list(policy.delays(random.Random(7)))
    assert len(delays) == 5
    assert all(0 <= d <= min(5.0, 2**n) for n, d in enumerate(delays))
    assert list(RetryPolicy(attempts=1).delays()) == []
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    "exc",
    [
        IncompleteReadError(actual_bytes=10, expected_bytes=20),
        FlexibleChecksumError(error_msg="Expected checksum x did not match calculated checksum: y"),
        RetriesExceededError(TimeoutError("timed out")),
        RetriesExceededError(ConnectionResetError(104, "Connection reset by peer")),
        RetriesExceededError(IncompleteReadError(actual_bytes=1, expected_bytes=2)),
    ],
    ids=["short-body", "checksum-in-transit", "download-socket-timeout", "download-reset", "download-short-body"],
)
def test_a_body_broken_in_transit_is_transient(exc: Exception) -> None:
    """Found by tests/faults: a cut or corrupted download body was a permanent StoreError (or untyped), so the one
    retry layer never retried it."""
    err = s3_errors.convert(exc, operation="GetObject", bucket=BUCKET, key="m/1/model.mar", endpoint=None, attempts=3)
    assert isinstance(err, StoreUnavailable) and err.transient
    assert f"s3://{BUCKET}/m/1/model.mar" in err.message and "gave up after 3 attempts" in err.message
