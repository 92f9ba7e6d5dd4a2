"""DNSMOS P.835 (SIG, BAK, OVRL) of segments, batched, from the ONNX model inside the ``speechmos`` wheel.

DNSMOS P.835 (Reddy et al., ICASSP 2022) is a CNN over the log-power spectrogram of a fixed 9.01 s window of
16 kHz audio; it predicts the three P.835 ratings (speech signal, background, overall), which a published
polynomial per rating maps onto the listening-test scale (1..5). The model file is ``sig_bak_ovr.onnx`` from the
``speechmos`` package (the DNS Challenge's release); it is loaded from the installed package, never downloaded.

What we do differently from the reference scorer (``speechmos.dnsmos``, the DNS Challenge's ``dnsmos_local.py``),
and why:

* windows: the reference slides the 9.01 s window by 1 s, so every second is scored ~9 times; we cover a clip with
  ``ceil(len / 9.01 s)`` windows spread evenly from its start to its end (they overlap only as much as needed to
  end exactly at the clip's end), about 9x less work on long clips. A clip shorter than a window is repeated
  until it fills one window, as the reference does; such a clip has the same score as the reference's first
  window (``tests/pipelines/test_dnsmos.py`` compares the two).
* batching: the windows of many clips (a unit's samples) go through onnxruntime together, ``batch`` at a time,
  one thread per actor on CPU, or the CUDA provider when onnxruntime offers one.

A clip's score is the mean over its windows, as in the reference. In a unit, the windows cover each recording's
*speech* once rather than each sample (pipelines/stages/stretch.py: mono samples and dialog windows overlap, a
dialog source used to pay about twice): the samples' ranges that overlap or touch make one stretch of the
recording's mono mix, the stretch is covered as a clip is, and each sample gets the mean of the windows that
overlap it, weighted by the overlap. So a sample's score is that of the windows around it, which may reach past
its ends into the neighbouring speech of its stretch (up to a window, 9.01 s); a sample that overlaps no other is
scored exactly as on its own (benchmarks/RESULTS.md "[10] filters' cost, third session" compares the two). Cost: the CNN is the expensive part of
ingestion on CPU (benchmarks/RESULTS.md), which is why ``measures.dnsmos`` is a switch.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np

from pipelines.stages.stretch import Span, stretches

SAMPLE_RATE = 16000
WINDOW = int(9.01 * SAMPLE_RATE)  # 144160 samples: the model's fixed input length
MODEL_FILE = "sig_bak_ovr.onnx"
# The P.835 calibration polynomials for the non-personalised model (coefficients, highest power first), as
# published with the model; they map the network's raw outputs onto the 1..5 MOS scale.
POLY = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}


@dataclass
class DnsmosScores:
    sig: float
    bak: float
    ovrl: float


def find_model() -> str:
    """The path of ``sig_bak_ovr.onnx`` inside the installed ``speechmos`` package (its non-personalised model)."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.origin:
        raise RuntimeError("DNSMOS needs the speechmos package (it ships the model): pip install speechmos onnxruntime, "
                           "or set measures.dnsmos: false")
    path = os.path.join(os.path.dirname(spec.origin), "dnsmos_models", MODEL_FILE)
    if not os.path.isfile(path):
        raise RuntimeError(f"the speechmos package has no dnsmos_models/{MODEL_FILE}: reinstall it "
                           "(pip install --force-reinstall speechmos), or name a local copy in measures.dnsmos_model")
    return path


