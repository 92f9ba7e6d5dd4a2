"""The same job writing to S3 (moto's server on 127.0.0.1, over real HTTP), read back through the API."""

from __future__ import annotations

import hashlib
import io
import json

import boto3
import soundfile as sf

import storage
from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Sample, Shard
from tests.conftest import small_config


def test_ingest_to_s3_and_read_back(ray_session, s3_server, tmp_path, synthetic_small, capsys):
    from matalu.cli import main
    from pipelines.ingest import run_ingest

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="matalu-test")
    out = "s3://matalu-test/runs/demo"
    cfg = small_config(out, tmp_path / "sources", storage=storage.StorageOptions(endpoint_url=s3_server))
    old = storage.current_options()
    try:
        res = run_ingest(cfg, progress=False)
        assert res.committed and res.counts["samples"] > 0
        assert storage.exists(f"{out}/_SUCCESS")
        shards = read_rows(manifest_uri(out, "shards"), Shard)
        samples = {s.sample_id: s for s in read_rows(manifest_uri(out, "samples"), Sample)}
        assert shards and all(s.uri.startswith(f"{out}/segments/synthetic/") for s in shards)
        listed = storage.list_files(f"{out}/segments", ".tar")
        assert sorted(s.uri for s in shards) == listed
        seen = 0
        for sh in shards:
            assert hashlib.sha256(storage.read_bytes(sh.uri)).hexdigest() == sh.sha256
            for key, members in storage.iter_shard(sh.uri):
                assert hashlib.sha256(members["flac"]).hexdigest() == samples[key].sha256
                audio, sr = sf.read(io.BytesIO(members["flac"]), always_2d=True)
                assert sr == 16000 and audio.shape[1] == json.loads(members["json"])["channels"]
                seen += 1
        assert seen == len(samples)
        # the CLI browses the S3 manifests too
        capsys.readouterr()
        assert main(["manifests", "stats", out, "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["n_samples"] == len(samples) and st["n_shards"] == len(shards)
        # rerun against S3 is a no-op
        assert run_ingest(cfg, progress=False).noop
    finally:
        storage.configure(old)
