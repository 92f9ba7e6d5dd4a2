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

A clip's score is the mean over its windows, as in the reference. Cost: the CNN is the expensive part of
ingestion on CPU (benchmarks/RESULTS.md), which is why ``measures.dnsmos`` is a switch.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np

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


def windows(x: np.ndarray) -> np.ndarray:
    """``[n, WINDOW]`` float32 windows covering mono ``x``: one repeated-to-fill window for a short clip, else
    ``ceil(len / WINDOW)`` windows spread evenly from the start to the end."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return np.zeros((0, WINDOW), np.float32)
    if len(x) <= WINDOW:
        return np.resize(x, WINDOW)[None, :]  # np.resize repeats the clip cyclically
    n = math.ceil(len(x) / WINDOW)
    starts = np.linspace(0, len(x) - WINDOW, n).round().astype(int)
    return np.stack([x[s : s + WINDOW] for s in starts])


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
        per = []
        for c in clips:
            c = np.asarray(c)
            per.append(windows(c.mean(axis=0) if c.ndim == 2 else c))
        raw = self.raw(np.concatenate(per) if per else np.zeros((0, WINDOW), np.float32))
        mos = np.stack([np.polyval(POLY[k], raw[:, i]) for i, k in enumerate(("sig", "bak", "ovrl"))], axis=1)
        out: list[DnsmosScores | None] = []
        at = 0
        for w in per:
            if len(w) == 0:
                out.append(None)
                continue
            m = mos[at : at + len(w)].mean(axis=0)
            at += len(w)
            out.append(DnsmosScores(*(round(float(v), 3) for v in m)))
        return out
