"""Effective bandwidth of a segment: how high in frequency its sound reaches (docs/DESIGN.md §7).

An 8 kHz phone call resampled to 16 or 48 kHz has nothing above 4 kHz; an MP3 at a low bitrate is cut at a few
kHz. The measure: the power spectrum averaged over the segment's louder half of 32 ms frames (speech, not the
pauses between words; at most ``MAX_FRAMES`` of them, spread over the clip), smoothed over ``SMOOTH_HZ``, and the highest frequency whose level is within ``drop_db`` of the
spectrum's peak. It is measured on the 16 kHz audio the pipeline writes, so it is at most 8 kHz.
"""

from __future__ import annotations

import numpy as np

N_FFT = 512  # 32 ms at 16 kHz, 31.25 Hz bins
SMOOTH_HZ = 250.0
MAX_FRAMES = 256  # loud frames averaged at most, spread over the clip
DROP_DB = 50.0


def effective_bandwidth(x: np.ndarray, sr: int, drop_db: float = DROP_DB) -> float | None:
    """Highest frequency (Hz) whose smoothed level is within ``drop_db`` of the peak; None for silence or a clip
    shorter than one 32 ms frame. ``x`` is mono float audio, or ``[channels, samples]`` (measured on the mix)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[0] if len(x) == 1 else x.mean(axis=0)
    n = len(x) // N_FFT
    if n == 0:
        return None
    frames = x[: n * N_FFT].reshape(n, N_FFT)  # back-to-back 32 ms frames
    energy = np.einsum("ij,ij->i", frames, frames)
    idx = np.flatnonzero(energy >= np.median(energy))  # the louder half: speech rather than the pauses
    if len(idx) > MAX_FRAMES:  # an average over ~8 s of speech is as good as over all of it
        idx = idx[np.linspace(0, len(idx) - 1, MAX_FRAMES).astype(int)]
    loud = frames[idx]
    power = (np.abs(np.fft.rfft(loud * np.hanning(N_FFT).astype(np.float32), axis=1)) ** 2).mean(axis=0)
    k = max(1, int(round(SMOOTH_HZ / (sr / N_FFT))))
    power = np.convolve(power, np.ones(k) / k, mode="same")
    if not np.any(power > 0):
        return None
    db = 10 * np.log10(np.maximum(power, 1e-30))
    above = np.flatnonzero(db >= db.max() - drop_db)
    return round(float(above[-1] * sr / N_FFT), 1)
