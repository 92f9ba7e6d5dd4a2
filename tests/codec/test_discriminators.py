"""Adversarial parts of the codec: the multi-scale STFT discriminator learns to tell speech from a degraded copy,
and an adversarial training run logs its losses, checkpoints the discriminator and resumes it."""

from __future__ import annotations

import io

import pytest
import torch

import storage
from codec.discriminators import (
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    split_batch,
)
from codec.train import CodecTrainConfig, train_local
from storage.shards import segment_shards
from tests.codec.helpers import fixed_eval_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_and_losses_at_their_fixed_points():
    torch.manual_seed(0)
    d = MultiScaleSTFTDiscriminator(channels=8)
    x = 0.1 * torch.randn(3, 1, 8000)
    logits, feats = d(x)
    assert len(logits) == len(feats) == 3
    for lg, fm, n_fft in zip(logits, feats, (1024, 2048, 512)):
        frames, bins = 8000 // (n_fft // 4) + 1, n_fft // 2 + 1
        assert lg.shape[:3] == (3, 1, frames) and len(fm) == 5
        assert fm[0].shape[-1] == bins and fm[-1].shape[-1] == (bins + 7) // 8  # three stride-2 layers over bins
    with torch.no_grad():
        (lr, fr), (lf, ff) = split_batch(*d(torch.cat([x, x])), 3)
    assert feature_matching_loss(fr, ff).item() == pytest.approx(0.0, abs=1e-6)  # same input, same features
    big = [torch.full((2, 1, 4, 4), 5.0)]
    assert float(discriminator_loss(big, [-t for t in big])) == 0.0  # confident and right: no hinge loss
    assert float(generator_adv_loss(big)) == 0.0 and float(generator_adv_loss([-t for t in big])) == 6.0


def test_discriminator_learns_real_from_noised(ingested):
    """Real speech crops vs the same crops with white noise (~10 dB SNR): the hinge loss falls from 2 (logits
    near 0 at initialisation) as the discriminator learns to score real above fake."""
    cfg, _ = ingested
    real = fixed_eval_batch(segment_shards(cfg.out), n=4, seconds=0.25)
    torch.manual_seed(1)
    fake = real + 0.03 * torch.randn_like(real)
    torch.manual_seed(0)
    d = MultiScaleSTFTDiscriminator(channels=8)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.9))
    losses = []
    for _ in range(80):
        (lr, _), (lf, _) = split_batch(*d(torch.cat([real, fake])), real.shape[0])
        loss = discriminator_loss(lr, lf)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # measured on synthetic Telugu: 2.00 at the start -> 1.31 after 80 steps
    assert losses[0] > 1.95 and min(losses[-5:]) < 1.6, losses[::8]
    with torch.no_grad():
        (lr, _), (lf, _) = split_batch(*d(torch.cat([real, fake])), real.shape[0])
    assert all(float(r.mean()) > float(f.mean()) for r, f in zip(lr, lf))


def test_adversarial_training_logs_checkpoints_and_resumes(ingested, tmp_path):
    cfg, _ = ingested
    out = str(tmp_path / "adv")
    tcfg = CodecTrainConfig(size="tiny", batch_size=2, segment_s=0.32, lr=3e-3, pool_size=8, adversarial=True,
                            disc_channels=8, disc_start=2, ckpt_every=1000)
    res = train_local(tcfg, cfg.out, 4, out=out)
    assert [("adv" in h, "disc" in h) for h in res.history] == [(False, False)] * 2 + [(True, True)] * 2
    last = res.history[-1]
    for k in ("adv", "feat", "disc", "mel", "loss"):
        assert torch.isfinite(torch.tensor(last[k])), (k, last)
    assert last["loss"] > last["mel"]  # the adversarial terms are part of the codec's loss
    ck = torch.load(io.BytesIO(storage.read_bytes(f"{out}/checkpoints/step-0000004/codec.pt")), weights_only=True)
    assert set(ck) >= {"model", "optimizer", "discriminator", "disc_optimizer"}
    saved = {k: v.clone() for k, v in ck["discriminator"].items()}

    # resume: the discriminator comes back from the checkpoint, and it keeps learning
    res2 = train_local(tcfg, cfg.out, 5, out=out)
    assert res2.resumed_from == 4 and len(res2.history) == 1 and "disc" in res2.history[0]
    ck2 = torch.load(io.BytesIO(storage.read_bytes(f"{out}/checkpoints/step-0000005/codec.pt")), weights_only=True)
    moved = [k for k in saved if not torch.equal(saved[k], ck2["discriminator"][k])]
    assert moved, "the resumed discriminator did not train"
    # and the codec checkpoint still loads as a plain codec
    from codec.adapters import load_codec

    assert load_codec(f"{out}/checkpoints/step-0000005/codec.pt", "cpu").codec_id == ck2["codec_id"]
