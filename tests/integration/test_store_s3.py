"""S3-only behaviour against moto's real HTTP endpoint: multipart, SSE-KMS, missing buckets, outages."""

from __future__ import annotations

import socket

import pytest

from resnet_serving.cli import main
from resnet_serving.errors import NoSuchBucket, NotFound, StoreUnavailable
from resnet_serving.store import RetryPolicy, archive_key, open_store
from tests.fixtures.archives import fake_archive
from tests.fixtures.moto_server import MotoS3

MiB = 1 << 20


def test_large_archives_go_up_in_parts(moto_s3, s3_bucket, tmp_path):
    store = open_store(f"s3://{s3_bucket}/models", endpoint_url=moto_s3.url)
    archive, manifest = fake_archive(tmp_path / "src", "1", 17 * MiB)
    store.push(archive, manifest)
    head = moto_s3.client().head_object(Bucket=s3_bucket, Key="models/" + archive_key("resnet50", "1"))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag: three 8 MiB parts
    assert store.fetch("resnet50", "1", tmp_path / "dest").read_bytes() == archive.read_bytes()


def test_a_multipart_upload_never_completed_is_invisible(moto_s3, s3_bucket, tmp_path):
    """The process died mid-upload (no abort ran): the parts exist, the object and the version do not."""
    store = open_store(f"s3://{s3_bucket}", endpoint_url=moto_s3.url)
    s3 = moto_s3.client()
    key = archive_key("resnet50", "1")
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key=key)
    s3.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * (5 * MiB))
    assert len(s3.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]) == 1

    assert store.list_versions() == []
    with pytest.raises(NotFound):
        store.fetch("resnet50", "1", tmp_path / "dest")
    with pytest.raises(NotFound):
        store.set_channel("resnet50", "stable", "1")


def test_sse_kms(moto_s3, s3_bucket, tmp_path, capsys):
    # pretrained: push refuses random weights for an s3:// store (tests/integration/test_push_random_weights.py)
    archive, _ = fake_archive(tmp_path / "src", "1", source="imagenet")
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    argv = ["push", str(archive), "--store", f"s3://{s3_bucket}", "--endpoint-url", moto_s3.url]
    assert main([*argv, "--kms-key-id", key_id]) == 0
    s3 = moto_s3.client()
    for name in ("model.mar", "manifest.json"):
        head = s3.head_object(Bucket=s3_bucket, Key=f"resnet50/1/{name}")
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_id
    capsys.readouterr()


def test_missing_bucket(moto_s3, tmp_path, capsys):
    argv = ["--store", "s3://no-such-bucket-for-resnet/models", "--endpoint-url", moto_s3.url]
    assert main(["versions", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet-serving versions: error: bucket 'no-such-bucket-for-resnet' does not exist")
    assert moto_s3.url in err

    assert main(["fetch", "--version", "1", "--dest", str(tmp_path / "dest"), *argv]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(NoSuchBucket):
        open_store("s3://no-such-bucket-for-resnet", endpoint_url=moto_s3.url).channels()


def test_unreachable_endpoint_is_retried_then_reported(aws_test_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        store = open_store("s3://models", endpoint_url=url, retry=RetryPolicy(attempts=3, base_delay=0))
        with pytest.raises(StoreUnavailable) as info:
            store.list_versions()
    assert info.value.transient
    assert "gave up after 3 attempts" in info.value.message and url in info.value.message


def test_outage_and_recovery(aws_test_env, tmp_path):
    """The endpoint goes away and comes back on the same address: errors are typed, then it just works."""
    with MotoS3() as server:
        bucket = server.create_bucket()
        store = open_store(f"s3://{bucket}", endpoint_url=server.url, retry=RetryPolicy(attempts=2, base_delay=0))
        store.push(*fake_archive(tmp_path / "src", "1"))
        store.set_channel("resnet50", "stable", "1")

        server.stop()
        with pytest.raises(StoreUnavailable):
            store.list_versions()
        with pytest.raises(StoreUnavailable):
            store.resolve_channel("resnet50", "stable")

        server.start()
        assert store.list_versions() == ["1"]
        assert store.resolve_channel("resnet50", "stable") == "1"
