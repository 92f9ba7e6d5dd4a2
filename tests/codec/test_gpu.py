"""GPU checks for the codec (skipped without CUDA; run them where a GPU is lent: `pytest -m "" tests/codec/test_gpu.py`).

They check what the CPU suite cannot: the codec on CUDA gives the CPU's codes, bf16 autocast training (with the
discriminator) stays finite and learns, and the encode job runs its actors with ``num_gpus=1``."""

from __future__ import annotations

import pytest
import torch

from codec.model import CodecConfig, CodecModel
from codec.train import CodecTrainConfig, train_local
from storage.shards import segment_shards
from tests.codec.helpers import fixed_eval_batch, measure_mel_distance

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_codes_match_cpu_and_streaming_matches_batch():
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.preset("base")).eval()
    x = 0.1 * torch.randn(2, 1, 16000 * 3)
    cpu = m.encode(x)
    gpu = m.to("cuda").encode(x.cuda()).cpu()
    assert (cpu == gpu).float().mean() > 0.98  # float rounding may flip near-ties
    st = m.init_encode_state(2)
    parts = []
    for i in range(0, x.shape[-1], 1280):  # 80 ms chunks
        c, st = m.encode_step(x[..., i:i + 1280].cuda(), st)
        parts.append(c)
    assert (torch.cat(parts, -1).cpu() == gpu).float().mean() > 0.98


def test_bf16_adversarial_training_on_gpu(ingested, tmp_path):
    cfg, _ = ingested
    ev = fixed_eval_batch(segment_shards(cfg.out), n=8, seconds=1.0)
    tcfg = CodecTrainConfig(size="tiny", batch_size=8, segment_s=0.32, lr=3e-3, pool_size=32, adversarial=True,
                            disc_channels=8, disc_start=20, use_gpu=True, bf16=True)
    torch.manual_seed(0)
    before = measure_mel_distance(CodecModel(tcfg.codec_config()), ev)
    res = train_local(tcfg, cfg.out, 60, out=str(tmp_path / "gpu"), device="cuda")
    after = measure_mel_distance(res.model.cpu(), ev)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    assert "disc" in res.history[-1] and before - after > 0.1, (before, after)


def test_encode_job_on_gpu_actors(ingested, tmp_path):
    from codec.train import save_checkpoint
    from pipelines.encode import EncodeConfig, run_encode

    cfg, _ = ingested
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.preset("tiny")).eval()
    save_checkpoint(str(tmp_path / "ck"), m, None, 0, CodecTrainConfig(size="tiny"))
    res = run_encode(EncodeConfig(segments=cfg.out, codec=str(tmp_path / "ck"), out=str(tmp_path / "out"),
                                  use_gpu=True))
    assert res.committed and res.counts["samples"] > 0
