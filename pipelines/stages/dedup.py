"""Duplicate removal across a whole run (docs/DESIGN.md §6, duplicates).

Each unit writes a fingerprint per sample (``parts/<unit>/fingerprints.parquet``, with its other parts): the
MD5 of the sample's 16-bit PCM as written (its FLAC's STREAMINFO MD5; exact duplicates: the same audio in another
file or container) and spectral-peak *landmarks* (near duplicates: the same clip at another bitrate or level, the same jingle or ad in
many episodes). After every unit is done, :func:`find_duplicates` walks the samples in run order (unit order, then
sample id) and keeps the first occurrence; a later sample whose PCM hash equals a kept one's, or that shares a long
enough matching stretch of landmarks with a kept one, becomes a ``duplicate`` reject naming the kept sample. It is
a pure function of the committed parts, so a resumed run reaches the same decision.

Landmarks (the method chosen by measurement, benchmarks/RESULTS.md "Quality filters B"): the log-magnitude STFT
(of the audio resampled to 8 kHz: 32 ms window, 16 ms hop, 125 Hz–4 kHz) is reduced to local maxima (±64 ms, ±188 Hz) within ``peak_range_db`` of
the clip's loudest peak (no per-second cap: one would depend on where a clip starts); each peak is paired with the next ``fanout`` peaks
up to 640 ms later and ±1.25 kHz away, and the pair (f1, f2 − f1, Δt) is a 20-bit hash at the anchor's time.
This is done on two STFT grids half a hop apart (times in 8 ms ticks; one 8 ms-hop STFT, even and odd frames): a
copy that starts mid-frame (a jingle inserted anywhere) meets one of them within 4 ms, where one grid alone kept
only ~20% of its peaks. In a unit the landmarks are taken once per *stretch* of a recording's mono mix (the
overlapping samples' ranges, pipelines/stages/stretch.py: a dialog window and its mono turns are one pass) and
each sample keeps those whose two frames lie in its range (:func:`add_landmarks`); a sample alone in its stretch
gets exactly the landmarks of its own audio.
Peaks are where the energy is, so they survive lossy re-encoding (which drops the quiet detail between them) and
level changes (the peak picking is relative to the clip). Two clips match when many hashes agree at one time
offset: at least ``min_hits`` agreeing hashes that cover ``min_match_s`` of the later clip (or half of a clip
shorter than twice that), and at least ``min_hit_rate`` of the later clip's landmarks in that stretch.

What is rejected for a jingle inside longer recordings: the later *segment* that contains a matching stretch,
whole (its other speech with it). Transcripts never decide: the same sentence read by another speaker is
different audio and is kept; the same recording twice is the same audio and is caught.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from manifests.rows import Reject, Row
from pipelines.stages.stretch import Span, stretches

SR = 16000  # the samples' rate
FP_RATE, N_FFT, HOP = 8000, 256, 128  # landmarks are taken at 8 kHz (only 125 Hz-4 kHz is used): 32 ms, 16 ms hop
TICK = SR * HOP // FP_RATE // 2  # samples at 16 kHz per 8 ms tick: the frame grid at two phases, half a hop apart
F_LO, F_HI = 4, 128  # bins (31.25 Hz each): 125 Hz .. 4 kHz
PEAK_T, PEAK_F = 4, 6  # local-maximum neighbourhood, frames / bins either side
PAIR_DT, PAIR_DF = 40, 40  # target zone: up to 40 frames (640 ms) later, +-40 bins


@dataclass
class DedupConfig:
    enabled: bool = True
    near: bool = True  # landmark matching; false keeps exact (same decoded PCM) duplicates only
    min_match_s: float = 2.0  # a matching stretch this long (or half of a shorter clip) makes a duplicate
    min_hits: int = 20
    min_hit_rate: float = 0.35  # re-encodes and jingles: 41-82%; the same sentence at another espeak pitch: <= 22%
    peak_range_db: float = 45.0
    fanout: int = 4
    max_refs_per_hash: int = 16  # earlier samples remembered per hash (the first ones kept)


@dataclass
class Fingerprint(Row):
    """One sample's fingerprint, written with its unit (not merged into a manifest)."""

    TABLE: ClassVar[str] = "fingerprints"
    sample_id: str
    kind: str  # mono | dialog: compared only with samples of the same kind (a dialog window holds its mono turns)
    recording_id: str
    source: str
    duration_s: float
    pcm_md5: str  # of the 16-bit PCM as written (the FLAC's own STREAMINFO MD5)
    hashes: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # the anchor's time in ticks (8 ms) from the sample's start

    SCHEMA: ClassVar[pa.Schema] = pa.schema([
        ("sample_id", pa.string()), ("kind", pa.string()), ("recording_id", pa.string()), ("source", pa.string()),
        ("duration_s", pa.float64()), ("pcm_md5", pa.string()), ("hashes", pa.list_(pa.int32())),
        ("times", pa.list_(pa.int32())),
    ])


