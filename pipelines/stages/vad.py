"""Silero VAD, batched across many streams at once.

Silero's model is STFT -> 4 conv blocks -> one LSTM cell -> a 1x1 conv, applied to 32 ms windows (512 samples at
16 kHz with 64 samples of left context, or 256 + 32 at 8 kHz). Only the LSTM carries state between windows, so this runs the
stateless front end (STFT + encoder) on the windows of *all* streams as one large batch, then the LSTM as
``torch.nn.LSTM`` over whole sequences, then the decoder on every step at once. The probabilities equal
Silero's own window-by-window stepping (tests check this to 1e-4) at a fraction of the cost.
The weights are the ones bundled in the ``silero-vad`` package: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000  # the rate of the audio handed to the VAD
FRAME_S = 0.032  # one probability per 32 ms window, at either model rate
_GEOMETRY = {16000: (512, 64), 8000: (256, 32)}  # window, left context


@dataclass
class VadConfig:
    threshold: float = 0.5
    neg_threshold: float | None = None  # default: threshold - 0.15
    min_speech_s: float = 0.25
    min_silence_s: float = 0.10
    speech_pad_s: float = 0.03
    batch_windows: int = 1024  # windows per front-end batch (small batches stay in cache: faster here)
    # Silero ships a 16 kHz and an 8 kHz model. At 8 kHz the front end costs about half as much per second of
    # audio (benchmarks/RESULTS.md); speech/non-speech decisions are what we need, not fine spectral detail.
    model_rate: int = 8000
    # Level the VAD hears: each stream is scaled so that its loud frames (95th percentile of 32 ms frame RMS)
    # sit at this level, within +-max_gain_db. Silero was trained on speech at ordinary levels and calls far-field
    # speech at -45 dBFS silence; scaling makes the decision level-independent. None: audio as given.
    level_dbfs: float | None = -20.0
    max_gain_db: float = 40.0
    # Energy extension of region edges (None: off): each region grows outwards, by at most extend_max_s per side,
    # over 10 ms frames whose energy stays more than extend_db above the recording's noise floor (the 10th
    # percentile of its frame energies). Silero ends regions early on the quiet tails of far-field speech; this
    # keeps them without a fixed padding that would add silence to every region of clean speech.
    extend_db: float | None = None
    extend_max_s: float = 0.3


class SileroVad:
    """Holds the model; ``probs(streams)`` returns one speech-probability array per stream (one per 32 ms).

    Streams are float32 mono at 16 kHz; with ``model_rate=8000`` they are decimated by soxr first."""

    def __init__(self, batch_windows: int = 1024, model_rate: int = 8000, level_dbfs: float | None = -20.0,
                 max_gain_db: float = 40.0) -> None:
        import silero_vad

        if model_rate not in _GEOMETRY:
            raise ValueError(f"vad.model_rate must be 8000 or 16000, not {model_rate}")
        jit = silero_vad.load_silero_vad()  # bundled weights
        inner = jit._model if model_rate == 16000 else jit._model_8k
        self.model_rate = model_rate
        self.window, self.context = _GEOMETRY[model_rate]
        # The front end runs eagerly with the model's own tensors (about 20% faster than the TorchScript
        # interpreter here, and equal to it): reflect-pad, STFT as a strided conv with the model's basis,
        # magnitude, then four conv(k=3, pad=1)+ReLU blocks with strides 1, 2, 2, 1.
        self._basis = inner.stft.forward_basis_buffer.detach().clone()
        self._hop = int(inner.stft.hop_length)
        self._pad = self.context  # the model reflect-pads each window on the right by its context size
        self._convs = []
        for i, stride in enumerate((1, 2, 2, 1)):
            conv = inner.encoder._modules[str(i)].reparam_conv
            self._convs.append((conv.weight.detach().clone(), conv.bias.detach().clone(), stride))
        self._decoder = inner.decoder.decoder
        rnn = inner.decoder.rnn
        hidden = rnn.weight_hh.shape[1]
        self._lstm = torch.nn.LSTM(rnn.weight_ih.shape[1], hidden, batch_first=True)
        with torch.no_grad():
            self._lstm.weight_ih_l0.copy_(rnn.weight_ih)
            self._lstm.weight_hh_l0.copy_(rnn.weight_hh)
            self._lstm.bias_ih_l0.copy_(rnn.bias_ih)
            self._lstm.bias_hh_l0.copy_(rnn.bias_hh)
        self._lstm.eval()
        self._hidden = hidden
        self.batch_windows = batch_windows
        self.block_windows = 8192  # windows per time block (262 s at either model rate)
        self.level_dbfs = level_dbfs
        self.max_gain_db = max_gain_db

    def gain(self, x: np.ndarray) -> float:
        """The factor that brings ``x``'s loud frames to ``level_dbfs`` (1.0 when levelling is off or ``x`` is
        digital silence)."""
        return level_gain(x, self.level_dbfs, self.max_gain_db)

    def _front(self, w: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        x = F.pad(w[:, None, :], (0, self._pad), mode="reflect")
        ft = F.conv1d(x, self._basis, stride=self._hop)
        cut = ft.shape[1] // 2
        x = torch.sqrt(ft[:, :cut] ** 2 + ft[:, cut:] ** 2)
        for weight, bias, stride in self._convs:
            x = F.relu(F.conv1d(x, weight, bias, stride=stride, padding=1))
        return x.squeeze(-1)

    def _to_model_rate(self, x: np.ndarray) -> np.ndarray:
        if self.model_rate == SAMPLE_RATE:
            return np.ascontiguousarray(x, dtype=np.float32)
        import soxr

        return soxr.resample(np.ascontiguousarray(x, dtype=np.float32), SAMPLE_RATE, self.model_rate, quality="LQ")

    @torch.inference_mode()
    def probs(self, streams: list[np.ndarray]) -> list[np.ndarray]:
        """One speech probability per 32 ms window of each stream. The streams are walked in time blocks of
        ``block_windows`` windows with the LSTM state carried from block to block (the same outputs as one pass),
        so a long recording costs one block of windows and features on top of its audio, not copies of it."""
        if not streams:
            return []
        W, C, H = self.window, self.context, self._hidden
        xs = [torch.from_numpy(self._to_model_rate(x)) for x in streams]
        gains = [self.gain(x.numpy()) for x in xs]
        counts = [max(1, (len(x) + W - 1) // W) for x in xs]
        out = [np.empty(n, dtype=np.float32) for n in counts]
        state = None
        for t0 in range(0, max(counts), self.block_windows):
            t1 = t0 + self.block_windows
            windows, active = [], []
            for b, (x, g, n) in enumerate(zip(xs, gains, counts)):
                if t0 >= n:  # this stream has ended: its LSTM input is padding, its outputs are dropped
                    continue
                m = min(t1, n) - t0
                lo = t0 * W - C
                seg = x[max(lo, 0) : (t0 + m) * W]
                if g != 1.0:
                    seg = seg * g
                seg = torch.nn.functional.pad(seg, (max(-lo, 0), m * W + C - len(seg) - max(-lo, 0)))
                windows.append(seg.unfold(0, W + C, W))
                active.append((b, m))
            allw = torch.cat(windows)
            feats = torch.empty(len(allw), H)
            for i in range(0, len(allw), self.batch_windows):
                feats[i : i + self.batch_windows] = self._front(allw[i : i + self.batch_windows])
            seq = torch.zeros(len(streams), max(m for _, m in active), H)
            off = 0
            for b, m in active:
                seq[b, :m] = feats[off : off + m]
                off += m
            hidden, state = self._lstm(seq, state)
            p = self._decoder(hidden.reshape(-1, H, 1)).reshape(len(streams), -1)
            for b, m in active:
                out[b][t0 : t0 + m] = p[b, :m].numpy()
        return out


def level_gain(x: np.ndarray, level_dbfs: float | None, max_gain_db: float = 40.0, frame: int = 256) -> float:
    """Gain that puts the 95th percentile of ``x``'s frame RMS at ``level_dbfs``, clipped to +-``max_gain_db``;
    1.0 for ``level_dbfs=None`` or audio quieter than -100 dBFS everywhere."""
    if level_dbfs is None or len(x) == 0:
        return 1.0
    from pipelines.stages.quality import frame_power

    rms = np.sqrt(frame_power(np.asarray(x, dtype=np.float32), frame))
    loud = float(np.percentile(rms, 95))
    if loud < 1e-5:
        return 1.0
    db = float(np.clip(level_dbfs - 20 * np.log10(loud), -max_gain_db, max_gain_db))
    return float(10 ** (db / 20))


def speech_regions(prob: np.ndarray, n_samples: int, cfg: VadConfig, sr: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """Hysteresis over per-window probabilities -> [(start_s, end_s)], padded and merged (Silero's rules)."""
    thr = cfg.threshold
    neg = cfg.neg_threshold if cfg.neg_threshold is not None else max(thr - 0.15, 0.01)
    dur = n_samples / sr
    min_sil = max(1, int(round(cfg.min_silence_s / FRAME_S)))
    regions: list[list[float]] = []
    start = None
    below = 0
    for i, p in enumerate(prob):
        if start is None:
            if p >= thr:
                start, below = i, 0
        else:
            if p < neg:
                below += 1
                if below >= min_sil:
                    regions.append([start * FRAME_S, (i - below + 1) * FRAME_S])
                    start, below = None, 0
            else:
                below = 0
    if start is not None:
        regions.append([start * FRAME_S, min(len(prob) * FRAME_S, dur)])
    out: list[list[float]] = []
    for s, e in regions:
        if e - s < cfg.min_speech_s:
            continue
        s, e = max(0.0, s - cfg.speech_pad_s), min(dur, e + cfg.speech_pad_s)
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in out]


