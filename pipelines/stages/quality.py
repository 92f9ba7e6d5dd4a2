"""Quality figures of a segment and the filters that turn bad segments into ``Reject`` rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.stages.dedup import DedupConfig
from pipelines.stages.lid import LidConfig

CLIP_LEVEL = 0.999
_FRAME = 320  # 20 ms at 16 kHz


@dataclass
class FilterConfig:
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    min_speech_ratio: float = 0.3
    max_clipping: float = 0.001  # fraction of samples at full scale
    min_snr_db: float | None = None  # off by default; SNR is still measured and stored
    lid: LidConfig = field(default_factory=LidConfig)  # language ID (pipelines/stages/lid.py)
    dedup: DedupConfig = field(default_factory=DedupConfig)  # duplicates across the run (pipelines/stages/dedup.py)
    # Filters on pipelines/stages/measures.py's scores (docs/DESIGN.md §7), all off by default:
    min_dnsmos_ovrl: float | None = None  # DNSMOS P.835 OVRL (1..5; Emilia keeps >= 3.0); needs measures.dnsmos
    min_bandwidth_hz: float | None = None  # e.g. 6000 keeps wideband only (8 kHz phone audio reaches ~4000)
    min_lufs: float | None = None  # BS.1770 integrated loudness bounds, e.g. -45 and -10
    max_lufs: float | None = None


@dataclass
class Quality:
    snr_db: float
    speech_ratio: float
    clipping: float


def clipping_fraction(x: np.ndarray) -> float:
    return float(np.mean(np.abs(x) >= CLIP_LEVEL)) if x.size else 0.0


def frame_power(x: np.ndarray, frame: int = _FRAME) -> np.ndarray:
    """Mean power of each whole ``frame``-sample frame (float64; computed in blocks, so a long recording costs
    no float64 copy of itself); one value for audio shorter than a frame."""
    n = len(x) // frame
    if n == 0:
        return np.array([float(np.mean(x.astype(np.float64) ** 2))]) if len(x) else np.zeros(0)
    f = x[: n * frame].reshape(n, frame)
    step = 1 << 14  # frames per block
    return np.concatenate([np.mean(np.square(f[i : i + step], dtype=np.float64), axis=1) for i in range(0, n, step)])


def noise_floor(x: np.ndarray, speech: np.ndarray) -> float:
    """Noise power of a track: median frame power outside speech, or its 10th percentile if all is speech."""
    p = frame_power(x)
    if p.size == 0:
        return 0.0
    m = speech[: len(p) * _FRAME : _FRAME][: len(p)] if speech.size else np.zeros(len(p), bool)
    quiet = p[~m] if m.size == len(p) else p
    return float(np.median(quiet)) if quiet.size >= 5 else float(np.percentile(p, 10))


def snr_db(x: np.ndarray, speech: np.ndarray, noise: float) -> float:
    """SNR of the speech part of ``x`` against the track's noise floor, clamped to [-20, 100] dB."""
    sel = x[speech] if speech.any() else x
    sig = float(np.mean(sel.astype(np.float64) ** 2)) if sel.size else 0.0
    clean = max(sig - noise, 1e-12)
    if noise <= 1e-12:
        return 100.0
    return float(np.clip(10 * np.log10(clean / noise), -20.0, 100.0))


def check(duration_s: float, q: Quality, cfg: FilterConfig, *, max_duration_s: float | None = None) -> tuple[str, str] | None:
    """The first failed filter as (reason, detail), or None when the segment passes."""
    max_d = cfg.max_duration_s if max_duration_s is None else max_duration_s
    if duration_s < cfg.min_duration_s:
        return "too_short", f"{duration_s:.2f} s is under the {cfg.min_duration_s:g} s minimum"
    if duration_s > max_d + 1e-6:
        return "too_long", f"{duration_s:.2f} s is over the {max_d:g} s maximum"
    if q.clipping > cfg.max_clipping:
        return "clipping", f"{100 * q.clipping:.2f}% of samples are at full scale (limit {100 * cfg.max_clipping:.2f}%)"
    if q.speech_ratio < cfg.min_speech_ratio:
        return "low_speech_ratio", f"speech covers {100 * q.speech_ratio:.0f}% (minimum {100 * cfg.min_speech_ratio:.0f}%)"
    if cfg.min_snr_db is not None and q.snr_db < cfg.min_snr_db:
        return "low_snr", f"SNR {q.snr_db:.1f} dB is under {cfg.min_snr_db:g} dB"
    return None
