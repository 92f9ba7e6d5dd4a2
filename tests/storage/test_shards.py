"""Deterministic WebDataset shards: byte-identical for the same input, limits, keys, and readers."""

from __future__ import annotations

import tarfile

import pytest
import webdataset as wds

from storage import ShardWriter, iter_shard, sha256_file


def _write(d, samples, **kw):
    with ShardWriter(lambda i: str(d / f"s-{i:03d}.tar"), **kw) as w:
        for key, members in samples:
            w.write(key, members)
    return w.shards


SAMPLES = [(f"src__rec-{i:03d}__m0-{i * 1000:07d}", {"json": b'{"i": %d}' % i, "flac": bytes([i]) * (700 + 90 * i)})
           for i in range(9)]


def test_same_input_gives_byte_identical_tars(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    sa, sb = _write(a, SAMPLES), _write(b, SAMPLES)
    assert [s.sha256 for s in sa] == [s.sha256 for s in sb] == [sha256_file(s.uri) for s in sa]
    with tarfile.open(sa[0].uri) as tf:
        infos = tf.getmembers()
    assert [i.name for i in infos][:4] == [f"{SAMPLES[0][0]}.flac", f"{SAMPLES[0][0]}.json",
                                           f"{SAMPLES[1][0]}.flac", f"{SAMPLES[1][0]}.json"]
    assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" and i.mode == 0o644 for i in infos)


def test_count_and_size_limits_roll_parts(tmp_path):
    by_count = _write(tmp_path, SAMPLES, max_samples=4)
    assert [s.n_samples for s in by_count] == [4, 4, 1]
    d = tmp_path / "size"
    d.mkdir()
    by_size = _write(d, SAMPLES, max_bytes=4096)
    assert sum(s.n_samples for s in by_size) == 9 and len(by_size) > 2
    for s in by_size:
        assert s.bytes <= 4096 + 10240 or s.n_samples == 1  # tar pads to 10 KiB records
    keys = [k for s in by_size for k, _ in iter_shard(s.uri)]
    assert keys == [k for k, _ in SAMPLES]


def test_keys_must_be_webdataset_safe(tmp_path):
    with ShardWriter(lambda i: str(tmp_path / f"x-{i}.tar")) as w:
        for bad in ("a.b", "a/b", "", "ఆ"):
            with pytest.raises(ValueError):
                w.write(bad, {"json": b"{}"})
        w.write("ok_key-1", {"json": b"{}"})
        with pytest.raises(ValueError, match="duplicate"):
            w.write("ok_key-1", {"json": b"{}"})


def test_plain_webdataset_reads_what_we_write(tmp_path):
    shards = _write(tmp_path, SAMPLES, max_samples=5)
    got = [(s["__key__"], s["json"]) for s in wds.WebDataset([x.uri for x in shards], shardshuffle=False)]
    assert got == [(k, m["json"]) for k, m in SAMPLES]


def test_failed_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(lambda i: str(tmp_path / f"y-{i}.tar")) as w:
            w.write("k1", {"json": b"{}"})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
