"""Integrated loudness (ITU-R BS.1770) and optional loudness normalisation (docs/DESIGN.md §7).

A dialog's two channels are measured together (BS.1770 sums the channels' K-weighted power), a mono segment as one
channel. Normalisation scales a segment to a target loudness, but never past a peak ceiling: a segment whose peak
would cross ``max_peak_dbfs`` gets the largest gain that keeps it under, and its row says which gain it got.
"""

from __future__ import annotations

import numpy as np

BLOCK_S = 0.4  # BS.1770's gating block
FLOOR_LUFS = -70.0  # BS.1770's absolute gate: audio whose every block is quieter reads as this
SILENT_BLOCK = 512  # digital silence is looked for in blocks of this many samples (32 ms at 16 kHz)
RING_DOWN = 2048  # samples after the last non-zero input until the K-filter's output is < 1e-12 of its impulse peak


class LoudnessMeter:
    """ITU-R BS.1770-4 integrated loudness, vectorised.

    The K-weighting filters are ``pyloudnorm``'s designs for the sample rate (its public ``IIRfilter`` with BS.1770's
    shelf and high-pass parameters); the gating is the standard's: 400 ms blocks every 100 ms, an absolute gate
    at -70 LUFS, a relative gate 10 LU under the absolutely-gated mean. ``pyloudnorm.Meter.integrated_loudness``
    computes the same number (``tests/pipelines/test_loudness.py`` checks to 0.01 LU) with a Python loop per
    block, 2-4x slower; this runs both filters as one float32 second-order-section pass (over the sounding parts:
    :meth:`_sounding`) and the block sums from sums over 100 ms steps."""

    def __init__(self, sr: int) -> None:
        from pyloudnorm.iirfilter import IIRfilter

        self.sr = sr
        stages = [IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf"), IIRfilter(0.0, 0.5, 38.0, sr, "high_pass")]
        self.sos = np.array([np.concatenate([f.b / f.a[0], f.a / f.a[0]]) for f in stages]).astype(np.float32)
        self.step = int(round(BLOCK_S / 4 * sr))  # blocks start every 100 ms
        self.block = 4 * self.step
        if self.step != BLOCK_S / 4 * sr:
            raise ValueError(f"loudness: {sr} Hz does not give whole-sample 100 ms steps; resample to 16 kHz first")

    def _dither(self, n: int) -> np.ndarray:
        """A +-1e-12 (-240 dBFS) Nyquist-rate tone added to the input: digital silence (a dialog channel between
        its speaker's turns is exact zeros) would let the filters' state decay into subnormal floats, which the
        CPU handles ~7x slower (measured: benchmarks/RESULTS.md "[10] filters' cost, third session"); the tone
        keeps it normal and is ~170 dB under the -70 LUFS gate, so no loudness changes."""
        if len(getattr(self, "_tone", ())) < n:
            self._tone = np.where(np.arange(max(n, 30 * self.sr)) % 2, -1e-12, 1e-12).astype(np.float32)
        return self._tone[:n]

    @staticmethod
    def _sounding(x: np.ndarray) -> list[tuple[int, int]]:
        """The ranges of ``x`` to filter: all of it, less each run of whole ``SILENT_BLOCK`` blocks of exact zeros
        that begins ``RING_DOWN`` samples or more after the last non-zero sample. A dialog channel cut from a mono
        mix is such zeros between its speaker's turns (about half of it): the filter's output there is its
        ring-down, under 1e-12 of the signal (240 dB under it), so it is taken as zero and the
        state at the next sound as zero; the loudness does not change (tests/pipelines/test_loudness.py
        compares with the filter run over everything).
        A run of zeros must contain a block start, so only blocks that start on a zero are looked at."""
        n, b = len(x), SILENT_BLOCK
        cand = np.flatnonzero(x[: n - n % b : b] == 0)
        if not len(cand):
            return [(0, n)]
        silent = np.zeros(n // b, bool)
        silent[cand] = ~x[: n - n % b].reshape(-1, b)[cand].any(axis=1)
        # a silent block is skipped once RING_DOWN samples of silence precede it
        i = np.arange(len(silent))
        run = i - np.maximum.accumulate(np.where(silent, -1, i))  # silent blocks in a row up to and including i
        skip = np.zeros(len(silent) + 2, bool)  # skip[i + 1]: block i is skipped
        skip[1:-1] = run > -(-RING_DOWN // b)
        edges = np.flatnonzero(skip[1:] != skip[:-1])  # where skipping starts and stops, in blocks
        out, at = [], 0
        for s, e in zip(edges[::2], edges[1::2]):
            if s * b > at:
                out.append((at, s * b))
            at = e * b
        if at < n:
            out.append((at, n))
        return out

    def lufs(self, audio: np.ndarray) -> float | None:
        """Integrated loudness of float ``[channels, samples]`` (or mono) audio; ``FLOOR_LUFS`` when no block is
        above BS.1770's -70 LUFS absolute gate; None when it is shorter than one 0.4 s block. Channels count with
        weight 1 (BS.1770's left/right/centre), so a dialog's two channels are summed in power."""
        from scipy.signal import sosfilt

        a = np.asarray(audio, dtype=np.float32)
        a = a[None, :] if a.ndim == 1 else a
        n = a.shape[1]
        if n < self.block:
            return None
        dither = self._dither(n)
        parts = [self._sounding(x) for x in a]
        if all(p == [(0, n)] for p in parts):  # no digital silence to skip: one pass over every channel
            y = sosfilt(self.sos, a + dither, axis=1)
        else:
            y = np.zeros_like(a)
            for c, (x, p) in enumerate(zip(a, parts)):
                for lo, hi in p:
                    y[c, lo:hi] = sosfilt(self.sos, x[lo:hi] + dither[lo:hi])
        # mean square of each 400 ms block every 100 ms, from sums over 100 ms steps; the last block may run past
        # the end, its sum cut short as in pyloudnorm
        n_blocks = int(round((n / self.sr - BLOCK_S) / (BLOCK_S / 4))) + 1
        full = min(n // self.step, n_blocks + 3)
        sq = np.square(y)
        sub = np.zeros(n_blocks + 3)
        sub[:full] = sq[:, : full * self.step].reshape(len(sq), full, self.step).sum(axis=2, dtype=np.float64).sum(axis=0)
        if full < n_blocks + 3 and full * self.step < n:  # a last, partial step
            sub[full] = sq[:, full * self.step :].sum(dtype=np.float64)
        z = (sub[:n_blocks] + sub[1 : n_blocks + 1] + sub[2 : n_blocks + 2] + sub[3 : n_blocks + 3]) / self.block
        with np.errstate(divide="ignore"):
            lj = -0.691 + 10 * np.log10(z)
            gated = lj >= FLOOR_LUFS
            if not gated.any():
                return FLOOR_LUFS
            rel = -0.691 + 10 * np.log10(z[gated].mean()) - 10.0
            keep = (lj > rel) & (lj > FLOOR_LUFS)
            v = -0.691 + 10 * np.log10(z[keep].mean()) if keep.any() else -np.inf
        return round(max(float(v), FLOOR_LUFS), 2) if np.isfinite(v) else FLOOR_LUFS


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
