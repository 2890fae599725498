"""Model objects on a real SeaweedFS: content addressing, multipart, read-back, presigned URLs."""

from __future__ import annotations

import os
import secrets
import shutil
import urllib.request

import pytest
from pydantic import SecretStr

from noderr_core.modelstore.objects import (
    ObjectChecksumMismatch,
    model_object_key,
    read_model_source,
    upload_model_object,
    verify_model_object,
)
from noderr_core.settings import Settings
from noderr_core.storage.s3 import S3Unreachable, ensure_bucket, make_s3_client
from noderr_local.process import free_port


def test_upload_is_content_addressed_verified_and_not_repeated(s3_settings):
    client = make_s3_client(s3_settings)
    data = os.urandom(20 * 1024 * 1024 + 17)  # above the multipart threshold
    first = upload_model_object(client, s3_settings.model_bucket, "big-model", data)
    assert first.uploaded and first.parts == 2
    assert first.key == model_object_key("big-model", first.sha256)
    again = upload_model_object(client, s3_settings.model_bucket, "big-model", data)
    assert not again.uploaded and again.key == first.key


def test_corrupted_object_is_detected_and_replaced(s3_settings):
    client = make_s3_client(s3_settings)
    bucket = s3_settings.model_bucket
    data = b"onnx-bytes" * 1000
    out = upload_model_object(client, bucket, "m", data)
    client.put_object(Bucket=bucket, Key=out.key, Body=data[:-1] + b"X")  # bit rot / tampering
    with pytest.raises(ObjectChecksumMismatch, match="nothing was published"):
        verify_model_object(client, bucket, out.key, size_bytes=len(data), sha256=out.sha256)
    healed = upload_model_object(client, bucket, "m", data)
    assert healed.uploaded
    verify_model_object(client, bucket, out.key, size_bytes=len(data), sha256=out.sha256)


def test_presigned_url_downloads_exact_bytes(s3_settings):
    client = make_s3_client(s3_settings)
    data = os.urandom(100_000)
    out = upload_model_object(client, s3_settings.model_bucket, "m", data)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_settings.model_bucket, "Key": out.key}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        assert resp.read() == data


def test_bucket_is_created_when_missing(s3_settings):
    client = make_s3_client(s3_settings)
    assert ensure_bucket(client, "noderr-fresh-bucket-x") is True
    assert ensure_bucket(client, "noderr-fresh-bucket-x") is False


def test_unreachable_store_names_the_setting(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings(env="test", state_dir=tmp_path, s3_endpoint_url=dead,
                        s3_secret_access_key=SecretStr("x"))
    client = make_s3_client(settings, max_attempts=1, connect_timeout=1)
    with pytest.raises(S3Unreachable, match=f"NODERR_S3_ENDPOINT_URL is not reachable at {dead}"):
        upload_model_object(client, "noderr-models", "m", b"x")


def test_model_source_from_s3_uri_and_bad_sources(s3_settings, tmp_path):
    client = make_s3_client(s3_settings)
    client.put_object(Bucket=s3_settings.model_bucket, Key="incoming/m.onnx", Body=b"abc")
    assert read_model_source(f"s3://{s3_settings.model_bucket}/incoming/m.onnx", client) == b"abc"
    with pytest.raises(ValueError, match="does not exist"):
        read_model_source(str(tmp_path / "missing.onnx"))
    with pytest.raises(ValueError, match="NoSuchKey|404"):
        read_model_source(f"s3://{s3_settings.model_bucket}/nope.onnx", client)


def test_every_new_bucket_stays_writable_past_the_disk_sized_volume_count(s3_server):
    """Each bucket takes a volume of its own; weed mini's own default allows free-disk-GiB of them.

    A test session makes a bucket per test, so with that default the bucket after the 35th (on a
    disk with 35 GiB free) answered every write with InternalError. More buckets than that, here.
    """
    client = s3_server.client()
    free_gib = shutil.disk_usage(s3_server.data_dir).free // 2**30
    count = min(free_gib + 5, 150)
    for i in range(count):
        bucket = f"many-{secrets.token_hex(4)}-{i}"
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="k", Body=b"x" * 1024)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 1024
