"""Speaker diarization: who spoke when, as ``[(start_s, end_s, speaker), ...]`` (docs/DESIGN.md §7).

Two backends behind one entry point, :func:`diarize`:

``embedded`` (default; CPU; nothing downloaded at run time)
    Silero VAD (bundled 16 kHz weights, batched across streams; each stream levelled so its loud frames sit at
    -20 dBFS, so quiet far-field speech is not taken for silence) finds speech regions, whose edges then grow
    over frames louder than the recording's noise floor (``VadConfig.extend_db``: quiet tails Silero cuts).
    Inside them, sliding windows (1.5 s, hop 0.5 s) are embedded with resemblyzer's ``VoiceEncoder`` (a 3-layer
    LSTM speaker encoder whose weights ship inside the ``resemblyzer`` package); the mel features are computed
    once per chunk and all windows go through the LSTM in large batches. Windows are clustered spectrally
    (pruned cosine affinity, normalized Laplacian, speaker count from the largest eigen-gap unless
    ``num_speakers`` is given, clipped to ``[min_speakers, max_speakers]``); clusters with near-identical
    centroids are merged and clusters with too little speech folded into their nearest. Then re-segmentation,
    as VBx does it on a small scale: every 10 ms speech frame gets each speaker's score (centre-weighted mean
    cosine similarity of the windows covering it to that speaker's centroid) and a Viterbi pass in which each
    change of speaker costs ``switch_cost`` picks one speaker per frame, so speakers change inside continuous
    speech without flicker; centroids are re-estimated from the path (``reseg_iters``) and speakers left with
    under ``min_speaker_s`` dropped. Same-speaker pieces closer than ``fill_gap_s`` are joined. pyannote's
    segmentation-3.0 (pipelines/stages/segmentation.py; ``segmentation.model`` "off" skips it) adds four
    things: frames it hears as speech are labelled too (quiet voices Silero misses); embedding windows are cut
    where it hears a speaker start or stop (a window holds one voice); frames where it hears two speakers get a
    second speaker (the runner-up of the frame's scores when close to the best, runs of at least
    ``min_overlap_s``); a 10 s chunk in which it hears N speakers each talking alone long enough keeps at
    least N speakers; and each voice it hears alone that long, unlike every speaker found, is offered as a
    speaker and kept if the re-segmentation gives it ``min_speaker_s``.
    Audio is analysed ``chunk_s`` at a time (``diarize_stream`` takes blocks), so an hour of audio needs the
    models plus one chunk plus the embeddings in memory.

``pyannote``
    pyannote.audio's own ``SpeakerDiarization`` pipeline loaded from a local directory laid out like
    ``pyannote/speaker-diarization-community-1`` (``config.yaml``, ``segmentation/``, ``embedding/``,
    ``plda/``). Nothing is fetched from the Hugging Face hub; missing files raise an error that says which,
    where to get them, and that hub access is not available here.

Both are model-holding classes usable as Ray Data ``map_batches`` stages: ``__init__`` loads the models,
``__call__(batch) -> batch`` reads an ``audio`` column (1-D float arrays; optional ``sample_rate`` column,
default 16 kHz) and adds ``diarization`` (JSON list of ``{"start_s", "end_s", "speaker"}``) and
``num_speakers`` columns.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.stages.segmentation import SegmentationConfig, Talk
from pipelines.stages.vad import SAMPLE_RATE, SileroVad, VadConfig, extend_regions, speech_regions

Segment = tuple[float, float, str]

FRAME_S = 0.01  # resemblyzer's mel hop (10 ms): the time grid of the embedded backend
_N_FFT, _HOP, _N_MELS = 400, 160, 40  # resemblyzer: 25 ms window, 10 ms step, 40 mel bands at 16 kHz
_TARGET_DBFS = -30.0  # resemblyzer normalizes input volume to this before its (power, not log) mel
_MEL_BLOCK = 6000  # mel frames computed per STFT call (60 s)

COMMUNITY_1 = "pyannote/speaker-diarization-community-1"
PYANNOTE_FILES = (
    "config.yaml",
    "segmentation/pytorch_model.bin",
    "embedding/pytorch_model.bin",
    "plda/xvec_transform.npz",
    "plda/plda.npz",
)


@dataclass
class DiarizeConfig:
    backend: str = "embedded"  # "embedded" | "pyannote"
    checkpoint: str | None = None  # pyannote: local directory laid out like pyannote/speaker-diarization-community-1
    num_speakers: int | None = None  # known number of speakers; None: found automatically
    min_speakers: int = 1
    max_speakers: int = 8
    device: str = "cpu"
    # --- embedded backend ---
    window_s: float = 1.5  # embedding window
    hop_s: float = 0.5  # window hop inside a speech region
    min_window_s: float = 0.3  # speech regions shorter than this get no window (they take the nearest label)
    cluster_min_s: float = 1.0  # windows shorter than this are assigned to a centroid, not clustered
    batch_size: int = 128  # windows per LSTM batch
    # Spectral clustering of the windows (cosine affinity; each row keeps its `prune` fraction of strongest
    # links; normalized Laplacian; speakers = the largest eigen-gap among the first max_speakers + 1
    # eigenvalues). prune calibrated on the real dev set's trn* files (benchmarks/RESULTS.md [8]).
    prune: float = 0.3
    # Clusters whose centroids are more similar than this (cosine) are one speaker. On the dev set distinct
    # speakers reach 0.845 and DER is flat from 0.85 to 0.96; espeak dialogs split one voice at 0.90-0.93.
    merge_sim: float = 0.88
    min_speaker_s: float = 2.0  # a cluster whose windows cover less speech than this joins its nearest one
    fill_gap_s: float = 0.3  # same-speaker segments closer than this are joined
    min_overlap_s: float = 0.2  # a second speaker in overlap is emitted for at least this long (0.05: same real DER, more synthetic FA)
    # ... and only where its frame score is within this of the best speaker's. In the dev set's overlaps the median
    # gap is 0.13; in the synthetic dialogs' (mostly one voice) 0.30: 0.2 keeps real DER and cuts synthetic false alarm
    overlap_margin: float = 0.2
    # Re-segmentation: a Viterbi pass over per-frame speaker scores (centre-weighted mean cosine similarity of the
    # covering windows to each speaker's centroid) where each change of speaker costs switch_cost similarity-
    # seconds; the centroids are re-estimated from the path reseg_iters times. DER on the dev set is flat from
    # 0.005 to 0.1 (benchmarks/RESULTS.md [8]); 0.03 lets a clearly different voice take over within ~0.15 s.
    switch_cost: float = 0.03
    reseg_iters: int = 1
    max_cluster_windows: int = 2000  # cluster at most this many windows (evenly spaced); assign the rest
    chunk_s: float = 300.0  # audio analysed (VAD, features, embeddings) at a time: bounds memory on long media
    # Silero's 16 kHz model with a low hysteresis floor: far-field speech keeps its quiet tails. Calibrated on
    # the real dev set's trn* files under the constraint that synthetic (exactly annotated) DER does not grow.
    vad: VadConfig = field(default_factory=lambda: VadConfig(threshold=0.2, neg_threshold=0.05, model_rate=16000,
                                                             extend_db=6.0))
    # pyannote's segmentation-3.0 (pipelines/stages/segmentation.py): speakers talking per frame, for speech that
    # Silero misses and for overlapped speech (a second speaker). model "off" turns it off.
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)

    def validate(self) -> None:
        if self.backend not in ("embedded", "pyannote"):
            raise ValueError(f"diarize backend must be 'embedded' or 'pyannote', not {self.backend!r}")
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ValueError(f"num_speakers must be at least 1 (got {self.num_speakers})")
        if not (1 <= self.min_speakers <= self.max_speakers):
            raise ValueError(f"need 1 <= min_speakers <= max_speakers (got {self.min_speakers}, {self.max_speakers})")
        if not (0 < self.prune <= 1):
            raise ValueError(f"prune must be in (0, 1] (got {self.prune})")
        if self.chunk_s < 10 * self.window_s:
            raise ValueError(f"chunk_s must be at least {10 * self.window_s} s (got {self.chunk_s})")
        if not (0 < self.hop_s <= self.window_s):
            raise ValueError(f"need 0 < hop_s <= window_s (got {self.hop_s}, {self.window_s})")
        self.segmentation.validate()
        if self.backend == "pyannote" and not self.checkpoint:
            raise ValueError(
                "the pyannote backend needs checkpoint=PATH: a local directory laid out like "
                f"{COMMUNITY_1} ({', '.join(PYANNOTE_FILES)})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# helpers shared by both backends


def to_mono16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """float32 mono at 16 kHz from ``[T]`` or ``[C, T]`` audio at ``sr`` (channels averaged, soxr resampling)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0) if x.shape[0] > 1 else x[0]
    elif x.ndim != 1:
        raise ValueError(f"audio must be [samples] or [channels, samples], got shape {x.shape}")
    if sr != SAMPLE_RATE:
        from storage.audio import resample

        x = resample(x[None], int(sr), SAMPLE_RATE)[0]
    return np.ascontiguousarray(x, dtype=np.float32)


