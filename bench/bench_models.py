"""Models benchmarks, each against a baseline measured in the same run.

1. Delivery of a 100 MB ONNX model (10 MB with --quick): package (manifest + Ed25519 signature) +
   content-addressed multipart upload + read-back verification (size + sha256) + registry publish,
   vs. a raw boto3 `upload_fileobj` of the same bytes to the same SeaweedFS. Figure: MB/s.
2. `GET /v1/models/beacon` with 1,000 registered nodes through uvicorn + PostgreSQL (16 client
   threads, rotating node keys), vs. the same beacon built in-process (node lookup by key id, the
   beacon query and the signing, no HTTP). Figure: requests/s.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import BenchContext, BenchRow

AREA = "models"


def big_onnx(size_bytes: int) -> bytes:
    """A valid ONNX model (input [N, 4] @ W[4, K]) whose weights make it `size_bytes` large."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = max(1, size_bytes // 16)
    weights = np.random.default_rng(0).random((4, k), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])], "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, k])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def bench_delivery(ctx: BenchContext, seaweed) -> list[BenchRow]:
    from boto3.s3.transfer import TransferConfig

    from noderr_core.audit import Actor
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.migrations import upgrade_database
    from noderr_core.modelstore import delivery
    from noderr_protocol.signing import load_private_key

    size = (10 if ctx.quick else 100) * 1024 * 1024
    data = big_onnx(size)
    mb = len(data) / 1e6
    client = seaweed.client()
    bucket = f"bench-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    db_url = f"sqlite:///{ctx.workdir / 'models.db'}"
    upgrade_database(db_url)
    engine = make_engine(db_url)
    key = load_private_key(secrets.token_hex(32))

    # Baseline first: raw boto3 upload of the same bytes (default TransferConfig).
    started = time.perf_counter()
    client.upload_fileobj(io.BytesIO(data), bucket, "raw/model.onnx", Config=TransferConfig())
    raw_s = time.perf_counter() - started

    started = time.perf_counter()
    with make_session_factory(engine)() as session:
        packaged = delivery.package_model(session, name="big-model", onnx_bytes=data, source="bench",
                                          metrics={}, signing_key=key)
        session.rollback()
        stored = delivery.store_model_bytes(client, bucket, packaged)
        delivery.publish_stored_model(
            session, client, bucket=bucket, signed_manifest=packaged.signed_manifest,
            object_key=stored.key, source="bench", actor=Actor.system("bench"), signing_key=key,
        )
        session.commit()
    ours_s = time.perf_counter() - started

    # Re-delivering identical bytes: head + read-back verification only, no upload.
    started = time.perf_counter()
    with make_session_factory(engine)() as session:
        packaged = delivery.package_model(session, name="big-model", onnx_bytes=data, source="bench",
                                          metrics={}, signing_key=key)
        session.rollback()
        again = delivery.store_model_bytes(client, bucket, packaged)
    redeliver_s = time.perf_counter() - started
    engine.dispose()
    assert not again.uploaded
    return [
        BenchRow(AREA, f"package+upload+verify+publish {mb:.0f} MB MB/s", mb / ours_s, "MB/s",
                 "raw boto3 upload_fileobj MB/s", mb / raw_s,
                 notes=f"ours {ours_s:.2f}s (incl. sha256, ONNX parse, read-back), raw "
                       f"{raw_s:.2f}s; re-delivery of same bytes {redeliver_s:.2f}s, 0 bytes up"),
    ]


