"""The audio LM: shapes for any Q with and without text, delays applied inside, causality, loss on the system
codebooks only (per stream), masks, the mono user-silence id, FLOP count, clear errors; tiny overfits one batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lm_helpers import random_batch, tiny_lm
from torch import nn

from lm import LMBatch, LMConfig, mono_user_stream
from lm.model import matmul_params_per_frame

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("q", [4, 8])
@pytest.mark.parametrize("text_vocab", [0, 40])
def test_shapes_follow_the_config(q, text_vocab):
    m = tiny_lm(q=q, text_vocab=text_vocab)
    b = random_batch(m.cfg, b=3, t=17)
    out = m(b)
    assert out.audio_logits.shape == (3, q, 17, 32)
    if text_vocab:
        assert out.text_logits.shape == (3, 17, text_vocab)
    else:
        assert out.text_logits is None
    loss = m.loss(b)
    keys = {"audio", *(f"audio_cb{k}" for k in range(q))} | ({"text"} if text_vocab else set())
    assert set(loss.per_stream) == keys and set(loss.counts) == keys
    # only the Q system codebooks are targets: every real frame once, minus the positions a delay shifted in
    assert loss.counts["audio_cb0"] == 3 * 17 and loss.counts["audio_cb1"] == 3 * 16
    assert loss.counts["audio"] == sum(loss.counts[f"audio_cb{k}"] for k in range(q))
    # an untrained model is near chance on every stream
    for k in range(q):
        assert abs(loss.per_stream[f"audio_cb{k}"] - math.log(32)) < 0.5
    if text_vocab:
        assert abs(loss.per_stream["text"] - math.log(text_vocab)) < 0.5
        assert torch.isclose(loss.total, torch.tensor(loss.per_stream["audio"] + loss.per_stream["text"]))


def test_delays_are_applied_inside_the_model():
    m = tiny_lm(q=4, text_vocab=40, delays=[0, 1, 2, 2], text_delay=1)
    b = random_batch(m.cfg, b=2, t=10)
    tgt, ok, ttgt, tok = m.targets(b)
    for k, d in enumerate([0, 1, 2, 2]):
        assert torch.equal(tgt[:, k, d:], b.codes[:, k, : 10 - d]) and not ok[:, k, :d].any() and ok[:, k, d:].all()
    assert torch.equal(ttgt[:, 1:], b.text[:, :9]) and not tok[:, 0].any()
    audio_in, _ = m.delayed(b)
    assert (audio_in[:, 2, :2] == m.cfg.audio_initial_id).all()  # the initial token fills shifted-in positions
    assert (audio_in[:, 4 + 3, :2] == m.cfg.audio_initial_id).all()  # user codebooks are delayed alike


@pytest.mark.parametrize("row", [0, 1, 5])
def test_a_frame_influences_only_later_positions(row):
    """Changing one token of frame f (stream row, delay d) leaves every prediction at delayed positions before
    f + d untouched, and at f + d only the depth steps after that codebook may change (teacher forcing)."""
    m = tiny_lm(q=4, text_vocab=40)
    b = random_batch(m.cfg, b=1, t=12)
    f, d = 5, m.cfg.codebook_delays[row % 4]
    codes = b.codes.clone()
    codes[0, row, f] = (codes[0, row, f] + 1) % 32
    with torch.no_grad():
        o1, o2 = m(b), m(LMBatch(codes, b.text))
    p = f + d
    assert torch.allclose(o1.audio_logits[:, :, :p], o2.audio_logits[:, :, :p])
    assert torch.allclose(o1.text_logits[:, : p + 1], o2.text_logits[:, : p + 1])
    first = row + 1 if row < 4 else 4  # system codebook row feeds depth steps row+1.. at position p
    assert torch.allclose(o1.audio_logits[:, :first, p], o2.audio_logits[:, :first, p])
    assert not torch.allclose(o1.audio_logits[:, :, p + 1], o2.audio_logits[:, :, p + 1])


def test_mask_excludes_frames_from_the_loss():
    m = tiny_lm(q=4, text_vocab=40)
    b = random_batch(m.cfg, b=2, t=16, mask=True)  # sample 0's last 4 frames are padding
    loss = m.loss(b)
    assert loss.counts["audio_cb0"] == 2 * 16 - 4 and loss.counts["text"] == 2 * 16 - 4
    codes, text = b.codes.clone(), b.text.clone()
    # padding frames after the last real frame's delayed codebooks (its cb1 is predicted at position 12, and the
    # depth transformer there is conditioned on position 12's cb0, i.e. the first padding frame)
    codes[0, :, 13:] = torch.randint(0, 32, (8, 3))
    text[0, 13:] = torch.randint(0, 40, (3,))
    again = m.loss(LMBatch(codes, text, b.mask))
    assert again.per_stream == pytest.approx(loss.per_stream)


def test_text_padding_weight_and_first_codebook_weight():
    m = tiny_lm(q=4, text_vocab=40)
    b = random_batch(m.cfg, b=2, t=16)
    text = b.text.clone()
    text[:, ::2] = m.cfg.text_pad_id
    base = m.loss(LMBatch(b.codes, text)).per_stream
    m.cfg.text_padding_weight, m.cfg.first_codebook_weight = 0.0, 1.0
    out = m(LMBatch(b.codes, text))
    ce = torch.nn.functional.cross_entropy(out.text_logits.reshape(-1, 40), text.reshape(-1), reduction="none")
    keep = text.reshape(-1) != m.cfg.text_pad_id
    got = m.loss(LMBatch(b.codes, text)).per_stream
    assert got["text"] == pytest.approx(float(ce[keep].mean().detach()), rel=1e-5)
    assert got["audio"] == pytest.approx(float(np.average([got[f"audio_cb{k}"] for k in range(4)],
                                                         weights=[32, 30, 30, 30])), rel=1e-5)
    assert base["audio_cb0"] == pytest.approx(got["audio_cb0"])


def test_mono_samples_use_the_user_silence_id():
    m = tiny_lm(q=4)
    system = np.random.default_rng(0).integers(0, 32, (4, 9)).astype(np.int16)  # as a mono token shard holds it
    both = mono_user_stream(system, m.cfg)
    assert both.shape == (8, 9) and both.dtype == np.int16 and (both[4:] == 33).all() and (both[:4] == system).all()
    tboth = mono_user_stream(torch.from_numpy(system).long()[None], m.cfg)
    assert torch.equal(tboth[0], torch.from_numpy(both).long())
    loss = m.loss(LMBatch(tboth))
    assert math.isfinite(loss.per_stream["audio"])


def test_clear_errors():
    m = tiny_lm(q=4, text_vocab=40)
    b = random_batch(m.cfg)
    with pytest.raises(ValueError, match=r"codes must be \[B, 2Q=8, T\]"):
        m(LMBatch(b.codes[:, :4], b.text))
    with pytest.raises(ValueError, match="needs text tokens"):
        m(LMBatch(b.codes))
    bad = b.codes.clone()
    bad[0, 0, 0] = 33
    with pytest.raises(ValueError, match="system codes must be real codec codes 0..31"):
        m.loss(LMBatch(bad, b.text))
    with pytest.raises(ValueError, match="no text stream"):
        tiny_lm(q=4)(LMBatch(b.codes, b.text))


@pytest.mark.parametrize("per_step", [True, False])
def test_flops_count_the_weights_a_frame_multiplies(per_step):
    m = tiny_lm(q=4, text_vocab=40, depth_per_step_weights=per_step)
    temporal, depth = m.matmul_params_per_frame()
    linears = sum(mod.weight.numel() for mod in m.temporal.modules() if isinstance(mod, nn.Linear))
    assert temporal == linears + m.text_head.weight.numel()
    step_weights = sum(p.numel() for n, p in m.depth.named_parameters() if n.endswith("proj.weight"))
    per_frame_depth = step_weights if per_step else 4 * step_weights  # per-step weights: each step uses its own
    assert depth == per_frame_depth + m.depth_in.weight.numel() + m.depth_head.weight.numel()
    assert m.flops_per_frame(training=True) == 3 * m.flops_per_frame(training=False)
    assert m.flops_per_frame(context=256) > m.flops_per_frame(context=128)


def test_presets_sizes():
    """The presets are the sizes they are named for (matmul weights a frame uses, counted as the test above checks
    against the real modules; building 1b itself is for the GPU benchmark)."""
    t125, d125 = matmul_params_per_frame(LMConfig.preset("125m"))
    t1b, d1b = matmul_params_per_frame(LMConfig.preset("1b"))
    assert 80e6 < t125 < 90e6 and 0.85e9 < t1b < 1.0e9
    assert d125 < t125 / 2 and d1b < t1b / 4


def test_tiny_overfits_one_batch():
    """Measured (1 thread): per stream after 60 AdamW steps at 3e-3 from ln 32 = 3.47: audio 0.13 (cb 0.12..0.14),
    text 0.05 (Q=4, text on). Bounds with a 2x margin."""
    m = tiny_lm(q=4, text_vocab=40).train()
    b = random_batch(m.cfg, b=2, t=24, mask=True)
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    for _ in range(60):
        loss = m.loss(b)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    s = loss.per_stream
    assert s["audio"] < 0.3 and s["text"] < 0.12, s
    assert all(s[f"audio_cb{k}"] < 0.35 for k in range(4)), s
