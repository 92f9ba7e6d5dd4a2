"""The encode job over the ingested fixture's segment shards: token shards, manifests, resume, BYO codecs."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

import storage
from manifests.io import manifest_uri, read_rows
from manifests.rows import Reject, Sample, Shard
from pipelines.encode import EncodeConfig, run_encode, tokens_root
from storage.audio import read_sample
from tests.codec.helpers import frames_for_duration


def _tokens(root: str) -> dict[str, tuple[str, dict, np.ndarray]]:
    out = {}
    for uri in storage.list_files(root, ".tar"):
        for key, m in storage.iter_shard(uri):
            assert sorted(m) == ["codes.npy", "json"]
            out[key] = (uri, json.loads(m["json"]), np.load(io.BytesIO(m["codes.npy"])))
    return out


def test_encode_job(ingested, tiny_ckpt, tmp_path):
    cfg, _ = ingested
    ckdir, model = tiny_ckpt
    out = str(tmp_path / "enc")
    res = run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=out, num_workers=2))
    assert res.committed and res.codec_id == model.codec_id
    root = tokens_root(out, model.codec_id)
    assert res.out == root and storage.exists(f"{root}/_SUCCESS")
    toks = _tokens(root)
    seg = {}
    for uri in storage.list_files(f"{cfg.out}/segments", ".tar"):
        for key, m in storage.iter_shard(uri):
            seg[key] = (uri, *read_sample(m))
    assert set(toks) == set(seg)
    Q = model.num_codebooks
    for key, (turi, meta, codes) in toks.items():
        suri, smeta, audio = seg[key]
        # token shard path mirrors the segment shard path under tokens/<codec_id>/
        assert turi == suri.replace(f"{cfg.out}/segments", root)
        # frame rule: ceil(samples / 320) == ceil(duration_s × 50)
        frames = math.ceil(audio.shape[1] / 320)
        assert frames == frames_for_duration(smeta["duration_s"], 50.0) == math.ceil(round(smeta["duration_s"] * 50, 6))
        assert codes.dtype == np.int16 and codes.shape == (audio.shape[0] * Q, frames)
        assert meta["frames"] == frames and meta["codec_id"] == model.codec_id and meta["frame_rate"] == 50.0
        assert meta["sample_id"] == smeta["sample_id"] and meta["kind"] == smeta["kind"]
    # a dialog keeps both channels, channel 0 first; batched codes equal this clip encoded alone (near-ties aside)
    key = next(k for k, v in seg.items() if v[1]["kind"] == "dialog")
    audio = seg[key][2]
    assert audio.shape[0] == 2
    for c in range(2):
        alone = model.encode(torch.from_numpy(audio[c])[None, None])[0].numpy()
        assert (toks[key][2][c * Q:(c + 1) * Q] == alone).mean() > 0.98

    # manifests reconcile with the tar contents
    samples = read_rows(manifest_uri(root, "samples"), Sample)
    shards = read_rows(manifest_uri(root, "shards"), Shard)
    assert sorted(s.sample_id for s in samples) == sorted(toks)
    assert all(s.codec_id == model.codec_id and s.shard == toks[s.sample_id][0] for s in samples)
    assert sorted(s.uri for s in shards) == sorted({v[0] for v in toks.values()})
    for sh in shards:
        data = storage.read_bytes(sh.uri)
        assert sh.kind == "tokens" and sh.codec_id == model.codec_id
        assert sh.bytes == len(data) and sh.sha256 == storage.sha256_bytes(data)
        assert sh.n_samples == sum(1 for v in toks.values() if v[0] == sh.uri)

    # rerun: nothing to do; lose one unit's marker: only that unit is redone, byte-identical
    assert run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=out)).noop
    done = storage.list_files(f"{root}/manifests/parts", "_DONE")
    redo = done[0]
    before = {u: storage.sha256_bytes(storage.read_bytes(u)) for u in storage.list_files(root, ".tar")}
    storage.remove(redo)
    res3 = run_encode(EncodeConfig(segments=cfg.out, codec=ckdir, out=out, num_workers=1))
    assert res3.committed and res3.units_processed == 1 and res3.units_skipped == len(done) - 1
    assert before == {u: storage.sha256_bytes(storage.read_bytes(u)) for u in storage.list_files(root, ".tar")}


class FrameStatsCodec(torch.nn.Module):
    """A bring-your-own codec written by hand: per 20 ms frame, mu-law codes of its mean and peak."""

    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = 16000
        self.frame_rate = 50.0
        self.num_codebooks = 2
        self.codebook_size = 256
        self.hop = 320

    def _mulaw(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sign(x) * torch.log1p(255.0 * x.abs().clamp(max=1.0)) / math.log(256.0)
        return ((y + 1.0) * 127.5).round().clamp(0, 255).long()

    @torch.jit.export
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        wav = torch.nn.functional.pad(wav, (0, (-wav.shape[-1]) % self.hop))
        fr = wav.reshape(wav.shape[0], -1, self.hop)
        return torch.stack([self._mulaw(fr.mean(-1)), self._mulaw(fr.abs().amax(-1))], 1)

    @torch.jit.export
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        y = codes[:, 1].float() / 127.5 - 1.0
        amp = torch.sign(y) * (torch.pow(256.0, y.abs()) - 1.0) / 255.0
        return amp.repeat_interleave(self.hop, dim=-1)[:, None]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encode(wav)


def test_bring_your_own_torchscript_codec(one_mono_shard, tmp_path):
    ts = tmp_path / "byo.pt"
    torch.jit.script(FrameStatsCodec()).save(str(ts))
    # a smaller input: one mono segment shard, laid out as <segments>/<source>/<kind>/
    res = run_encode(EncodeConfig(segments=str(one_mono_shard), codec=str(ts), out=str(tmp_path / "out")))
    assert res.committed and res.codec_id.startswith("ts-") and len(res.codec_id) == 15
    toks = _tokens(res.out)
    assert len(toks) == res.counts["samples"] > 0
    for _uri, meta, codes in toks.values():
        assert codes.shape == (2, frames_for_duration(meta["duration_s"], 50.0)) and codes.max() < 256
    rows = read_rows(manifest_uri(res.out, "samples"), Sample)
    assert {r.codec_id for r in rows} == {res.codec_id}


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "actor-per-unit"])
def test_exclude_license_leaves_samples_out_as_rejects(one_mono_shard, tmp_path, pipeline):
    """One segment shard whose every other sample is re-licensed CC-BY-NC: those become rejects, the rest tokens;
    dropping the filter redoes the unit and encodes everything."""
    ts = tmp_path / "byo.pt"
    torch.jit.script(FrameStatsCodec()).save(str(ts))
    seg = one_mono_shard / "segments" / "synthetic" / "mono"
    (src,) = seg.glob("*.tar")
    nc = set()
    with storage.ShardWriter(lambda _i: str(seg / "mixed.tar")) as w:
        for i, (key, members) in enumerate(storage.iter_shard(str(src))):
            meta = json.loads(members["json"])
            if i % 2:
                meta["license"] = "CC-BY-NC-4.0"
                nc.add(key)
            w.write(key, {**members, "json": json.dumps(meta).encode()})
    src.unlink()
    keys = {k for k, _ in storage.iter_shard(str(seg / "mixed.tar"))}
    assert nc and keys - nc

    ecfg = EncodeConfig(segments=str(one_mono_shard), codec=str(ts), out=str(tmp_path / "out"), num_workers=1,
                        exclude_licenses=["cc-by-nc*"], pipeline=pipeline)
    res = run_encode(ecfg)
    assert res.committed
    toks = _tokens(res.out)
    rejects = read_rows(manifest_uri(res.out, "rejects"), Reject)
    assert set(toks) == keys - nc
    assert {r.item for r in rejects} == nc and len(rejects) == len(nc)
    assert {(r.stage, r.reason, r.source) for r in rejects} == {("encode", "license_excluded", "synthetic")}
    assert all("CC-BY-NC-4.0" in r.detail and r.seconds > 0 for r in rejects)
    assert {s.sample_id for s in read_rows(manifest_uri(res.out, "samples"), Sample)} == keys - nc

    ecfg.exclude_licenses = []
    res2 = run_encode(ecfg)
    assert res2.committed and res2.units_processed == 1 and not res2.noop
    assert set(_tokens(res2.out)) == keys
    assert read_rows(manifest_uri(res2.out, "rejects"), Reject) == []
