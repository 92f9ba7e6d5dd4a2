"""The streaming encode pipeline (pipelines/encode_stream.py) against the actor-per-unit path on the same input:
byte-identical token shards and manifests, resume after a lost or half-written unit, more actors than units."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import storage
from manifests.io import manifest_uri, read_rows
from manifests.rows import Sample, Shard
from pipelines.encode import BatchEncoder, EncodeConfig, code_change, pad_batch, run_encode, uses_pipeline
from pipelines.encode_stream import plan_resources


def _shards(root: str) -> dict[str, str]:
    return {u[len(root):]: storage.sha256_bytes(storage.read_bytes(u)) for u in storage.list_files(root, ".tar")}


def _rows(root: str, table: str, cls) -> list[dict]:
    rows = [r.__dict__ for r in read_rows(manifest_uri(root, table), cls)]
    for r in rows:
        for k in ("shard", "uri"):
            if k in r:
                r[k] = r[k][len(root):]
        r.pop("created_by", None)
    return sorted(rows, key=lambda r: str(r.get("sample_id") or r.get("uri")))


@pytest.fixture(scope="module")
def old_and_new(ingested, tiny_ckpt, tmp_path_factory):
    cfg, _ = ingested
    ckdir, model = tiny_ckpt
    d = tmp_path_factory.mktemp("enc")
    old = run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=str(d / "old"), num_workers=2, pipeline=False,
                                  batch_seconds=20.0))
    new = run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=str(d / "new"), num_workers=2, pipeline=True,
                                  batch_seconds=20.0))
    assert old.committed and new.committed and old.codec_id == new.codec_id == model.codec_id
    return cfg, ckdir, old, new


def test_pipeline_tokens_byte_identical_to_actor_per_unit(old_and_new):
    _, _, old, new = old_and_new
    assert old.units_total == new.units_total >= 2 and new.units_processed == new.units_total
    a, b = _shards(old.out), _shards(new.out)
    assert a and a == b  # same shard paths, same bytes
    for table, cls in (("samples", Sample), ("shards", Shard)):
        assert _rows(old.out, table, cls) == _rows(new.out, table, cls)
    assert old.counts == new.counts


def test_pipeline_resumes_a_unit_killed_mid_write(old_and_new):
    """A run killed while writing a unit leaves its token shard half written and no _DONE: the rerun redoes that
    unit only, and every shard ends byte-identical to the uninterrupted run."""
    cfg, ckdir, _, new = old_and_new
    root = new.out
    before = _shards(root)
    done = sorted(storage.list_files(f"{root}/manifests/parts", "_DONE"))
    victim = json.loads(storage.read_text(done[0]))["shards"][0]
    storage.remove(done[0])
    storage.write_bytes(victim, storage.read_bytes(victim)[:1000])
    assert _shards(root) != before
    res = run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=root.rsplit("/tokens/", 1)[0], num_workers=1,
                                  pipeline=True, batch_seconds=20.0))
    assert res.committed and not res.noop
    assert res.units_processed == 1 and res.units_skipped == len(done) - 1
    assert _shards(root) == before


def test_more_actors_than_units(one_mono_shard, tiny_ckpt, tmp_path):
    ckdir, _ = tiny_ckpt
    outs = {}
    for pipeline, workers in ((False, 1), (True, 2)):
        res = run_encode(EncodeConfig(segments=str(one_mono_shard), codec=ckdir, out=str(tmp_path / f"o{pipeline}"),
                                      num_workers=workers, pipeline=pipeline, batch_seconds=5.0))
        assert res.committed and res.units_total == 1 and res.counts["samples"] > 0
        outs[pipeline] = _shards(res.out)
    assert outs[True] == outs[False]


def test_a_bad_shard_fails_alone(one_mono_shard, tiny_ckpt, tmp_path):
    """A segment shard the codec cannot take (8 kHz audio) is reported as that unit's failure; the other unit is
    committed, and the run is not (no _SUCCESS)."""
    ckdir, _ = tiny_ckpt
    seg = one_mono_shard / "segments" / "synthetic" / "mono"
    (src,) = seg.glob("*.tar")
    with storage.ShardWriter(lambda _i: str(seg / "bad.tar")) as w:
        key, members = next(iter(storage.iter_shard(str(src))))
        meta = json.loads(members["json"])
        meta["sample_rate"] = 8000
        w.write(key, {**members, "json": json.dumps(meta).encode()})
    res = run_encode(EncodeConfig(segments=str(one_mono_shard), codec=ckdir, out=str(tmp_path / "o"), num_workers=2,
                                  batch_seconds=5.0), say=lambda s: None)
    assert not res.committed and res.units_failed == ["synthetic-mono-bad"] and res.units_processed == 1
    assert not storage.exists(f"{res.out}/_SUCCESS")
    assert len(storage.list_files(f"{res.out}/manifests/parts", "_DONE")) == 1


def test_plan_resources_never_oversubscribes():
    cfg = EncodeConfig()
    for cpus in (1, 2, 8):
        for workers in (None, 1, 2, 3, 16):
            n, threads, actor, side = plan_resources(cfg, workers, cpus, 0, False)
            assert 1 <= n <= cpus and n * threads <= cpus
            assert n * actor + side <= cpus  # room for at least one decode/write task beside the actors
    n, threads, actor, side = plan_resources(cfg, 4, 16, 2, True)
    assert (n, actor, side) == (2, 1.0, 1.0)  # one actor per GPU at most


def test_pipeline_on_gpus_actor_per_unit_on_cpus_unless_asked():
    """The default follows the measurement (RESULTS.md [14]): the streaming pipeline where a GPU would otherwise wait
    on its actor's own FLAC decoding, one actor per unit on CPUs; --pipeline / --actor-per-unit choose."""
    from matalu.cli import build_parser

    assert uses_pipeline(None, use_gpu=True) and not uses_pipeline(None, use_gpu=False)
    assert uses_pipeline(True, use_gpu=False) and not uses_pipeline(False, use_gpu=True)
    parse = build_parser()[0].parse_args
    assert parse(["encode", "--segments", "S", "--codec", "C", "--out", "O"]).pipeline is None
    assert parse(["encode", "--segments", "S", "--codec", "C", "--out", "O", "--pipeline"]).pipeline is True
    assert parse(["encode", "--segments", "S", "--codec", "C", "--out", "O", "--actor-per-unit"]).pipeline is False
    with pytest.raises(SystemExit):
        parse(["encode", "--segments", "S", "--codec", "C", "--out", "O", "--pipeline", "--actor-per-unit"])


def test_bf16_and_fp32_code_change_measurement(tiny_ckpt):
    """The flags that may change codes (bf16 autocast) are measured by comparing codes: fp32 twice agrees exactly,
    bf16 changes some codes but keeps shapes (on CPU here; benchmarks/encode.py reports the fraction on GPU)."""
    ckdir, _ = tiny_ckpt
    g = torch.Generator().manual_seed(0)
    x = pad_batch([0.1 * torch.randn(n, generator=g).numpy() for n in (8000, 12000)], 320)
    ref = BatchEncoder(EncodeConfig(codec=ckdir), "cpu")
    assert code_change(ref, BatchEncoder(EncodeConfig(codec=ckdir), "cpu"), x) == 0.0
    frac = code_change(ref, BatchEncoder(EncodeConfig(codec=ckdir, precision="bf16"), "cpu"), x)
    assert 0.0 < frac < 1.0
    with pytest.raises(ValueError, match="precision"):
        EncodeConfig(precision="fp16")
    assert np.array_equal(ref.encode(x), ref.encode(x))