def _batch_call(diarizer, batch: dict[str, Any]) -> dict[str, Any]:
    """Ray Data ``map_batches`` body shared by both backends (numpy batch format)."""
    audios = list(batch["audio"])
    srs = batch.get("sample_rate")
    srs = [SAMPLE_RATE] * len(audios) if srs is None else [int(s) for s in np.asarray(srs).reshape(-1)]
    results = diarizer.diarize_many([to_mono16k(np.asarray(a), sr) for a, sr in zip(audios, srs)])
    out = dict(batch)
    out["diarization"] = np.array(
        [json.dumps([{"start_s": s, "end_s": e, "speaker": k} for s, e, k in segs]) for segs in results], dtype=object
    )
    out["num_speakers"] = np.array([len({k for _, _, k in segs}) for segs in results], dtype=np.int32)
    return out


def segments_from_json(text: str) -> list[Segment]:
    """The ``diarization`` column of a batch back to ``[(start_s, end_s, speaker)]``."""
    return [(float(d["start_s"]), float(d["end_s"]), str(d["speaker"])) for d in json.loads(text)]


# ----------------------------------------------------------------------------------------------------------
# embedded backend


def _window_spans(f0: int, f1: int, win: int, hop: int, min_len: int) -> list[tuple[int, int]]:
    """Windows (frame index ranges) covering the region [f0, f1): full windows at ``hop`` steps, the last one
    aligned to the region's end; a region shorter than ``win`` is one window of its own length."""
    n = f1 - f0
    if n < min_len:
        return []
    if n <= win:
        return [(f0, f1)]
    spans = [(a, a + win) for a in range(f0, f1 - win + 1, hop)]
    if spans[-1][1] < f1:
        spans.append((f1 - win, f1))
    return spans


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    c = np.stack([emb[labels == i].mean(axis=0) for i in range(k)])
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-9)


