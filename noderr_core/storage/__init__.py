"""Object storage: one S3 code path (boto3) for SeaweedFS on loopback and for AWS S3 in production."""
