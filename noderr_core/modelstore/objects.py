"""Model objects in S3: content-addressed upload, read-back verification, manifests, sources.

Keys: `models/<name>/sha256/<sha256>.onnx` for the bytes and `...<sha256>.manifest.json` for the
signed manifest. Because the key is the content hash, re-packaging identical bytes finds the object
already there (size and sha256 read back) and uploads nothing. Large files go up in parts (boto3
TransferConfig). Nothing points at an object until `verify_model_object` has read it back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from noderr_core.storage.s3 import UNREACHABLE_ERRORS, S3Unreachable, unreachable_message
from noderr_protocol.models import ModelManifest, SignedManifest

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024


class ObjectChecksumMismatch(RuntimeError):
    """What S3 holds under a key is not the bytes that were packaged."""


class ModelSourceError(ValueError):
    """A model source (local path or s3:// URI) cannot be read; the message says why."""


@dataclass(frozen=True)
class UploadOutcome:
    bucket: str
    key: str
    size_bytes: int
    sha256: str
    uploaded: bool  # False: identical bytes were already stored under this content address
    parts: int


def model_object_key(name: str, sha256: str) -> str:
    return f"models/{name}/sha256/{sha256}.onnx"


def manifest_object_key(name: str, sha256: str) -> str:
    return f"models/{name}/sha256/{sha256}.manifest.json"


def transfer_config() -> TransferConfig:
    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def read_object_digest(client, bucket: str, key: str) -> tuple[int, str]:
    """Stream the object back and return (size, sha256) of what S3 actually serves."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    size = 0
    for chunk in body.iter_chunks(READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def verify_model_object(client, bucket: str, key: str, *, size_bytes: int, sha256: str) -> None:
    try:
        size, digest = read_object_digest(client, bucket, key)
    except UNREACHABLE_ERRORS as exc:
        raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
    if size != size_bytes or digest != sha256:
        raise ObjectChecksumMismatch(
            f"s3://{bucket}/{key} read back {size} bytes with sha256 {digest}, expected "
            f"{size_bytes} bytes with sha256 {sha256}: the upload is corrupt, nothing was published"
        )


def upload_model_object(client, bucket: str, name: str, data: bytes) -> UploadOutcome:
    """Upload `data` to its content address unless identical bytes are already there; verify."""
    sha = hashlib.sha256(data).hexdigest()
    key = model_object_key(name, sha)
    try:
        head = _head(client, bucket, key)
        uploaded = False
        if head is None or head.get("ContentLength") != len(data):
            client.upload_fileobj(
                io.BytesIO(data), bucket, key, Config=transfer_config(),
                ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"sha256": sha}},
            )
            uploaded = True
        try:
            verify_model_object(client, bucket, key, size_bytes=len(data), sha256=sha)
        except ObjectChecksumMismatch:
            if uploaded:
                raise
            # A corrupt object squats on the content address: replace it once, then re-verify.
            client.upload_fileobj(
                io.BytesIO(data), bucket, key, Config=transfer_config(),
                ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"sha256": sha}},
            )
            uploaded = True
            verify_model_object(client, bucket, key, size_bytes=len(data), sha256=sha)
    except UNREACHABLE_ERRORS as exc:
        raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
    parts = max(1, -(-len(data) // MULTIPART_CHUNK)) if len(data) >= MULTIPART_THRESHOLD else 1
    return UploadOutcome(bucket, key, len(data), sha, uploaded, parts if uploaded else 0)


def put_manifest_object(client, bucket: str, signed: SignedManifest) -> str:
    key = manifest_object_key(signed.manifest.name, signed.manifest.sha256)
    try:
        client.put_object(
            Bucket=bucket, Key=key, Body=signed.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
    except UNREACHABLE_ERRORS as exc:
        raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
    return key


def read_model_source(source: str, client=None) -> bytes:
    """The bytes of an ONNX file given as a local path or an `s3://bucket/key` URI."""
    if source.startswith("s3://"):
        parsed = urlparse(source)
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if not bucket or not key:
            raise ModelSourceError(f"{source!r} is not an s3://bucket/key URI")
        if client is None:
            raise ModelSourceError("reading an s3:// source needs an S3 client")
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except UNREACHABLE_ERRORS as exc:
            raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
        except ClientError as exc:
            raise ModelSourceError(f"cannot read {source}: {_error_code(exc) or exc}") from exc
    if "://" in source:
        scheme = source.split("://", 1)[0]
        raise ModelSourceError(f"{scheme}:// sources are not supported: give a local path or an "
                               "s3://bucket/key URI")
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelSourceError(f"model file {path} does not exist (give a local path or s3:// URI)")
    return path.read_bytes()


def manifest_matches(manifest: ModelManifest, data: bytes) -> bool:
    return manifest.size_bytes == len(data) and manifest.sha256 == hashlib.sha256(data).hexdigest()