def cluster_embeddings(emb: np.ndarray, cfg: DiarizeConfig, num_speakers: int | None = None,
                       min_speakers: int | None = None) -> np.ndarray:
    """Speaker index per embedding (L2-normalized rows) by spectral clustering.

    The cosine affinity matrix is pruned row by row to its ``cfg.prune`` strongest entries and symmetrized;
    the number of speakers is the position of the largest gap among the first ``max_speakers + 1`` eigenvalues
    of its normalized Laplacian (clipped to ``[min_speakers, max_speakers]``; ``min_speakers`` defaults to the
    config's), or ``num_speakers`` when given; k-means on the row-normalized leading eigenvectors gives the labels."""
    from sklearn.cluster import KMeans

    n = len(emb)
    num_speakers = num_speakers if num_speakers is not None else cfg.num_speakers
    if n < 3 or num_speakers == 1:
        return np.zeros(n, dtype=np.int64)
    a = (emb @ emb.T).astype(np.float64)
    np.fill_diagonal(a, 0.0)
    keep = max(2, int(np.ceil(cfg.prune * n)))
    idx = np.argpartition(-a, keep - 1, axis=1)[:, :keep]
    rows = np.arange(n)[:, None]
    m = np.zeros_like(a)
    m[rows, idx] = a[rows, idx]
    m = np.maximum((m + m.T) / 2, 0.0)
    d = m.sum(axis=1)
    dm = 1.0 / np.sqrt(np.maximum(d, 1e-9))
    lap = np.eye(n) - dm[:, None] * m * dm[None, :]
    w, v = np.linalg.eigh(lap)
    kmax = max(1, min(cfg.max_speakers, n - 1))
    if num_speakers is not None:
        k = min(num_speakers, n - 1)
    else:
        k = int(np.argmax(np.diff(w[: kmax + 1]))) + 1
        k = min(max(k, cfg.min_speakers if min_speakers is None else min_speakers), kmax)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    x = v[:, :k] / np.maximum(np.linalg.norm(v[:, :k], axis=1, keepdims=True), 1e-9)
    lab = KMeans(k, n_init=10, random_state=0).fit_predict(x)
    # clusters numbered by first appearance (stable speaker names)
    order = {u: i for i, u in enumerate(dict.fromkeys(lab.tolist()))}
    return np.array([order[u] for u in lab.tolist()], dtype=np.int64)


def _merge_close(emb: np.ndarray, labels: np.ndarray, min_sim: float, min_k: int) -> np.ndarray:
    """Merge the two clusters with the most similar centroids while that similarity is at least ``min_sim``."""
    labels = labels.copy()
    while True:
        uniq = list(dict.fromkeys(labels.tolist()))
        labels = np.array([uniq.index(u) for u in labels.tolist()], dtype=np.int64)
        k = len(uniq)
        if k <= max(min_k, 1):
            return labels
        c = _centroids(emb, labels, k)
        sim = c @ c.T
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[i, j] < min_sim:
            return labels
        labels[labels == max(i, j)] = min(i, j)


def _fold_small(emb: np.ndarray, labels: np.ndarray, seconds: np.ndarray, min_s: float, min_k: int) -> np.ndarray:
    """Fold the cluster with the least speech into its nearest (centroid cosine) while it has under ``min_s``
    seconds and more than ``min_k`` clusters remain; labels renumbered by first appearance."""
    labels = labels.copy()
    while True:
        uniq = list(dict.fromkeys(labels.tolist()))
        labels = np.array([uniq.index(u) for u in labels.tolist()], dtype=np.int64)
        k = len(uniq)
        dur = np.bincount(labels, weights=seconds, minlength=k)
        small = int(np.argmin(dur))
        if k <= max(min_k, 1) or dur[small] >= min_s:
            return labels
        c = _centroids(emb, labels, k)
        sim = c @ c[small]
        sim[small] = -np.inf
        labels[labels == small] = int(np.argmax(sim))