def usable_model(configured: str = "") -> str:
    """The model file to load (``configured``, or the speechmos package's), after checking that it and onnxruntime
    are there; RuntimeError with what to do otherwise."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise RuntimeError("DNSMOS needs onnxruntime: pip install onnxruntime (onnxruntime-gpu for CUDA), "
                           "or set measures.dnsmos: false")
    if configured and not os.path.isfile(configured):
        raise RuntimeError(f"measures.dnsmos_model {configured!r} does not exist: name a local sig_bak_ovr.onnx, "
                           "or leave it empty for the one inside the speechmos package")
    return configured or find_model()


def window_starts(n: int) -> np.ndarray:
    """Where the windows covering ``n`` samples start: one window (the audio repeated to fill it) when ``n`` is at
    most a window, else ``ceil(n / WINDOW)`` windows spread evenly from the start to the end."""
    if n <= WINDOW:
        return np.zeros(1 if n else 0, int)
    return np.linspace(0, n - WINDOW, math.ceil(n / WINDOW)).round().astype(int)


def windows(x: np.ndarray) -> np.ndarray:
    """``[n, WINDOW]`` float32 windows covering mono ``x`` (at :func:`window_starts`)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) <= WINDOW:
        return np.resize(x, WINDOW)[None, :] if len(x) else np.zeros((0, WINDOW), np.float32)  # repeats the clip
    return np.stack([x[s : s + WINDOW] for s in window_starts(len(x))])


class Dnsmos:
    """Holds the onnxruntime session; ``score(clips)`` returns one :class:`DnsmosScores` per clip (None for an empty
    clip). Clips are float mono 16 kHz audio, or ``[channels, samples]`` (scored on the channels' mean)."""

    def __init__(self, model_path: str = "", batch: int = 8, threads: int = 1) -> None:
        path = usable_model(model_path)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, opts, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.batch = max(1, int(batch))
        self.providers = self.session.get_providers()

    def raw(self, w: np.ndarray) -> np.ndarray:
        """The network's raw (sig, bak, ovrl) outputs ``[n, 3]`` for windows ``[n, WINDOW]``."""
        out = [self.session.run(None, {self.input: w[i : i + self.batch]})[0] for i in range(0, len(w), self.batch)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 3))

    def score(self, clips: list[np.ndarray]) -> list[DnsmosScores | None]:
        """Each clip on its own (a clip is a stretch alone; see :meth:`score_spans`)."""
        mixes = [c.mean(axis=0) if c.ndim == 2 else c for c in map(np.asarray, clips)]
        return self.score_spans(mixes, [Span(i, 0, len(m)) for i, m in enumerate(mixes)])

    def score_spans(self, mixes, spans: list[Span]) -> list[DnsmosScores | None]:
        """Scores of samples that lie at ``spans`` of the recordings' 16 kHz mono ``mixes``: each stretch of
        overlapping spans is covered by windows once (pipelines/stages/stretch.py), and a sample's score is the
        mean of the windows that overlap it, weighted by the overlap (a stretch of at most one window: that one
        window's). A sample alone in its stretch is scored exactly as on its own; None for an empty one."""
        sts = stretches(spans)
        starts = [window_starts(st.end - st.start) for st in sts]
        w = [windows(np.asarray(mixes[st.recording][st.start : st.end])) for st in sts]
        raw = self.raw(np.concatenate(w) if w else np.zeros((0, WINDOW), np.float32))
        mos = np.stack([np.polyval(POLY[k], raw[:, i]) for i, k in enumerate(("sig", "bak", "ovrl"))], axis=1)
        out: list[DnsmosScores | None] = [None] * len(spans)
        at = 0
        for st, ws in zip(sts, starts):
            m = mos[at : at + len(ws)]
            at += len(ws)
            for i in st.members:
                a, b = spans[i].start - st.start, spans[i].end - st.start
                if b <= a or not len(ws):
                    continue
                ends = ws + WINDOW if len(ws) > 1 else np.array([max(WINDOW, st.end - st.start)])
                weight = np.clip(np.minimum(ends, b) - np.maximum(ws, a), 0, None).astype(np.float64)
                v = m.mean(axis=0) if len(st.members) == 1 else weight @ m / weight.sum()  # alone: as on its own
                out[i] = DnsmosScores(*(round(float(x), 3) for x in v))
        return out
