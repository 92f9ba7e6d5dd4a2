"""FLAC encoding of float32 ``[channels, samples]`` audio as 16-bit PCM (deterministic bytes)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def encode_flac(x: np.ndarray, sr: int, compression_level: float = 0.0) -> bytes:
    buf = io.BytesIO()
    y = np.clip(x, -1.0, 1.0).T
    sf.write(buf, y, sr, format="FLAC", subtype="PCM_16", compression_level=compression_level)
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(y.T), sr