def _voice_encoder_class():
    """resemblyzer's ``VoiceEncoder``, imported without the warnings its package prints on import in every process
    (its ``audio`` module imports ``webrtcvad``, whose ``import pkg_resources`` warns that setuptools will drop it,
    and ``scipy.ndimage.morphology``, deprecated): they say nothing about this job, and we use neither module."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*scipy\.ndimage\.morphology.*", category=DeprecationWarning)
        from resemblyzer import VoiceEncoder
    return VoiceEncoder


class EmbeddedDiarizer:
    """VAD + resemblyzer speaker embeddings + clustering, on CPU, with no downloads.

    ``diarize(audio16k)`` for one recording; ``diarize_many(list)`` batches the VAD and the encoder across
    recordings; ``__call__(batch)`` is the Ray Data ``map_batches`` form."""

    def __init__(self, cfg: DiarizeConfig | None = None) -> None:
        import librosa  # resemblyzer's own dependency: the mel filterbank it uses
        import torch

        VoiceEncoder = _voice_encoder_class()

        self.cfg = cfg or DiarizeConfig()
        self.cfg.validate()
        self.vad = SileroVad(self.cfg.vad.batch_windows, self.cfg.vad.model_rate, self.cfg.vad.level_dbfs,
                             self.cfg.vad.max_gain_db)
        self.encoder = VoiceEncoder(device=self.cfg.device, verbose=False).eval()
        self.segmentation = _load_segmentation(self.cfg)
        self._device = torch.device(self.cfg.device)
        self._window = torch.hann_window(_N_FFT, periodic=True, device=self._device)
        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=_N_FFT, n_mels=_N_MELS)
        self._mel_fb = torch.from_numpy(fb.astype(np.float32)).to(self._device)  # [40, 201]

    # -- features ------------------------------------------------------------------------------------------
    def _mel(self, x: np.ndarray, regions: list[tuple[float, float]]):
        """[frames, 40] power mel of the whole recording (frame i centred at sample 160 i, as librosa's
        ``center=True`` with zero padding), scaled as if the audio were normalized to -30 dBFS over its speech."""
        import torch

        from pipelines.stages.vad import speech_mask

        m = speech_mask(regions, len(x))
        rms = float(np.sqrt(np.mean(np.square(x[m], dtype=np.float64)))) if m.any() else 0.0
        gain = 10 ** (_TARGET_DBFS / 20) / rms if rms > 1e-6 else 1.0
        gain = min(max(gain, 1e-2), 1e3)
        # frame i covers padded samples [160 i, 160 i + 400): computed in blocks so hours of audio stay small
        xp = torch.nn.functional.pad(torch.from_numpy(x).to(self._device), (_N_FFT // 2, _N_FFT // 2))
        n_frames = 1 + len(x) // _HOP
        out = torch.empty(n_frames, _N_MELS, device=self._device)
        for f0 in range(0, n_frames, _MEL_BLOCK):
            f1 = min(n_frames, f0 + _MEL_BLOCK)
            seg = xp[f0 * _HOP : (f1 - 1) * _HOP + _N_FFT]
            spec = torch.stft(seg, _N_FFT, _HOP, window=self._window, center=False, return_complex=True)
            out[f0:f1] = (self._mel_fb @ (spec.real.square() + spec.imag.square())).T
        return out * (gain * gain)

    def _embed(self, windows: list):
        """L2-normalized embeddings of mel windows ([frames, 40] tensors of any length)."""
        import torch
        from torch.nn.utils.rnn import pack_sequence

        enc = self.encoder
        out = torch.empty(len(windows), enc.linear.in_features, device=self._device)
        full = max((len(w) for w in windows), default=0)
        idx_full = [i for i, w in enumerate(windows) if len(w) == full]
        idx_var = [i for i, w in enumerate(windows) if len(w) != full]
        bs = self.cfg.batch_size
        with torch.inference_mode():
            for i in range(0, len(idx_full), bs):
                ids = idx_full[i : i + bs]
                _, (h, _) = enc.lstm(torch.stack([windows[j] for j in ids]))
                out[ids] = h[-1]
            idx_var.sort(key=lambda j: -len(windows[j]))
            for i in range(0, len(idx_var), bs):
                ids = idx_var[i : i + bs]
                _, (h, _) = enc.lstm(pack_sequence([windows[j] for j in ids], enforce_sorted=True))
                out[ids] = h[-1]
            e = enc.relu(enc.linear(out))
            e = e / torch.clamp(torch.norm(e, dim=1, keepdim=True), min=1e-9)
        return e.cpu().numpy()

    # -- main ----------------------------------------------------------------------------------------------
    def diarize(self, audio: np.ndarray, sr: int = SAMPLE_RATE, num_speakers: int | None = None) -> list[Segment]:
        return self.diarize_many([to_mono16k(audio, sr)], num_speakers=num_speakers)[0]

    def diarize_many(self, audios: Sequence[np.ndarray], num_speakers: int | None = None) -> list[list[Segment]]:
        """Diarize 16 kHz mono float32 recordings. Recordings are cut into ``chunk_s`` pieces; VAD and the
        encoder run batched over the pieces of several recordings (at most ``chunk_s`` of audio at a time)."""
        audios = [np.ascontiguousarray(a, dtype=np.float32) for a in audios]
        step = int(self.cfg.chunk_s * SAMPLE_RATE)
        pieces = [(i, off) for i, x in enumerate(audios) for off in range(0, max(len(x), 1), step)]
        items = [self._new_item() for _ in audios]
        group: list[tuple[int, int]] = []
        for j, (i, off) in enumerate(pieces + [(-1, 0)]):
            size = sum(min(step, len(audios[g]) - o) for g, o in group)
            if group and (i < 0 or size + min(step, len(audios[i]) - off) > step):
                chunks = [audios[g][o : o + step] for g, o in group]
                for (g, o), feats in zip(group, self._features(chunks)):
                    self._add(items[g], o, feats)
                group = []
            if i >= 0:
                group.append((i, off))
        return [self._finish(item, len(x), num_speakers) for item, x in zip(items, audios)]

    def diarize_stream(self, blocks: Iterable[np.ndarray], num_speakers: int | None = None) -> list[Segment]:
        """Diarize one recording handed over as consecutive 16 kHz mono float32 blocks (any sizes): at most
        ``chunk_s`` of audio is held at a time, so memory stays bounded on hour-long media."""
        step = int(self.cfg.chunk_s * SAMPLE_RATE)
        item = self._new_item()
        buf: list[np.ndarray] = []
        have = done = 0
        for blk in blocks:
            buf.append(np.asarray(blk, dtype=np.float32).reshape(-1))
            have += len(buf[-1])
            while have >= step:
                cat = np.concatenate(buf)
                (feats,) = self._features([cat[:step]])
                self._add(item, done, feats)
                done += step
                buf, have = [cat[step:]], have - step
        if have:
            (feats,) = self._features([np.concatenate(buf)])
            self._add(item, done, feats)
            done += have
        return self._finish(item, done, num_speakers)

    # -- pieces --------------------------------------------------------------------------------------------
    @staticmethod
    def _new_item() -> dict:
        return {"regions": [], "spans": [], "emb": [], "overlap": [], "local": 0, "voices": []}

    def _features(self, chunks: list[np.ndarray]) -> list[Features]:
        """Per chunk: speech regions, embedding windows and their embeddings, what the segmentation model hears,
        and an embedding of each voice it hears alone long enough."""
        cfg = self.cfg
        probs = self.vad.probs(chunks)
        win, hop = round(cfg.window_s / FRAME_S), round(cfg.hop_s / FRAME_S)
        min_len = max(1, round(cfg.min_window_s / FRAME_S))
        per, windows = [], []
        for x, p in zip(chunks, probs):
            vad = extend_regions(speech_regions(p, len(x), cfg.vad), x, cfg.vad)
            talk = self.segmentation.analyse(x) if self.segmentation is not None else None
            spans = []
            if vad:  # embedding windows only where Silero hears speech: the clearest voice of each speaker
                mel = self._mel(x, vad)
                # cut where the segmentation model hears a speaker start or stop: windows hold one voice
                pieces = vad if talk is None else _split_regions(vad, talk.changes, cfg.min_window_s)
                for s, e in pieces:
                    for a, b in _window_spans(round(s / FRAME_S), min(mel.shape[0], round(e / FRAME_S)), win, hop, min_len):
                        spans.append((a, b))
                        windows.append(mel[a:b])
            # frames to label: also those the segmentation model hears as speech (they take their nearest windows)
            regions = vad if talk is None else _union_regions(vad, talk.count >= cfg.segmentation.speech_min)
            # voices the model hears alone for min_local_s: one embedding each, offered as speakers later
            voices = [] if talk is None or not vad else [g[g < mel.shape[0]] for g in talk.alone]
            voices = [g for g in voices if len(g)]
            windows += [mel[g] for g in voices]
            per.append((regions, spans, talk, len(voices)))
        emb = self._embed(windows) if windows else np.zeros((0, 256), np.float32)
        out, k = [], 0
        for regions, spans, talk, n_voices in per:
            out.append(Features(regions, spans, emb[k : k + len(spans)], talk,
                                emb[k + len(spans) : k + len(spans) + n_voices]))
            k += len(spans) + n_voices
        return out

    @staticmethod
    def _add(item: dict, offset: int, feats: Features) -> None:
        """Append one chunk's features at ``offset`` samples; a region cut by the chunk boundary is rejoined.
        Chunks are whole multiples of 10 ms long (``chunk_s``), so the per-frame counts simply follow each other."""
        regions, spans, emb, talk, voices = feats.regions, feats.spans, feats.emb, feats.talk, feats.voices
        if len(voices):
            item["voices"].append(voices)
        t0, f0 = offset / SAMPLE_RATE, round(offset / SAMPLE_RATE / FRAME_S)
        for s, e in regions:
            s, e = round(s + t0, 3), round(e + t0, 3)
            if item["regions"] and s - item["regions"][-1][1] <= FRAME_S:
                item["regions"][-1] = (item["regions"][-1][0], e)
            else:
                item["regions"].append((s, e))
        item["spans"].extend((a + f0, b + f0) for a, b in spans)
        if len(emb):
            item["emb"].append(emb)
        if talk is not None:
            item["overlap"].append(talk.overlap)
            item["local"] = max(item["local"], talk.local_speakers)

    def _finish(self, item: dict, n: int, num_speakers: int | None) -> list[Segment]:
        emb = np.concatenate(item["emb"]) if item["emb"] else np.zeros((0, 256), np.float32)
        overlap = np.concatenate(item["overlap"]) if item["overlap"] else None
        # at least as many speakers as one chunk was heard to hold (within the configured bounds)
        min_k = min(max(self.cfg.min_speakers, item["local"]), self.cfg.max_speakers)
        voices = np.concatenate(item["voices"]) if item["voices"] else None
        return self._segments({"n": n, "regions": item["regions"], "spans": item["spans"], "overlap": overlap,
                               "min_k": min_k, "voices": voices}, emb, num_speakers)

    def _labels(self, emb: np.ndarray, spans: list[tuple[int, int]], num_speakers: int | None,
                min_k: int) -> np.ndarray:
        cfg = self.cfg
        lengths = np.array([b - a for a, b in spans]) * FRAME_S
        good = np.flatnonzero(lengths >= min(cfg.cluster_min_s, lengths.max()))
        if len(good) > cfg.max_cluster_windows:
            good = good[np.linspace(0, len(good) - 1, cfg.max_cluster_windows).round().astype(int)]
        lab_good = cluster_embeddings(emb[good], cfg, num_speakers, min_k)
        k = int(lab_good.max()) + 1
        labels = lab_good
        if len(good) < len(emb):
            labels = np.argmax(emb @ _centroids(emb[good], lab_good, k).T, axis=1)
            labels[good] = lab_good
        if num_speakers is None and cfg.num_speakers is None:
            labels = _merge_close(emb, labels, cfg.merge_sim, min_k)
            labels = _fold_small(emb, labels, np.minimum(lengths, cfg.hop_s), cfg.min_speaker_s, min_k)
        return labels

    def _segments(self, item: dict, emb: np.ndarray, num_speakers: int | None) -> list[Segment]:
        """Cluster, then re-segment: per-frame speaker scores -> Viterbi with a speaker-change cost, centroids
        re-estimated from the path ``reseg_iters`` times; speakers left with too little speech are dropped."""
        cfg = self.cfg
        regions, spans = item["regions"], item["spans"]
        n_frames = int(np.ceil(item["n"] / SAMPLE_RATE / FRAME_S)) + 1
        frames = _speech_frames(regions, n_frames)
        if not len(frames):
            return []
        if not spans:  # speech, but every region too short to embed: one speaker
            return [(round(s, 3), round(e, 3), "SPEAKER_00") for s, e in regions]
        min_k = item.get("min_k", cfg.min_speakers)  # the config's, raised by what the segmentation model heard
        labels = self._labels(emb, spans, num_speakers, min_k)
        cents = _centroids(emb, labels, int(labels.max()) + 1)
        acc = _WindowAccumulator(spans, n_frames)
        fixed = num_speakers is not None or cfg.num_speakers is not None
        for it in range(cfg.reseg_iters + 1):
            score = acc.frame_scores(emb @ cents.T, frames)
            path = _viterbi(score * FRAME_S, cfg.switch_cost)
            if it == cfg.reseg_iters:
                break
            wl = acc.window_labels(frames, path, len(cents))
            talk = np.bincount(path, minlength=len(cents)) * FRAME_S
            keep = list(range(len(cents))) if fixed else [c for c in range(len(cents))
                                                          if talk[c] >= cfg.min_speaker_s and np.any(wl == c)]
            if len(keep) < min_k:  # the hint wins: the speakers who talk most stay
                keep = sorted(np.argsort(-talk, kind="stable")[:min_k].tolist())
            new = np.stack([emb[wl == c].mean(axis=0) if np.any(wl == c) else cents[c] for c in keep])
            cents = new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-9)
        if not fixed and item.get("voices") is not None:
            cents, score, path = self._offer_voices(item["voices"], cents, acc, emb, frames, score, path)
        lab = np.full(n_frames, -1, dtype=np.int64)
        lab[frames] = path
        second = self._second_speaker(item.get("overlap"), frames, score, path, n_frames)
        # runs of one speaker; consecutive pieces of the same speaker closer than fill_gap_s are joined
        gap = round(cfg.fill_gap_s / FRAME_S)
        joined: list[list] = []
        for a, b, s2 in _runs(lab, 0):
            if s2 < 0:
                continue
            if joined and joined[-1][2] == s2 and a - joined[-1][1] <= gap:
                joined[-1][1] = b
            else:
                joined.append([a, b, s2])
        out: list[Segment] = []
        dur = item["n"] / SAMPLE_RATE
        names: dict[int, str] = {}
        for a, b, s2 in joined:
            name = names.setdefault(s2, f"SPEAKER_{len(names):02d}")
            out.append((round(a * FRAME_S, 3), round(min(b * FRAME_S, dur), 3), name))
        min_ov = round(self.cfg.min_overlap_s / FRAME_S)
        for a, b, s2 in _runs(second, 0):
            if s2 >= 0 and s2 in names and b - a >= min_ov:
                out.append((round(a * FRAME_S, 3), round(min(b * FRAME_S, dur), 3), names[s2]))
        return sorted(out)

    def _offer_voices(self, voices: np.ndarray, cents: np.ndarray, acc: _WindowAccumulator, emb: np.ndarray,
                      frames: np.ndarray, score: np.ndarray,
                      path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voices the segmentation model heard alone for ``min_local_s`` that are unlike every speaker found (cosine
        below ``merge_sim``) are offered as speakers: grouped (a voice joins a group whose mean it is ``merge_sim``
        like), each group's mean a new centroid, the path found again; an offered speaker who then talks under
        ``min_speaker_s`` is withdrawn. Clustering windows misses a third voice that talks for a few seconds (its
        windows join the nearest voice); heard alone by the model, its embedding is clean."""
        cfg = self.cfg
        unlike = voices[(voices @ cents.T).max(axis=1) < cfg.merge_sim]
        groups: list[list[np.ndarray]] = []
        for v in unlike:
            for g in groups:
                m = np.mean(g, axis=0)
                if float(v @ m) / max(float(np.linalg.norm(m)), 1e-9) >= cfg.merge_sim:
                    g.append(v)
                    break
            else:
                groups.append([v])
        if not groups or len(cents) + len(groups) > cfg.max_speakers:
            return cents, score, path
        new = np.stack([np.mean(g, axis=0) for g in groups])
        offered = np.concatenate([cents, new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-9)])
        k = len(cents)
        for _ in range(2):  # the path with the offered speakers; again without those who talk too little
            score_o = acc.frame_scores(emb @ offered.T, frames)
            path_o = _viterbi(score_o * FRAME_S, cfg.switch_cost)
            talk = np.bincount(path_o, minlength=len(offered)) * FRAME_S
            keep = list(range(k)) + [c for c in range(k, len(offered)) if talk[c] >= cfg.min_speaker_s]
            if len(keep) == len(offered):
                return offered, score_o, path_o
            if len(keep) == k:
                return cents, score, path
            offered = offered[keep]
        return cents, score, path

    def _second_speaker(self, overlap: np.ndarray | None, frames: np.ndarray, score: np.ndarray, path: np.ndarray,
                        n_frames: int) -> np.ndarray:
        """Per 10 ms frame, a second speaker (-1: none): where the segmentation model hears two speakers at once
        with probability at least ``overlap_p``, the speaker with the frame's second-best score, if that score is
        within ``overlap_margin`` of the best (a voice the frame's windows also hold, not merely the next one)."""
        second = np.full(n_frames, -1, dtype=np.int64)
        if overlap is None or score.shape[1] < 2:
            return second
        p = np.zeros(n_frames, np.float32)
        p[: min(n_frames, len(overlap))] = overlap[:n_frames]
        ov = np.flatnonzero(p[frames] >= self.cfg.segmentation.overlap_p)
        if len(ov):
            rows = np.arange(len(ov))
            s2 = score[ov].copy()
            best = s2[rows, path[ov]].copy()
            s2[rows, path[ov]] = -np.inf
            runner = np.argmax(s2, axis=1)
            second[frames[ov]] = np.where(best - s2[rows, runner] <= self.cfg.overlap_margin, runner, -1)
        return second

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return _batch_call(self, batch)