def speech_mask(regions: list[tuple[float, float]], n: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for s, e in regions:
        m[int(s * sr) : int(e * sr)] = True
    return m


def extend_regions(regions: list[tuple[float, float]], x: np.ndarray, cfg: VadConfig,
                   sr: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """``regions`` grown over the adjacent frames that are louder than the noise floor (``cfg.extend_db``,
    ``cfg.extend_max_s``; see :class:`VadConfig`), overlapping ones merged. Unchanged when ``extend_db`` is None."""
    if cfg.extend_db is None or not regions:
        return regions
    hop = sr // 100  # 10 ms frames
    m = len(x) // hop
    if m == 0:
        return regions
    e = 10 * np.log10(np.mean(np.square(np.asarray(x[: m * hop], dtype=np.float64)).reshape(m, hop), axis=1) + 1e-12)
    active = e > np.percentile(e, 10) + cfg.extend_db
    most = round(cfg.extend_max_s * 100)
    out: list[list[int]] = []
    for s, t in regions:
        a, b = round(s * 100), min(m, round(t * 100))
        lo = a - most
        while a > max(lo, 0) and active[a - 1]:
            a -= 1
        hi = b + most
        while b < min(hi, m) and active[b]:
            b += 1
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    dur = len(x) / sr
    return [(round(a / 100, 3), round(min(b / 100, dur), 3)) for a, b in out]
