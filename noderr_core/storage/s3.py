"""boto3 S3 clients built from settings, bucket creation, and actionable connection errors.

One code path for every S3 endpoint: the local stack's SeaweedFS (path-style addressing on
loopback) and AWS S3 (empty NODERR_S3_ENDPOINT_URL: boto3's own endpoint resolution and, when no
explicit keys are configured, its standard credential chain).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from noderr_core.settings import Settings

# Errors that mean "the endpoint is not there", as opposed to "the endpoint said no".
UNREACHABLE_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)


class S3Unreachable(ConnectionError):
    """The object store does not answer at the configured endpoint."""


def unreachable_message(endpoint_url: str | None, exc: BaseException | None = None) -> str:
    where = endpoint_url or "AWS S3 (NODERR_S3_ENDPOINT_URL is empty)"
    hint = (
        "start the local stack with `noderr dev up` (it runs SeaweedFS) or set "
        "NODERR_S3_ENDPOINT_URL to a reachable S3 endpoint"
    )
    detail = f" ({exc})" if exc else ""
    return f"NODERR_S3_ENDPOINT_URL is not reachable at {where}{detail}: {hint}"


def client_config(*, connect_timeout: float = 5, read_timeout: float = 60,
                  max_attempts: int = 3) -> Config:
    return Config(
        signature_version="s3v4",
        # Path-style works for every endpoint (SeaweedFS has no per-bucket DNS names on loopback).
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )


def client_kwargs(settings: Settings, endpoint_url: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `boto3.client("s3", ...)` (also used by dagster-aws S3Resource)."""
    kwargs: dict[str, Any] = {"region_name": settings.s3_region}
    endpoint = endpoint_url if endpoint_url is not None else settings.s3_endpoint_url
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    secret = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_access_key_id and secret:
        kwargs["aws_access_key_id"] = settings.s3_access_key_id
        kwargs["aws_secret_access_key"] = secret
    return kwargs


def make_s3_client(settings: Settings, *, endpoint_url: str | None = None, **config: Any):
    """A boto3 S3 client for the platform's object store (one per process/resource, not per call)."""
    return boto3.session.Session().client(
        "s3", config=client_config(**config), **client_kwargs(settings, endpoint_url)
    )


def make_presign_client(settings: Settings):
    """A client whose presigned URLs point at the endpoint the nodes reach.

    Presigning is local computation (no request), so this client never needs to reach the store.
    Nodes and the control plane share NODERR_S3_ENDPOINT_URL in every supported layout (loopback
    locally, the compose service name in containers, AWS in production).
    """
    return make_s3_client(settings)


def ensure_bucket(client, bucket: str, region: str | None = None) -> bool:
    """Create `bucket` if it does not exist. Returns True when it was created."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except UNREACHABLE_ERRORS as exc:
        raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise
    return True


def check_reachable(client) -> None:
    """Raise S3Unreachable with an actionable message when the endpoint does not answer."""
    try:
        client.list_buckets()
    except UNREACHABLE_ERRORS as exc:
        raise S3Unreachable(unreachable_message(client.meta.endpoint_url, exc)) from exc
