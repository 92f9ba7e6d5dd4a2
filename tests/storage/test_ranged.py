"""Ranged reads: ``storage.read_range`` on local files and S3 (moto over HTTP on 127.0.0.1), and a sample's members
read back from the span ``ShardWriter.location`` recorded."""

from __future__ import annotations

import random

import boto3
import pytest

import storage
from storage import ShardWriter, iter_shard, read_sample_at

SAMPLES = [(f"k{i:03d}" + ("x" * 120 if i == 3 else ""),  # one key past tar's 100-character name field
            {"flac": random.Random(i).randbytes(500 + 977 * i), "json": b'{"i": %d}' % i}) for i in range(12)]


def _write(uri_of):
    with ShardWriter(uri_of, max_samples=5) as w:
        for key, members in SAMPLES:
            w.write(key, members)
    return w, w.shards


def test_spans_read_back_each_sample_locally(tmp_path):
    w, shards = _write(lambda i: str(tmp_path / f"s-{i}.tar"))
    assert [s.n_samples for s in shards] == [5, 5, 2]
    for key, members in SAMPLES:
        uri, off, n = w.location(key)
        assert read_sample_at(uri, off, n, key) == members
        assert n < sum(s.bytes for s in shards) / 4
    # the spans tile each tar up to its end-of-archive blocks, in key order
    for s in shards:
        assert [k for k, _ in iter_shard(s.uri)] == s.keys
        ends = [o + n for o, n in s.spans]
        assert [o for o, _ in s.spans] == [0] + ends[:-1] and s.bytes - ends[-1] >= 1024

    uri, off, n = w.location(SAMPLES[1][0])
    with pytest.raises(ValueError, match="hold 'k001', not 'k000'"):
        read_sample_at(uri, off, n, SAMPLES[0][0])
    with pytest.raises(ValueError, match="shorter than the manifest says"):
        storage.read_range(uri, off, 10 ** 9)
    with pytest.raises(ValueError, match="not sample"):
        read_sample_at(uri, off + 512, n - 512, SAMPLES[1][0])  # a span that does not start at a header
    assert storage.read_range(uri, 5, 0) == b""


def test_ranged_reads_on_s3(s3_server):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="ranged")
    old = storage.current_options()
    storage.configure(storage.StorageOptions(endpoint_url=s3_server))
    got: list[int] = []

    def count(parsed, **_):
        got.append(int(parsed.get("ContentLength") or 0))

    client = storage.uri._s3()
    client.meta.events.register("after-call.s3.GetObject", count)
    try:
        w, shards = _write(lambda i: f"s3://ranged/run/s-{i}.tar")
        key, members = SAMPLES[7]
        uri, off, n = w.location(key)
        assert uri == "s3://ranged/run/s-1.tar"
        assert read_sample_at(uri, off, n, key) == members
        assert got == [n]  # one GET of the span only
        whole = storage.read_bytes(uri)
        assert storage.read_range(uri, 100, 50) == whole[100:150]
        with pytest.raises(ValueError, match="shorter than the manifest says"):
            storage.read_range(uri, len(whole) - 10, 20)
        with pytest.raises(ValueError, match="shorter than the manifest says"):
            storage.read_range(uri, len(whole) + 10, 20)  # S3 answers 416 here
        with pytest.raises(FileNotFoundError):
            storage.read_range("s3://ranged/run/none.tar", 0, 10)
    finally:
        client.meta.events.unregister("after-call.s3.GetObject", count)
        storage.configure(old)
