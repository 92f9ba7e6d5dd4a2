"""Integrated loudness (ITU-R BS.1770) and optional loudness normalisation (docs/DESIGN.md §7).

A dialog's two channels are measured together (BS.1770 sums the channels' K-weighted power), a mono segment as one
channel. Normalisation scales a segment to a target loudness, but never past a peak ceiling: a segment whose peak
would cross ``max_peak_dbfs`` gets the largest gain that keeps it under, and its row says which gain it got.

In a unit, a channel that is a verbatim copy of a recording's track (a mono turn, a dialog window's channel, the mix
between a window's cross-fades) takes its K-weighted audio from one pass over each *stretch* of that track
(pipelines/stages/stretch.py), as the duplicate landmarks do: :meth:`LoudnessMeter.lufs_many`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.stages.stretch import Span, stretches

BLOCK_S = 0.4  # BS.1770's gating block
FLOOR_LUFS = -70.0  # BS.1770's absolute gate: audio whose every block is quieter reads as this
SILENT_BLOCK = 512  # digital silence is looked for in blocks of this many samples (32 ms at 16 kHz)
RING_DOWN = 2048  # samples after the last non-zero input until the K-filter's output is < 1e-12 of its impulse peak
CHUNK = 1 << 20  # samples of a stretch K-weighted at a time (bounded memory on hours of speech)


@dataclass
class _Channel:
    """One clip channel being measured: its samples and the mean-square sums of its K-weighted audio per 100 ms
    step from its start."""

    x: np.ndarray
    steps: np.ndarray


class LoudnessMeter:
    """ITU-R BS.1770-4 integrated loudness, vectorised.

    The K-weighting filters are ``pyloudnorm``'s designs for the sample rate (its public ``IIRfilter`` with BS.1770's
    shelf and high-pass parameters); the gating is the standard's: 400 ms blocks every 100 ms, an absolute gate
    at -70 LUFS, a relative gate 10 LU under the absolutely-gated mean. ``pyloudnorm.Meter.integrated_loudness``
    computes the same number (``tests/pipelines/test_loudness.py`` checks to 0.01 LU) with a Python loop per
    block, 2-4x slower; this runs both filters as one float32 second-order-section pass (over the sounding parts:
    :meth:`_sounding`) and the block sums from sums over 100 ms steps. The filters forget their input within
    ``RING_DOWN`` samples (to under 1e-12), so a stretch of audio can be filtered from ``RING_DOWN`` samples
    before it, and a channel that copies a track takes the track's filtered samples (:meth:`lufs_many`)."""

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

    def kfilter(self, x: np.ndarray, history: int = 0) -> np.ndarray:
        """K-weighted float32 ``x`` (1-D), the filters starting at rest; the first ``history`` samples only bring
        the filters' state up to date (``RING_DOWN`` of them do, to under 1e-12): the output is for
        ``x[history:]``. Both filters as one float32 second-order-section pass."""
        from scipy.signal import sosfilt

        return sosfilt(self.sos, x + self._dither(len(x)))[history:]

    def _add_power(self, steps: np.ndarray, sq: np.ndarray, at: int) -> None:
        """Add the squares ``sq`` of K-weighted samples (at sample ``at`` of their clip) to the clip's 100 ms step
        sums (float64)."""
        s, n = self.step, len(sq)
        if not n:
            return
        k = at // s
        head = min(n, (k + 1) * s - at)  # samples in the first, partly covered step
        steps[k] += sq[:head].sum(dtype=np.float64)
        full = (n - head) // s
        if full:
            steps[k + 1 : k + 1 + full] += sq[head : head + full * s].reshape(full, s).sum(axis=1, dtype=np.float64)
        if head + full * s < n:
            steps[k + 1 + full] += sq[head + full * s :].sum(dtype=np.float64)

    @staticmethod
    def _sounding(x: np.ndarray) -> list[tuple[int, int]]:
        """The ranges of ``x`` whose K-weighted audio can be non-zero: all of it, less each run of whole
        ``SILENT_BLOCK`` blocks of exact zeros that begins ``RING_DOWN`` samples or more after the last non-zero
        sample. A dialog channel cut from a mono mix is such zeros between its speaker's turns (about half of it):
        the filter's output there is its ring-down, under 1e-12 of the signal (240 dB under it), so it is taken as
        zero and the state at the next sound as zero; the loudness does not change (tests/pipelines/test_loudness.py
        compares with the filter run over everything). A run of zeros must contain a block start, so only blocks that start on
        a zero are looked at."""
        n, b = len(x), SILENT_BLOCK
        cand = np.flatnonzero(x[: n - n % b : b] == 0)
        if not len(cand):
            return [(0, n)]
        silent = np.zeros(n // b, bool)
        silent[cand] = ~x[: n - n % b].reshape(-1, b)[cand].any(axis=1)
        # a silent block is skipped once RING_DOWN samples of silence precede it
        i = np.arange(len(silent))
        run = i - np.maximum.accumulate(np.where(silent, -1, i))  # silent blocks in a row up to and including i
        out = [(lo * b, hi * b) for lo, hi in _runs(run <= -(-RING_DOWN // b))]
        if n % b:  # the samples after the last whole block are always filtered
            out = out[:-1] + [(out[-1][0], n)] if out and out[-1][1] == n - n % b else out + [(n - n % b, n)]
        return out

    # -- integrated loudness ---------------------------------------------------------------------------------
    def _integrated(self, steps: np.ndarray, n: int) -> float | None:
        """BS.1770's gated loudness from the 100 ms step sums (summed over channels) of ``n`` samples; the last
        block may run past the end, its sum cut short as in pyloudnorm."""
        if n < self.block:
            return None
        n_blocks = int(round((n / self.sr - BLOCK_S) / (BLOCK_S / 4))) + 1
        sub = np.zeros(n_blocks + 3)
        m = min(len(sub), len(steps))
        sub[:m] = steps[:m]
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

    def lufs(self, audio: np.ndarray) -> float | None:
        """Integrated loudness of float ``[channels, samples]`` (or mono) audio; ``FLOOR_LUFS`` when no block is
        above BS.1770's -70 LUFS absolute gate; None when it is shorter than one 0.4 s block. Channels count with
        weight 1 (BS.1770's left/right/centre), so a dialog's two channels are summed in power."""
        return self.lufs_many([audio])[0]

    def lufs_many(self, clips: list[np.ndarray], spans: list[list[Span]] | None = None,
                  tracks: list[np.ndarray] | None = None) -> list[float | None]:
        """:meth:`lufs` of each clip. With ``spans`` (per clip, per channel: the range of ``tracks`` that channel
        was cut from; recording -1: none), the parts of channels that equal their track for more than ``RING_DOWN``
        samples are K-weighted once per stretch of the track where two or more channels share it (a dialog window
        and its mono turns), the rest of each channel on its own. The same numbers to float rounding: a shared
        sample's filter state differs from the channel's own by the ring-down of what came before the copy,
        under 1e-12."""
        chans: list[list[_Channel]] = []
        for a in clips:
            a = np.asarray(a, dtype=np.float32)
            a = a[None, :] if a.ndim == 1 else a
            chans.append([_Channel(x, np.zeros(-(-len(x) // self.step) + 1)) for x in a])
        flat = [c for cs in chans for c in cs]
        done: list[list[tuple[int, int]]] = [[] for _ in flat]  # ranges already K-weighted, per channel
        if spans is not None and tracks is not None:
            self._shared(flat, [s for ss in spans for s in ss], tracks, done)
        for c, skip in zip(flat, done):
            for start, end in self._sounding(c.x):
                for lo, hi in _minus([(start, end)], skip):  # after a shared part: its last RING_DOWN samples lead in
                    h = min(lo - start, RING_DOWN)
                    self._add_power(c.steps, np.square(self.kfilter(c.x[lo - h : hi], h)), lo)
        return [self._integrated(sum(c.steps for c in cs), len(cs[0].x)) if cs else None for cs in chans]

    def _shared(self, chans: list[_Channel], spans: list[Span], tracks: list[np.ndarray],
                done: list[list[tuple[int, int]]]) -> None:
        """K-weight the track stretches two or more channels copy, once, into those channels' step sums; record in
        ``done`` which of each channel's samples that covered."""
        t = RING_DOWN
        where = [(i, s) for i, s in enumerate(spans) if s.recording >= 0 and s.end - s.start == len(chans[i].x)]
        copies: list[Span] = []  # per channel run that equals its track: the samples whose whole memory is in it
        owner: list[int] = []
        for st in stretches([s for _, s in where]):
            if len(st.members) < 2:
                continue
            for m in st.members:
                i, s = where[m]
                eq = chans[i].x == tracks[s.recording][s.start : s.end]
                for lo, hi in _runs(eq):
                    if hi - lo >= 3 * t:
                        copies.append(Span(s.recording, s.start + lo + t, s.start + hi))
                        owner.append(i)
        for st in stretches(copies):
            if len(st.members) < 2:
                continue
            members = sorted(st.members, key=lambda m: copies[m].start)
            track = tracks[st.recording]
            for start, end in self._sounding(track[st.start : st.end]):  # digital silence: nothing to add
                for lo in range(st.start + start, st.start + end, CHUNK):
                    hi = min(st.start + end, lo + CHUNK)
                    h = t if lo > st.start + start or start == 0 else 0  # after a skipped silence: at rest
                    sq = np.square(self.kfilter(track[lo - h : hi], h))
                    for m in members:  # sorted by start
                        c, i = copies[m], owner[m]
                        if c.start >= hi:
                            break
                        a, b = max(lo, c.start), min(hi, c.end)
                        if a < b:
                            self._add_power(chans[i].steps, sq[a - lo : b - lo], a - spans[i].start)
            for m in members:
                c, i = copies[m], owner[m]
                done[i].append((c.start - spans[i].start, c.end - spans[i].start))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in a boolean array, as [start, end) index pairs."""
    m = np.zeros(len(mask) + 2, bool)
    m[1:-1] = mask
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _minus(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` less the ranges in ``cut`` (both sorted or not; the result is sorted)."""
    out = []
    cut = sorted(cut)
    for lo, hi in sorted(ranges):
        for a, b in cut:
            if b <= lo or a >= hi:
                continue
            if a > lo:
                out.append((lo, a))
            lo = max(lo, b)
        if lo < hi:
            out.append((lo, hi))
    return out


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
