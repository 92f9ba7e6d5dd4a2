"""S3 through a fault-injecting proxy (tests/faultproxy.py) in front of moto's server, all on 127.0.0.1:
503 SlowDown, connection resets before and after the server acts, and delays are retried with backoff; large
objects go up in parts, so an interrupted upload resends a part, not the object."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest

import storage
import storage.uri as U
from manifests.io import manifest_uri, read_table
from tests.conftest import small_config
from tests.faultproxy import FaultProxy


@pytest.fixture()
def small_parts(monkeypatch):
    """Multipart from 6 MiB on, 5 MiB parts (S3's smallest), so a test file of a few MiB goes up in parts."""
    monkeypatch.setattr(U, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(U, "MULTIPART_CHUNK", 5 << 20)


def _via(endpoint: str):
    old = storage.current_options()
    storage.configure(storage.StorageOptions(endpoint_url=endpoint))
    return old


def test_large_upload_goes_multipart_and_survives_faults(s3_server, small_parts, tmp_path):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="mp-big")
    data = os.urandom(17 << 20)  # 4 parts: 5+5+5+2 MiB
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    with FaultProxy(s3_server, rate=0.5, seed=3, kinds=("slowdown", "drop", "reset_after")) as proxy:
        old = _via(proxy.url)
        try:
            storage.put_file(f, "s3://mp-big/shards/big.tar")  # a shard
            storage.write_bytes("s3://mp-big/ckpt/step-1.pt", data)  # a checkpoint, from memory
            assert hashlib.sha256(storage.read_bytes("s3://mp-big/shards/big.tar")).digest() == hashlib.sha256(data).digest()
            assert storage.read_bytes("s3://mp-big/ckpt/step-1.pt") == data
        finally:
            storage.configure(old)
    st = proxy.stats
    # two objects of four parts each (a reset after the server acted makes the client send one again)
    assert st.multipart_creates >= 2 and st.part_uploads >= 8
    assert sum(st.faults.values()) > 0 and st.reuploaded_part_bytes > 0
    # an interrupted part costs that part: far less than resending the object each time
    assert st.reuploaded_part_bytes <= st.faults["slowdown"] * (5 << 20) + (st.faults["drop"] + st.faults["reset_after"]) * (5 << 20)
    client = boto3.client("s3", endpoint_url=s3_server)
    assert [o["Key"] for o in client.list_objects_v2(Bucket="mp-big")["Contents"]] == ["ckpt/step-1.pt", "shards/big.tar"]
    # an upload whose "create" reply was lost stays open on the server, invisible to readers (a bucket lifecycle rule,
    # AbortIncompleteMultipartUpload, removes those; README "Cluster"); every other upload was completed or aborted
    assert len(client.list_multipart_uploads(Bucket="mp-big").get("Uploads", [])) == st.multipart_creates - 2
    print(f"\n[s3] 2 x 17 MiB in 5 MiB parts through faults {st.faults}: {st.reuploaded_part_bytes / 2**20:.1f} MiB of "
          f"parts re-uploaded (vs {2 * 17} MiB written)")


def test_small_object_puts_retry_slowdown_and_resets(s3_server, tmp_path):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="small")
    with FaultProxy(s3_server, rate=1.0, seed=1, max_per_request=2, kinds=("slowdown", "drop", "reset_after")) as proxy:
        old = _via(proxy.url)
        try:
            for i in range(5):  # every request faulted twice before it gets through
                storage.write_text(f"s3://small/k{i}.json", f'{{"i": {i}}}')
            assert [storage.read_text(f"s3://small/k{i}.json") for i in range(5)] == [f'{{"i": {i}}}' for i in range(5)]
            assert storage.list_files("s3://small") == [f"s3://small/k{i}.json" for i in range(5)]
        finally:
            storage.configure(old)
    assert proxy.stats.faults["slowdown"] > 0 and proxy.stats.faults["drop"] + proxy.stats.faults["reset_after"] > 0


def test_ingest_into_s3_through_faults_equals_an_unfaulted_run(ingested, s3_server, tmp_path):
    """The same six dialogs as the session's local run: through the faulty proxy the S3 run commits, _SUCCESS is the
    last write, nothing unlisted or half-uploaded is left, and its samples and shards equal the unfaulted run's."""
    from pipelines.ingest import run_ingest

    ref_cfg, _ = ingested
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="faulty")
    out = "s3://faulty/runs/a"
    with FaultProxy(s3_server, rate=0.15, seed=11) as proxy:
        cfg = small_config(out, tmp_path / "sources", storage=storage.StorageOptions(endpoint_url=proxy.url))
        old = storage.current_options()
        try:
            res = run_ingest(cfg, progress=False, say=lambda s: None)
            assert res.committed and not res.units_failed
            st = proxy.stats
            assert sum(st.faults.values()) > 0
            assert st.writes[-1] == ("PUT", "/faulty/runs/a/_SUCCESS")  # readers see the run only when complete
            listed = set(read_table(manifest_uri(out, "shards"), None).column("uri").to_pylist())
            assert set(storage.list_files(f"{out}/segments")) == listed  # no stray or partial shard objects

            def content(root: str) -> tuple:
                sm = read_table(manifest_uri(root, "samples"), None)
                sh = read_table(manifest_uri(root, "shards"), None)
                return (sorted(zip(sm.column("sample_id").to_pylist(), sm.column("sha256").to_pylist())),
                        sorted(sh.column("sha256").to_pylist()))

            storage.configure(storage.StorageOptions(endpoint_url=s3_server))
            assert content(out) == content(ref_cfg.out)  # nothing lost, nothing different
        finally:
            storage.configure(old)
    assert not boto3.client("s3", endpoint_url=s3_server).list_multipart_uploads(Bucket="faulty").get("Uploads")
    print(f"\n[s3] ingest through faults: {st.requests} requests, faults {st.faults}, "
          f"{st.reuploaded_bytes} upload bytes resent")
