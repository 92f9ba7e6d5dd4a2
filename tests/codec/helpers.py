"""Test-side helpers for the codec tests: a fixed evaluation batch, the reconstruction's mel distance, and the
frame rule written out as the tests check it."""

from __future__ import annotations

import torch

from codec.base import num_frames
from codec.losses import mel_distance
from codec.model import CodecModel
from codec.train import CropStream


def fixed_eval_batch(shards: list[str], n: int = 8, seconds: float = 1.0, sample_rate: int = 16000,
                     seed: int = 123) -> torch.Tensor:
    """A fixed batch of crops ``[n, 1, T]`` for before/after comparisons (deterministic for given shards)."""
    return next(iter(CropStream(shards, int(seconds * sample_rate), n, seed=seed, pool_size=64)))


def measure_mel_distance(model: CodecModel, batch: torch.Tensor) -> float:
    """Mel distance of ``model``'s reconstruction (encode -> decode) of ``batch`` [B, 1, T]."""
    model.eval()
    with torch.no_grad():
        y = model.decode(model.encode(batch))
    return mel_distance(y[..., : batch.shape[-1]].cpu(), batch)


def frames_for_duration(duration_s: float, frame_rate: float, sample_rate: int = 16000) -> int:
    """``ceil(duration × frame_rate)`` for a duration that is a whole number of samples (as a segment shard's
    ``duration_s`` is, to 4 decimals)."""
    return num_frames(int(round(duration_s * sample_rate)), int(round(sample_rate / frame_rate)))
