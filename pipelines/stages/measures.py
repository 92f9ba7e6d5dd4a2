"""Per-sample quality measures beyond SNR, speech ratio and clipping, and the filters on them (docs/DESIGN.md §7).

DNSMOS P.835 (``dnsmos``), effective bandwidth (``bandwidth``) and integrated loudness (``loudness``) are measured
on each sample's audio after the cheap filters of ``quality.check`` passed, batched over a unit's group of
recordings (DNSMOS runs its windows through onnxruntime together). The scores go into the sample's row; the
filters (``FilterConfig.min_dnsmos_ovrl``, ``min_bandwidth_hz``, ``min_lufs``, ``max_lufs``, all off by default)
turn a failing sample into a ``Reject`` with a reason. ``check`` is also what ``matalu ingest --dry-run-filters``
applies to a finished run's stored scores, so a preview and a real run decide alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.stages.bandwidth import DROP_DB, effective_bandwidth
from pipelines.stages.quality import FilterConfig
from pipelines.stages.stretch import Span

# the Sample columns this module fills
COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "bandwidth_hz", "loudness_lufs", "loudness_normalized_to",
           "loudness_gain_db")


@dataclass
class MeasureConfig:
    """Which measures run, and the optional loudness normalisation of the written segments."""

    # DNSMOS P.835 from the speechmos wheel's ONNX model. Off by default: on CPU it costs ~20x the
    # rest of a unit (benchmarks/RESULTS.md); meant for GPU workers (onnxruntime-gpu; not measured yet).
    dnsmos: bool = False
    dnsmos_model: str = ""  # a local sig_bak_ovr.onnx; empty: the one inside the installed speechmos package
    dnsmos_batch: int = 8  # 9.01 s windows per onnxruntime call
    bandwidth: bool = True
    bandwidth_drop_db: float = DROP_DB  # the bandwidth ends where the smoothed spectrum falls this far below its peak
    loudness: bool = True
    # Scale every written segment to this integrated loudness (LUFS), e.g. -23 (EBU R128); None: audio as found.
    # Filters and scores use the loudness before normalisation; the row says the target and the gain applied.
    normalize_lufs: float | None = None
    normalize_max_peak_dbfs: float = -1.0  # the gain is lowered so no sample peak goes above this

    def validate(self, filters: FilterConfig) -> None:
        need = {"min_dnsmos_ovrl": "dnsmos", "min_bandwidth_hz": "bandwidth", "min_lufs": "loudness",
                "max_lufs": "loudness"}
        for key, measure in need.items():
            if getattr(filters, key) is not None and not getattr(self, measure):
                raise ValueError(f"filters.{key} needs the {measure} measure: set measures.{measure}: true, "
                                 f"or leave filters.{key} unset")
        if self.normalize_lufs is not None and not self.loudness:
            raise ValueError("measures.normalize_lufs needs the loudness measure: set measures.loudness: true")
        if self.dnsmos:  # before any work starts: onnxruntime and the model file are there
            from pipelines.stages.dnsmos import usable_model

            try:
                usable_model(self.dnsmos_model)
            except RuntimeError as e:
                raise ValueError(str(e)) from None
        if self.dnsmos_batch < 1:
            raise ValueError("measures.dnsmos_batch must be at least 1 (windows per onnxruntime call)")
        if filters.min_lufs is not None and filters.max_lufs is not None and filters.min_lufs > filters.max_lufs:
            raise ValueError(f"filters.min_lufs ({filters.min_lufs:g}) is above filters.max_lufs ({filters.max_lufs:g}): "
                             "swap them")


@dataclass
class Scores:
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_ovrl: float | None = None
    bandwidth_hz: float | None = None
    loudness_lufs: float | None = None
    loudness_normalized_to: float | None = None
    loudness_gain_db: float | None = None


class Measurer:
    """Holds the measures' models (DNSMOS session, loudness meter) for an actor's lifetime."""

    def __init__(self, cfg: MeasureConfig, sr: int) -> None:
        self.cfg = cfg
        self.sr = sr
        self.dnsmos = None
        self.meter = None
        if cfg.dnsmos:
            from pipelines.stages.dnsmos import Dnsmos

            self.dnsmos = Dnsmos(cfg.dnsmos_model, cfg.dnsmos_batch)
        if cfg.loudness:
            from pipelines.stages.loudness import LoudnessMeter

            self.meter = LoudnessMeter(sr)

    def measure(self, clips: list[np.ndarray], filters: FilterConfig | None = None, spans: list[Span] | None = None,
                mixes=None, channel_spans: list[list[Span]] | None = None) -> list[Scores]:
        """Scores of float ``[channels, samples]`` clips. The cheap measures come first; DNSMOS (batched over the
        clips) runs only on clips that pass ``filters``' bandwidth and loudness bounds, since the others are rejects
        whatever it says. With ``spans`` (each clip's place in ``mixes``, its recording's 16 kHz mono mix), DNSMOS
        covers each recording's speech once and each clip takes the windows over its range
        (:meth:`Dnsmos.score_spans`); without, each clip is scored on its own. With ``channel_spans`` (per clip,
        per channel: the range of ``mixes`` it was cut from), the loudness filters a track's audio that several
        clips copy once (:meth:`LoudnessMeter.lufs_many`)."""
        out = [Scores() for _ in clips]
        for s, c in zip(out, clips):
            if self.cfg.bandwidth:
                s.bandwidth_hz = effective_bandwidth(c, self.sr, self.cfg.bandwidth_drop_db)
        if self.meter is not None:
            for s, v in zip(out, self.meter.lufs_many(clips, channel_spans, mixes)):
                s.loudness_lufs = v
        if self.dnsmos is not None:
            todo = [i for i, s in enumerate(out) if filters is None or check(s, filters) is None]
            got = (self.dnsmos.score([clips[i] for i in todo]) if spans is None else
                   self.dnsmos.score_spans(mixes, [spans[i] for i in todo]))
            for i, d in zip(todo, got):
                if d is not None:
                    out[i].dnsmos_sig, out[i].dnsmos_bak, out[i].dnsmos_ovrl = d.sig, d.bak, d.ovrl
        return out

    def normalize(self, audio: np.ndarray, s: Scores) -> np.ndarray:
        """The audio to write: loudness-normalised when ``normalize_lufs`` is set (the gain goes into ``s``)."""
        if self.cfg.normalize_lufs is None:
            return audio
        from pipelines.stages.loudness import apply_gain, normalize_gain_db

        s.loudness_normalized_to = float(self.cfg.normalize_lufs)
        s.loudness_gain_db = normalize_gain_db(audio, s.loudness_lufs, self.cfg.normalize_lufs,
                                               self.cfg.normalize_max_peak_dbfs)
        return apply_gain(audio, s.loudness_gain_db)


def _get(row: Any, key: str) -> Any:
    return row.get(key) if isinstance(row, dict) else getattr(row, key, None)


def check(row: Any, f: FilterConfig) -> tuple[str, str] | None:
    """The first failed measure filter as (reason, detail), or None (in this order: ``narrow_band``, ``too_quiet``,
    ``too_loud``, ``low_dnsmos``). ``row`` is a :class:`Scores`, a ``Sample`` or
    a sample row dict; a score that is missing (the measure did not run, or could not: a clip under 0.4 s has
    no BS.1770 loudness) fails no filter."""
    v = _get(row, "bandwidth_hz")
    if f.min_bandwidth_hz is not None and v is not None and v < f.min_bandwidth_hz:
        return "narrow_band", f"effective bandwidth {v:.0f} Hz is under {f.min_bandwidth_hz:g} Hz"
    v = _get(row, "loudness_lufs")
    if f.min_lufs is not None and v is not None and v < f.min_lufs:
        return "too_quiet", f"loudness {v:.1f} LUFS is under {f.min_lufs:g} LUFS"
    if f.max_lufs is not None and v is not None and v > f.max_lufs:
        return "too_loud", f"loudness {v:.1f} LUFS is over {f.max_lufs:g} LUFS"
    v = _get(row, "dnsmos_ovrl")
    if f.min_dnsmos_ovrl is not None and v is not None and v < f.min_dnsmos_ovrl:
        return "low_dnsmos", f"DNSMOS OVRL {v:.2f} is under {f.min_dnsmos_ovrl:g}"
    return None