def _load_segmentation(cfg: DiarizeConfig):
    """The segmentation model the config names; "auto" without the wheel is said once and works without it."""
    from pipelines.stages import segmentation

    model = segmentation.load(cfg.segmentation, cfg.device)
    if model is None and cfg.segmentation.model == "auto":
        import logging

        logging.getLogger(__name__).warning(
            "diarization runs without the segmentation model (overlapped speech is not emitted and quiet speech "
            "may be missed): %s", segmentation.INSTALL_HINT)
    return model


@dataclass
class Features:
    """What one chunk of audio gives the diarizer."""

    regions: list[tuple[float, float]]  # speech (s)
    spans: list[tuple[int, int]]  # embedding windows (10 ms frames)
    emb: np.ndarray  # [windows, 256] their embeddings
    talk: Talk | None  # what the segmentation model hears (None without it)
    voices: np.ndarray  # [n, 256]: each voice the model hears alone for min_local_s


def _split_regions(regions: list[tuple[float, float]], changes: np.ndarray, min_s: float) -> list[tuple[float, float]]:
    """``regions`` (s) cut at the sorted ``changes`` (s) lying at least ``min_s`` inside them (a piece shorter than
    ``min_window_s`` then gets no window of its own: its frames take their nearest windows' scores)."""
    out = []
    for s, e in regions:
        cuts = changes[np.searchsorted(changes, s + min_s) : np.searchsorted(changes, e - min_s, side="right")]
        edges = [s, *cuts.tolist(), e]
        out.extend(zip(edges[:-1], edges[1:]))
    return out


