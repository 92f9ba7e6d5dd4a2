"""Small shared makers for the LM tests: tiny configs, random token batches."""

from __future__ import annotations

import math

import numpy as np
import torch

from lm import AudioLM, LMBatch, LMConfig


def tiny_cfg(q: int = 4, k: int = 32, text_vocab: int = 0, **kw) -> LMConfig:
    return LMConfig.preset("tiny", num_codebooks=q, codebook_size=k, text_vocab=text_vocab, **kw)


def tiny_lm(seed: int = 0, **kw) -> AudioLM:
    torch.manual_seed(seed)
    return AudioLM(tiny_cfg(**kw)).eval()


def random_batch(cfg: LMConfig, b: int = 2, t: int = 20, seed: int = 0, mask: bool = False) -> LMBatch:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, cfg.K, (b, 2 * cfg.Q, t), generator=g)
    text = torch.randint(0, cfg.text_vocab, (b, t), generator=g) if cfg.has_text else None
    m = None
    if mask:
        m = torch.ones(b, t, dtype=torch.bool)
        m[0, t * 3 // 4:] = False  # the first sample ends early (packing's tail)
    return LMBatch(codes, text, m)


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    """``n`` samples of a voiced, syllable-paced 16 kHz signal (harmonics switched on and off at 3 Hz, a little noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 110 + 60 * rng.random()
    x = sum(np.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6)) * 0.1
    return (x * (np.sin(2 * math.pi * 3 * t) > 0) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def save_tiny_codec(run) -> object:
    """A random tiny codec saved as a training checkpoint under ``run`` and loaded back as ``--codec`` loads it."""
    from codec.adapters import load_codec
    from codec.model import CodecConfig, CodecModel
    from codec.train import CodecTrainConfig, save_checkpoint

    torch.manual_seed(0)
    m = CodecModel(CodecConfig.preset("tiny")).eval()
    save_checkpoint(str(run), m, None, 1, CodecTrainConfig(size="tiny"))
    return load_codec(str(run))