def bench_beacon(ctx: BenchContext, seaweed) -> list[BenchRow]:
    from sqlalchemy import select

    from noderr_core.audit import Actor
    from noderr_core.db import make_engine, make_session_factory
    from noderr_core.modelstore import build_signed_beacon, promote_model_version
    from noderr_core.tables import Node
    from noderr_core.security import NODE_KEY_PREFIX, api_key_matches, parse_api_key
    from noderr_core.settings import Settings
    from noderr_core.storage.s3 import make_presign_client
    from noderr_protocol.signing import load_private_key
    from tests.support.models import onnx_variant, publish_bytes
    from tests.support.apiserver import start_api_server
    from noderr_local.postgres import PostgresCluster
    from tests.support.factories import make_node
    from noderr_local.process import stop_process
    from noderr_core.migrations import upgrade_database
    from pydantic import SecretStr
    import httpx

    node_count = 1000
    requests_n = 400 if ctx.quick else 3000
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-models-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root)
    cluster.start()
    server = None
    try:
        cluster.admin_execute("CREATE DATABASE bench_models")
        db_url = cluster.url("bench_models")
        upgrade_database(db_url)
        engine = make_engine(db_url)
        sessions = make_session_factory(engine)
        key_hex = secrets.token_hex(32)
        key = load_private_key(key_hex)
        client = seaweed.client()
        bucket = f"bench-beacon-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=bucket)
        keys: list[str] = []
        with sessions() as s:
            publish_bytes(s, client, bucket, key, data=onnx_variant("b1"))
            publish_bytes(s, client, bucket, key, data=onnx_variant("b2"))
            admin = Actor.system("bench")
            promote_model_version(s, model_name="iris-classifier", version=1, to_status="active",
                                  actor=admin)
            promote_model_version(s, model_name="iris-classifier", version=2, to_status="canary",
                                  rollout_percent=20, actor=admin)
            for _ in range(node_count):
                keys.append(make_node(s)[1])
            s.commit()

        env = {**seaweed.env(), "NODERR_MODEL_BUCKET": bucket, "NODERR_MODEL_SIGNING_KEY": key_hex}
        server = start_api_server(db_url, ctx.workdir / "api", env=env, workers=1)
        http = httpx.Client(base_url=server.url, timeout=30,
                            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

        def fetch(i: int) -> int:
            resp = http.get("/v1/models/beacon",
                            headers={"Authorization": f"Bearer {keys[i % node_count]}"})
            return resp.status_code

        list(ThreadPoolExecutor(16).map(fetch, range(50)))  # warm up
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(fetch, range(requests_n)))
        http_s = time.perf_counter() - started
        http.close()
        assert all(c == 200 for c in codes), set(codes)

        # Baseline: the same work in-process (authenticate by key, build + sign), no HTTP.
        settings = Settings(env="test", s3_endpoint_url=seaweed.endpoint_url,
                            s3_access_key_id=seaweed.access_key_id,
                            s3_secret_access_key=SecretStr(seaweed.secret_access_key),
                            model_bucket=bucket)
        presign = make_presign_client(settings)
        started = time.perf_counter()
        for i in range(requests_n):
            plaintext = keys[i % node_count]
            with sessions() as s:
                node = s.scalar(select(Node).where(Node.api_key_id == parse_api_key(plaintext, NODE_KEY_PREFIX)))
                assert api_key_matches(plaintext, node.api_key_hash)
                build_signed_beacon(s, node.id, settings, presign, signing_key=key).model_dump_json()
        inproc_s = time.perf_counter() - started
        engine.dispose()
        return [
            BenchRow(AREA, f"GET /v1/models/beacon req/s ({node_count} nodes, uvicorn+PG, c=16)",
                     requests_n / http_s, "req/s", "in-process auth+query+sign+JSON req/s (1 thread)",
                     requests_n / inproc_s,
                     notes=f"{requests_n} requests, 1 uvicorn worker, 2-core machine shared"),
        ]
    finally:
        if server is not None:
            stop_process(server.proc)
        cluster.stop()


def run(ctx: BenchContext) -> list[BenchRow]:
    from noderr_local.seaweed import start_seaweed

    seaweed = start_seaweed(ctx.workdir / "seaweed", access_key_id="bench",
                            secret_access_key=secrets.token_hex(16))
    try:
        return bench_delivery(ctx, seaweed) + bench_beacon(ctx, seaweed)
    finally:
        seaweed.stop()