def _union_regions(regions: list[tuple[float, float]], mask: np.ndarray) -> list[tuple[float, float]]:
    """Speech regions joined with the runs of ``mask`` (one flag per 10 ms frame), sorted and merged."""
    n = max(len(mask), round(max((e for _, e in regions), default=0.0) / FRAME_S) + 1)
    m = np.zeros(n, dtype=np.int64)
    m[: len(mask)] = mask
    for s, e in regions:
        m[round(s / FRAME_S) : round(e / FRAME_S)] = 1
    return [(round(a * FRAME_S, 3), round(b * FRAME_S, 3)) for a, b, on in _runs(m, 0) if on]


def _speech_frames(regions: list[tuple[float, float]], n_frames: int) -> np.ndarray:
    """Indices of the 10 ms frames inside speech regions, ascending."""
    m = np.zeros(n_frames, dtype=bool)
    for s, e in regions:
        m[round(s / FRAME_S) : min(n_frames, round(e / FRAME_S))] = True
    return np.flatnonzero(m)


class _WindowAccumulator:
    """Maps window-level speaker similarities onto the 10 ms frame grid (centre-weighted mean of the windows
    covering each frame; a speech frame no window covers takes the nearest covered frame's scores)."""

    def __init__(self, spans: list[tuple[int, int]], n_frames: int) -> None:
        self.spans = spans
        self.n = n_frames
        den = np.zeros(n_frames, dtype=np.float32)
        self.w = []
        for a, b in spans:
            L = b - a
            t = np.arange(L, dtype=np.float32)
            w = 1.0 - 0.9 * np.abs(t - (L - 1) / 2) / max((L - 1) / 2, 1.0)  # 1 at the centre -> 0.1 at the edges
            self.w.append(w)
            den[a:b] += w
        self.den = den

    def frame_scores(self, sim: np.ndarray, frames: np.ndarray) -> np.ndarray:
        k = sim.shape[1]
        num = np.zeros((self.n, k), dtype=np.float32)
        for (a, b), w, s in zip(self.spans, self.w, sim):
            num[a:b] += w[:, None] * s[None, :]
        covered = np.flatnonzero(self.den > 0)
        out = num[frames] / np.maximum(self.den[frames], 1e-9)[:, None]
        miss = self.den[frames] <= 0
        if miss.any() and len(covered):
            f = frames[miss]
            j = np.clip(np.searchsorted(covered, f), 1, len(covered) - 1) if len(covered) > 1 else np.zeros(len(f), int)
            if len(covered) > 1:
                j = np.where(np.abs(covered[j - 1] - f) <= np.abs(covered[j] - f), j - 1, j)
            c = covered[j]
            out[miss] = num[c] / self.den[c][:, None]
        return out

    def window_labels(self, frames: np.ndarray, path: np.ndarray, k: int) -> np.ndarray:
        """Each window's speaker: the path label with the most centre-weighted frames inside it."""
        lab = np.full(self.n, -1, dtype=np.int64)
        lab[frames] = path
        out = np.empty(len(self.spans), dtype=np.int64)
        for i, ((a, b), w) in enumerate(zip(self.spans, self.w)):
            seg = lab[a:b]
            ok = seg >= 0
            out[i] = int(np.argmax(np.bincount(seg[ok], weights=w[ok], minlength=k))) if ok.any() else -1
        return out


