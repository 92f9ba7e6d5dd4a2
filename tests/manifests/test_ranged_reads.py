"""The web page and `manifests sample` play one clip of a run on S3 with one ranged read of that sample's bytes
(moto's S3 over HTTP on 127.0.0.1); a manifest without ``tar_offset`` (written before) still plays, by a whole-shard
download."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from manifests_web_helpers import http, running

import storage
from manifests.io import manifest_uri, read_table, table_bytes
from manifests.rows import Sample, Shard
from matalu.cli import main


@pytest.fixture()
def s3_run(ingested, s3_server):
    """The ingested run copied to s3://ranged-run/run, its manifests naming the S3 shards; GetObject calls recorded
    as (key, range, bytes received)."""
    cfg, _ = ingested
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="ranged-run")
    old = storage.current_options()
    storage.configure(storage.StorageOptions(endpoint_url=s3_server))
    base = "s3://ranged-run/run"
    for f in storage.list_files(cfg.out, ".tar"):
        storage.write_bytes(base + f[len(cfg.out):], Path(f).read_bytes())
    for name, cls, col in (("samples", Sample, "shard"), ("shards", Shard, "uri")):
        t = read_table(manifest_uri(cfg.out, name), cls)
        t = t.set_column(t.schema.get_field_index(col), col,
                         pa.array([u.replace(cfg.out, base) for u in t.column(col).to_pylist()], pa.string()))
        storage.write_bytes(manifest_uri(base, name), table_bytes(t))
    calls: list[list] = []

    def params(params, **_):
        calls.append([params.get("Key"), params.get("Range"), None])

    def after(parsed, **_):
        calls[-1][2] = int(parsed.get("ContentLength") or 0)

    client = storage.uri._s3()
    client.meta.events.register("provide-client-params.s3.GetObject", params)
    client.meta.events.register("after-call.s3.GetObject", after)
    try:
        yield cfg, base, calls
    finally:
        client.meta.events.unregister("provide-client-params.s3.GetObject", params)
        client.meta.events.unregister("after-call.s3.GetObject", after)
        storage.configure(old)


def _tar_gets(calls):
    return [(r, n) for k, r, n in calls if k.endswith(".tar")]


@pytest.mark.parametrize("kind,channels,share", [("dialog", 2, 1 / 2), ("mono", 1, 1 / 8)])
def test_one_clip_is_one_ranged_read(s3_run, tmp_path, capsys, kind, channels, share):
    """The clip is the stored audio, and only its own bytes crossed the wire: a third of a dialog shard of three
    dialogs, a fifteenth of a mono shard (1/1000 of a full 256 MB shard of 1000 samples)."""
    cfg, base, calls = s3_run
    rows = read_table(manifest_uri(base, "samples"), Sample).to_pylist()
    row = next(r for r in rows if r["kind"] == kind)
    shard_bytes = next(s["bytes"] for s in read_table(manifest_uri(base, "shards"), Shard).to_pylist()
                       if s["uri"] == row["shard"])
    local = dict(storage.iter_shard(row["shard"].replace(base, cfg.out)))[row["sample_id"]]
    want, sr = sf.read(io.BytesIO(local["flac"]), dtype="int16", always_2d=True)
    assert row["tar_offset"] is not None and row["tar_bytes"] < shard_bytes * share

    with running(base) as srv:
        calls.clear()
        status, headers, body = http(srv.url + f"api/audio/{row['sample_id']}.wav")
        assert status == 200
        got, gsr = sf.read(io.BytesIO(body), dtype="int16", always_2d=True)
        assert gsr == sr == 16000 and got.shape == want.shape == (want.shape[0], channels) and (got == want).all()
        a, b = row["tar_offset"], row["tar_offset"] + row["tar_bytes"] - 1
        assert _tar_gets(calls) == [(f"bytes={a}-{b}", row["tar_bytes"])]

    calls.clear()
    out = tmp_path / "clip.wav"
    assert main(["manifests", "sample", base, row["sample_id"], "-o", str(out)]) == 0
    assert (sf.read(out, dtype="int16", always_2d=True)[0] == want).all()
    assert _tar_gets(calls) == [(f"bytes={a}-{b}", row["tar_bytes"])]
    capsys.readouterr()


def test_manifest_without_offsets_still_plays(s3_run):
    """A samples.parquet written before tar_offset/tar_bytes existed: the page downloads the shard once, as it did."""
    _, base, calls = s3_run
    t = pq.read_table(io.BytesIO(storage.read_bytes(manifest_uri(base, "samples"))))
    t = t.drop_columns(["tar_offset", "tar_bytes"])
    storage.write_bytes(manifest_uri(base, "samples"), table_bytes(t))
    row = next(r for r in t.to_pylist() if r["kind"] == "mono")
    shard_bytes = next(s["bytes"] for s in read_table(manifest_uri(base, "shards"), Shard).to_pylist()
                       if s["uri"] == row["shard"])
    with running(base) as srv:
        calls.clear()
        status, _, body = http(srv.url + f"api/audio/{row['sample_id']}.wav")
        assert status == 200 and sf.info(io.BytesIO(body)).channels == 1
        assert _tar_gets(calls) == [(None, shard_bytes)]