def _window_max(p: np.ndarray, w: int, n: int, stride: int = 1) -> np.ndarray:
    """``out[j] = max(p[j], p[j + stride], ..., p[j + (w - 1) stride])`` for ``j < n``, ``p`` 1-D, by doubling:
    ~log2(w) contiguous passes (a padded 2-D block seen flat: ``stride`` 1 runs along a row, a row's length runs
    down a column); the window is two overlapping power-of-two spans, so one last pass joins them."""
    q, k = p, 1  # q[i] = max(p[i], p[i + stride], ..., p[i + (k - 1) stride])
    while 2 * k <= w:
        q = np.maximum(q[: len(q) - k * stride], q[k * stride :])
        k *= 2
    if k == w:
        return q[:n]
    return np.maximum(q[:n], q[(w - k) * stride : (w - k) * stride + n])


def peaks(db: np.ndarray, cfg: DedupConfig, chunk: int = 512) -> list[tuple[np.ndarray, np.ndarray]]:
    """Spectral peaks of a log spectrogram ``[frames, F_HI - F_LO]`` holding two interleaved STFT grids (frame i
    belongs to grid i % 2): per grid, the (frame, bin) arrays of the maxima of their (2 PEAK_T + 1) frames x
    (2 PEAK_F + 1) bins neighbourhood (-inf outside) within ``peak_range_db`` of the grid's loudest, sorted by
    frame then bin; frames counted in the grid's own hops.

    ``chunk`` frames at a time with their neighbours' frames (they stay in the CPU's cache), each chunk copied once
    into a block padded with -inf rows and columns so that every max is a pass over contiguous memory: the bins'
    max along the flat block, the frames' max with a stride of two rows (a grid's own frames). ~4x faster than
    running maxima over the whole array, the same peaks (tests/pipelines/test_stretch_measures.py checks them
    against ``scipy.ndimage.maximum_filter``)."""
    n, nb = db.shape
    if not n:
        return [(np.zeros(0, np.int64), np.zeros(0, np.int64))] * 2
    floor = np.array([db[g::2].max(initial=-np.inf) - cfg.peak_range_db for g in range(2)], db.dtype)  # a grid may be empty
    floors = np.tile(floor[:, None], (chunk // 2, 1))  # a chunk starts on an even frame: rows alternate grids
    halo, w = 2 * PEAK_T, nb + 2 * PEAK_F  # frames either side a chunk's maxima need; a padded row
    buf = np.empty((chunk + 4 * halo + 1, w), db.dtype)
    ks = []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        a, b = max(0, s - halo), min(n, e + halo)
        rows = b - a + (b - a) % 2  # an even count keeps a grid in one column of the [rows / 2, 2 w] view
        p = buf[: rows + 2 * halo]  # halo rows of -inf above (an even count: grids keep their rows' parity), below
        p.fill(-np.inf)
        p[halo : halo + b - a, PEAK_F : PEAK_F + nb] = db[a:b]
        flat = p.reshape(-1)
        fm = np.empty_like(flat)  # fm[r * w + f]: row r's max over its bins f - PEAK_F .. f + PEAK_F
        fm[: len(flat) - 2 * PEAK_F] = _window_max(flat, 2 * PEAK_F + 1, len(flat) - 2 * PEAK_F)
        fm[len(flat) - 2 * PEAK_F :] = -np.inf  # the last padded row's end: never read into a bin's max
        # m[r * w + f]: the max of fm over rows r, r + 2, ..., r + 4 PEAK_T: centred on padded row r + halo
        m = _window_max(fm, 2 * PEAK_T + 1, (b - a) * w, 2 * w).reshape(b - a, w)[s - a : e - a, :nb]
        d = db[s:e]
        ks.append(np.flatnonzero((d == m) & (d >= floors[: e - s])) + s * nb)
    t, f = np.divmod(np.concatenate(ks), nb)
    return [(t[t % 2 == g] // 2, f[t % 2 == g]) for g in range(2)]


def landmarks(t: np.ndarray, f: np.ndarray, cfg: DedupConfig, block: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor frames) of one grid's peaks (or of several grids' laid one after another, more than PAIR_DT
    frames apart): each peak paired with the next ``fanout`` peaks (in time, then frequency order) that lie
    1..PAIR_DT frames later and within PAIR_DF bins. The k-th successors of the peaks still short of pairs are
    tried ``block`` values of k at a time (a peak's pairs are its first ``fanout`` fitting successors); a peak leaves
    once it has its pairs or its successors are further than PAIR_DT (the peaks are sorted by time: later successors
    are further still). Pairs come out by anchor, then successor."""
    t, f = t.astype(np.int64), f.astype(np.int64)
    n = len(t)
    taken = np.zeros(n, np.int64)
    hs, ts, order = [], [], []
    act = np.arange(n)
    k = 1
    while len(act):
        ks = np.arange(k, k + block)
        j = act[:, None] + ks  # [active peaks, block]: their k-th successors
        inside = j < n
        j = np.minimum(j, n - 1)
        dt, df = t[j] - t[act, None], f[j] - f[act, None]
        live = inside & (dt <= PAIR_DT)
        ok = live & (dt >= 1) & (np.abs(df) <= PAIR_DF)
        ok &= (taken[act, None] + np.cumsum(ok, axis=1)) <= cfg.fanout  # the first `fanout` fitting ones
        r, c = np.nonzero(ok)
        sel = act[r]
        hs.append((f[sel] << 13) | ((df[r, c] + 64) << 6) | dt[r, c])
        ts.append(t[sel])
        order.append(sel * 1024 + ks[c])
        taken[act] += ok.sum(axis=1)
        act = act[live[:, -1] & (taken[act] < cfg.fanout)]
        k += block
    if not hs or not sum(len(h) for h in hs):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    o = np.argsort(np.concatenate(order), kind="stable")
    return np.concatenate(hs)[o].astype(np.int32), np.concatenate(ts)[o].astype(np.int32)


@dataclass
class StretchLandmarks:
    """The landmarks of one stretch of 16 kHz mono audio, both grids, times in ticks from its start."""

    hashes: np.ndarray
    times: np.ndarray  # the anchor frame's start, sorted
    ends: np.ndarray  # the end of the pair's later frame

    @classmethod
    def of(cls, audio: np.ndarray, cfg: DedupConfig) -> "StretchLandmarks":
        """Resampled to 8 kHz once; one STFT at an 8 ms hop is both grids (even frames: phase 0, odd: phase 1);
        each grid's peaks and pairs are its own."""
        from storage.audio import resample

        x = resample(np.asarray(audio, np.float32)[None], SR, FP_RATE, quality="QQ")[0]
        if len(x) < N_FFT:
            e = np.zeros(0, np.int32)
            return cls(e, e, e)
        (t0, f0), (t1, f1) = peaks(_log_spectrogram(x), cfg)
        gap = int(t0[-1]) + PAIR_DT + 1 if len(t0) else 0  # grid 1's peaks after grid 0's: one pairing pass
        h, t = landmarks(np.concatenate([t0, t1 + gap]), np.concatenate([f0, f1]), cfg)
        t = np.where(t >= gap, 2 * (t - gap) + 1, 2 * t).astype(np.int32)  # ticks: grid 0 even frames, 1 odd
        order = np.argsort(t, kind="stable")
        h, t = h[order], t[order]
        return cls(h, t, t + 2 * (h & 63) + N_FFT // (HOP // 2))

    def slice(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, times) of the samples ``[start, end)`` (16 kHz, from the stretch's start): the landmarks whose
        two frames lie inside, times from the first tick at or after ``start``."""
        lo, hi = -(-start // TICK), end // TICK
        a, b = np.searchsorted(self.times, [lo, hi])
        keep = self.ends[a:b] <= hi
        return self.hashes[a:b][keep], self.times[a:b][keep] - lo


_WINDOW = np.hanning(N_FFT).astype(np.float32)


def _log_spectrogram(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """20 log10 |STFT| (bins F_LO..F_HI) of 8 kHz audio at an 8 ms hop, ``chunk`` frames at a time (they stay in
    the CPU's cache: ~20% faster than one call over the whole stretch, the same numbers)."""
    import scipy.fft

    v = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[:: HOP // 2]
    out = np.empty((len(v), F_HI - F_LO), np.float32)
    for i in range(0, len(v), chunk):
        o = out[i : i + chunk]
        np.abs(scipy.fft.rfft(v[i : i + chunk] * _WINDOW, axis=1, workers=1)[:, F_LO:F_HI], out=o)
        o += np.float32(1e-9)
        np.log10(o, out=o)
        o *= np.float32(20)
    return out


def add_landmarks(fps: list[Fingerprint], spans: list[Span], mixes, cfg: DedupConfig) -> None:
    """Fill each fingerprint's landmarks from its span (``spans[i]`` is ``fps[i]``'s place in ``mixes``, the
    recordings' 16 kHz mono mixes): computed once per stretch of overlapping spans, each sample taking the
    landmarks of its own time range. Nothing to do when ``cfg.near`` is off."""
    if not cfg.near:
        return
    for st in stretches(spans):
        lm = StretchLandmarks.of(mixes[st.recording][st.start : st.end], cfg)
        for i in st.members:
            h, t = lm.slice(spans[i].start - st.start, spans[i].end - st.start)
            fps[i].hashes, fps[i].times = h.tolist(), t.tolist()


def fingerprint(sample_id: str, kind: str, recording_id: str, source: str, audio: np.ndarray, sr: int,
                cfg: DedupConfig) -> Fingerprint:
    """One clip's fingerprint on its own: ``audio`` [channels, samples] at 16 kHz (channels mixed for the
    landmarks); the MD5 of its 16-bit PCM (what its FLAC's STREAMINFO would say)."""
    from storage.audio import pcm16_md5

    if sr != SR:
        raise ValueError(f"fingerprints are taken at {SR} Hz, got {sr} Hz audio")
    a = np.atleast_2d(audio)
    fp = Fingerprint(sample_id=sample_id, kind=kind, recording_id=recording_id, source=source,
                     duration_s=round(a.shape[-1] / sr, 4), pcm_md5=pcm16_md5(a))
    add_landmarks([fp], [Span(0, 0, a.shape[-1])], [a.mean(axis=0)], cfg)
    return fp


@dataclass
class Match:
    kept: int  # index of the kept fingerprint
    hits: int
    offset_ticks: int
    span_s: float
    rate: float  # hits / the later clip's landmarks in the matching stretch


def best_match(fp: Fingerprint, refs: dict[int, list[tuple[int, int]]], durations: list[float],
               cfg: DedupConfig) -> Match | None:
    """The earliest kept sample that ``fp`` shares a long enough matching stretch with, or None."""
    if not fp.hashes:
        return None
    votes: dict[tuple[int, int], list[int]] = defaultdict(list)  # (kept sample, offset) -> this clip's landmarks
    for i, (h, t) in enumerate(zip(fp.hashes, fp.times)):
        for ref, rt in refs.get(h, ()):
            votes[(ref, t - rt)].append(i)
    if not votes:
        return None
    times = np.asarray(fp.times)
    by_ref: dict[int, Match] = {}
    for (ref, off), ids in votes.items():
        if len(ids) * 5 < cfg.min_hits:
            continue
        # an offset's neighbours (+-2 ticks: the grids' phases, codec delay) count with it; each landmark once
        hit = sorted(set(ids).union(*(votes.get((ref, off + d), []) for d in (-2, -1, 1, 2))))
        if len(hit) < cfg.min_hits:
            continue
        lo, hi = int(times[hit].min()), int(times[hit].max())
        span = (hi - lo + 1) * TICK / SR
        need = min(cfg.min_match_s, 0.5 * min(fp.duration_s, durations[ref]))
        inside = int(((times >= lo) & (times <= hi)).sum())
        if span + 1e-9 < need or len(hit) < cfg.min_hit_rate * inside:
            continue
        m = Match(ref, len(hit), off, round(span, 2), round(len(hit) / max(inside, 1), 3))
        if ref not in by_ref or m.hits > by_ref[ref].hits:
            by_ref[ref] = m
    return by_ref[min(by_ref)] if by_ref else None


def find_duplicates(fps: list[Fingerprint], cfg: DedupConfig) -> list[Reject]:
    """``fps`` in run order (unit order, then sample id); a ``duplicate`` reject for each sample whose audio is an
    earlier kept sample's of the same kind (first occurrence kept). Mono samples and dialog windows are compared
    apart: a dialog window is cut from the same audio as its recording's mono utterances, by design."""
    if not cfg.enabled:
        return []
    out: list[Reject] = []
    for kind in sorted({f.kind for f in fps}):
        out += _find_duplicates([f for f in fps if f.kind == kind], cfg)
    order = {f.sample_id: i for i, f in enumerate(fps)}
    return sorted(out, key=lambda r: order[r.item])


def _find_duplicates(fps: list[Fingerprint], cfg: DedupConfig) -> list[Reject]:
    exact: dict[str, int] = {}
    refs: dict[int, list[tuple[int, int]]] = {}
    n_refs: dict[int, int] = defaultdict(int)
    durations: list[float] = []
    kept_ids: list[str] = []
    out: list[Reject] = []
    for fp in fps:
        detail = ""
        if fp.pcm_md5 in exact:
            detail = f"exact duplicate of {kept_ids[exact[fp.pcm_md5]]} (the same decoded audio)"
        elif cfg.near:
            m = best_match(fp, refs, durations, cfg)
            if m is not None:
                detail = (f"near duplicate of {kept_ids[m.kept]}: {m.span_s:.1f} s of matching audio "
                          f"({m.hits} landmark hits, {100 * m.rate:.0f}% of its landmarks there, at offset "
                          f"{m.offset_ticks * TICK / SR:+.2f} s)")
        if detail:
            out.append(Reject(item=fp.sample_id, stage="dedup", reason="duplicate", detail=detail, source=fp.source,
                              recording_id=fp.recording_id, seconds=fp.duration_s))
            continue
        k = len(kept_ids)
        kept_ids.append(fp.sample_id)
        durations.append(fp.duration_s)
        exact[fp.pcm_md5] = k
        for h, t in zip(fp.hashes, fp.times):
            lst = refs.setdefault(h, [])
            if lst and lst[-1][0] != k and n_refs[h] >= cfg.max_refs_per_hash:
                continue  # a common hash: the first kept samples that have it are enough
            if not lst or lst[-1][0] != k:
                n_refs[h] += 1
            lst.append((k, t))
    return out


def dedup_run(root: str, unit_ids: list[str], cfg: DedupConfig) -> int:
    """The run-level step after the merge: read the units' fingerprints (in ``unit_ids`` order), find the
    duplicates, and move them from ``manifests/samples.parquet`` to ``manifests/rejects.parquet``. Returns how many.

    The merged tables are rewritten from the parts at every merge, so this runs on fresh tables each time and its
    result depends only on the committed parts (resume-safe, deterministic)."""
    import pyarrow.compute as pc

    import storage
    from jobs.runner import parts_uri
    from manifests.io import concat_tables, manifest_uri, read_rows, read_table, table_bytes, to_table
    from manifests.rows import Sample

    if not cfg.enabled:
        return 0
    fps: list[Fingerprint] = []
    for u in unit_ids:
        part = storage.join(parts_uri(root, u), f"{Fingerprint.TABLE}.parquet")
        if storage.exists(part):
            fps += sorted(read_rows(part, Fingerprint), key=lambda f: f.sample_id)
    dups = find_duplicates(fps, cfg)
    if not dups:
        return 0
    gone = pa.array([r.item for r in dups], pa.string())
    samples = read_table(manifest_uri(root, "samples"), Sample)
    keep = pc.invert(pc.is_in(samples.column("sample_id"), value_set=gone))
    storage.write_bytes(manifest_uri(root, "samples"), table_bytes(samples.filter(keep)))
    rejects = read_table(manifest_uri(root, "rejects"), Reject)
    storage.write_bytes(manifest_uri(root, "rejects"),
                        table_bytes(concat_tables([rejects, to_table(dups, Reject)], Reject)))
    return len(dups)