def _viterbi(score: np.ndarray, cost: float) -> np.ndarray:
    """Best state path through ``score`` [T, K] (higher is better) where every change of state costs ``cost``."""
    T, K = score.shape
    if K == 1 or T == 0:
        return np.zeros(T, dtype=np.int64)
    back = np.empty((T, K), dtype=np.int16)
    delta = score[0].astype(np.float64)
    ar = np.arange(K)
    for t in range(1, T):
        j = int(np.argmax(delta))
        best = delta[j] - cost
        stay = delta >= best
        back[t] = np.where(stay, ar, j)
        delta = np.where(stay, delta, best) + score[t]
    path = np.empty(T, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _runs(lab: np.ndarray, offset: int) -> list[list]:
    change = np.flatnonzero(np.diff(lab)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(lab)]])
    return [[offset + int(a), offset + int(b), int(lab[a])] for a, b in zip(starts, ends)]


# ----------------------------------------------------------------------------------------------------------
# pyannote backend


class PyannoteWeightsMissing(FileNotFoundError):
    pass


def check_pyannote_checkpoint(path: str | Path) -> Path:
    """The local pyannote pipeline directory, or an error that says what is missing and how to get it."""
    p = Path(path).expanduser()
    missing = [f for f in PYANNOTE_FILES if not (p / f).is_file()]
    if missing:
        where = "does not exist" if not p.exists() else f"lacks {', '.join(missing)}"
        raise PyannoteWeightsMissing(
            f"pyannote checkpoint directory {p} {where}. The pyannote backend needs a local copy of "
            f"{COMMUNITY_1} laid out as: {', '.join(PYANNOTE_FILES)}. Hugging Face hub access is not available "
            f"here, so nothing is downloaded: on a machine with hub access, accept the model's conditions at "
            f"https://huggingface.co/{COMMUNITY_1} and run `huggingface-cli download {COMMUNITY_1} "
            f"--local-dir DIR` (with your HF token), then copy DIR here and pass --checkpoint DIR. "
            f"Or use the default embedded backend (--backend embedded), which needs no download."
        )
    return p


