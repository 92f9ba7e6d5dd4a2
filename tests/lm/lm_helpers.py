"""Small shared makers for the LM tests: tiny configs, random token batches."""

from __future__ import annotations

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
