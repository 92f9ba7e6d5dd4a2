"""Integrated loudness (ITU-R BS.1770, through ``pyloudnorm``) and optional loudness normalisation (docs/DESIGN.md §7).

A dialog's two channels are measured together (BS.1770 sums the channels' K-weighted power), a mono segment as one
channel. Normalisation scales a segment to a target loudness, but never past a peak ceiling: a segment whose peak
would cross ``max_peak_dbfs`` gets the largest gain that keeps it under, and its row says which gain it got.
"""

from __future__ import annotations

import numpy as np

BLOCK_S = 0.4  # BS.1770's gating block
FLOOR_LUFS = -70.0  # BS.1770's absolute gate: audio whose every block is quieter reads as this


class LoudnessMeter:
    """One ``pyloudnorm.Meter`` per sample rate (its K-weighting filters are built once)."""

    def __init__(self, sr: int) -> None:
        import pyloudnorm

        self.sr = sr
        self.meter = pyloudnorm.Meter(sr, block_size=BLOCK_S)

    def lufs(self, audio: np.ndarray) -> float | None:
        """Integrated loudness of float ``[channels, samples]`` (or mono) audio; ``FLOOR_LUFS`` when no block is
        above BS.1770's -70 LUFS absolute gate; None when it is shorter than one 0.4 s block."""
        a = np.asarray(audio, dtype=np.float64)
        a = a[None, :] if a.ndim == 1 else a
        if a.shape[1] < int(BLOCK_S * self.sr) + 1:
            return None
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyloudnorm warns about possible clipping; clipping has its own filter
            v = float(self.meter.integrated_loudness(a.T if a.shape[0] > 1 else a[0]))
        return round(max(v, FLOOR_LUFS), 2) if np.isfinite(v) else FLOOR_LUFS


def normalize_gain_db(audio: np.ndarray, lufs: float | None, target_lufs: float, max_peak_dbfs: float) -> float:
    """The gain (dB) that takes audio at ``lufs`` to ``target_lufs``, lowered so its sample peak stays at or under
    ``max_peak_dbfs``; 0 when the loudness is unknown."""
    if lufs is None:
        return 0.0
    gain = target_lufs - lufs
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        gain = min(gain, max_peak_dbfs - 20 * np.log10(peak))
    return round(float(gain), 2)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32) if gain_db else audio