def _pyannote_offline_env() -> None:
    # pyannote.audio >= 4 sends usage telemetry unless told not to, and the hub client would try the network.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class PyannoteDiarizer:
    """pyannote.audio's ``SpeakerDiarization`` pipeline from a local checkpoint directory."""

    def __init__(self, cfg: DiarizeConfig) -> None:
        self.cfg = cfg
        cfg.validate()
        path = check_pyannote_checkpoint(cfg.checkpoint or "")
        _pyannote_offline_env()
        import torch
        from pyannote.audio import Pipeline

        pipeline = Pipeline.from_pretrained(str(path))
        if pipeline is None:
            raise PyannoteWeightsMissing(f"pyannote could not load a pipeline from {path}")
        pipeline.to(torch.device(cfg.device))
        self.pipeline = pipeline

    def diarize(self, audio: np.ndarray, sr: int = SAMPLE_RATE, num_speakers: int | None = None) -> list[Segment]:
        import torch

        x = to_mono16k(audio, sr)
        n = num_speakers if num_speakers is not None else self.cfg.num_speakers
        kw: dict[str, Any] = {"num_speakers": n} if n is not None else {
            "min_speakers": self.cfg.min_speakers, "max_speakers": self.cfg.max_speakers}
        out = self.pipeline({"waveform": torch.from_numpy(x)[None], "sample_rate": SAMPLE_RATE}, **kw)
        ann = getattr(out, "speaker_diarization", out)  # pyannote 4 returns DiarizeOutput; 3.x an Annotation
        segs = [(round(float(t.start), 3), round(float(t.end), 3), str(k)) for t, _, k in ann.itertracks(yield_label=True)]
        return sorted(segs)

    def diarize_many(self, audios: Sequence[np.ndarray], num_speakers: int | None = None) -> list[list[Segment]]:
        return [self.diarize(a, SAMPLE_RATE, num_speakers) for a in audios]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return _batch_call(self, batch)


# ----------------------------------------------------------------------------------------------------------
# entry point

_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def get_diarizer(cfg: DiarizeConfig):
    """A (per-process cached) diarizer for ``cfg``; models load once."""
    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    with _CACHE_LOCK:
        d = _CACHE.get(key)
        if d is None:
            d = EmbeddedDiarizer(cfg) if cfg.backend == "embedded" else PyannoteDiarizer(cfg)
            _CACHE[key] = d
        return d


def diarize(audio16k: np.ndarray, sr: int = SAMPLE_RATE, cfg: DiarizeConfig | None = None) -> list[Segment]:
    """Who spoke when: ``[(start_s, end_s, speaker), ...]`` sorted by start (speakers ``SPEAKER_00``, ...)."""
    cfg = cfg or DiarizeConfig()
    cfg.validate()
    return get_diarizer(cfg).diarize(audio16k, sr)
