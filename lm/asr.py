"""Transcribe 16 kHz clips with a local ``transformers`` ASR model folder, and character error rate.

``load_asr(DIR)`` opens a ``save_pretrained`` folder of either kind, nothing downloaded:

* CTC (``Wav2Vec2ForCTC``, HuBERT, MMS, … through ``AutoModelForCTC``) with its processor (feature extractor +
  tokenizer files): greedy decoding (argmax per frame, ``processor.batch_decode``);
* Whisper (``model_type: whisper``) with its processor: ``generate`` (Telugu transcription when the model's
  generation config knows the ``<|te|>`` token); Whisper hears the first 30 s of a clip.

``cer(ref, hyp)`` is the Levenshtein distance over characters of the normalised strings (Unicode NFC, lower case,
punctuation removed, runs of white space as one space) divided by the reference's length.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
WHAT = ("a transformers ASR model folder (save_pretrained output): a Wav2Vec2ForCTC-style CTC model or a Whisper "
        "model, with its processor files (preprocessor_config.json and the tokenizer)")


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFC", text).lower()
    t = "".join(" " if unicodedata.category(c).startswith("P") else c for c in t)
    return " ".join(t.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions: cost 1 each); one numpy pass per character of
    ``a`` (the insertion chain of a row is a running minimum)."""
    if not a or not b:
        return len(a) + len(b)
    bb = np.frombuffer(b.encode("utf-32-le"), np.uint32)
    j = np.arange(len(b) + 1)
    prev = j.copy()
    for i, ca in enumerate(a, 1):
        sub = prev[:-1] + (bb != ord(ca))
        cur = np.concatenate(([i], np.minimum(prev[1:] + 1, sub)))
        prev = np.minimum.accumulate(cur - j) + j
    return int(prev[-1])


def cer_counts(ref: str, hyp: str) -> tuple[int, int]:
    """(character edits, reference characters) after :func:`normalize`."""
    r, h = normalize(ref), normalize(hyp)
    return edit_distance(r, h), len(r)


def cer(ref: str, hyp: str) -> float:
    """Character error rate of ``hyp`` against ``ref`` (can exceed 1 when ``hyp`` is longer); an empty reference
    gives 0.0 for an empty hypothesis and 1.0 otherwise."""
    e, n = cer_counts(ref, hyp)
    return e / n if n else float(e > 0)


class Transcriber:
    """``transcribe(clips)``: one string per float32 16 kHz mono clip."""

    def __init__(self, folder: str, device: str = "cpu") -> None:
        p = Path(folder)
        cfg = p / "config.json"
        if not p.is_dir() or not cfg.is_file():
            raise FileNotFoundError(f"--asr {folder}: no config.json there; put {WHAT} in that folder")
        try:
            import transformers
        except ImportError as e:
            raise ValueError("--asr needs the transformers package: pip install 'matalu[asr]'") from e
        self.folder = str(folder)
        self.kind = "whisper" if json.loads(cfg.read_text()).get("model_type") == "whisper" else "ctc"
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(p), local_files_only=True)
            cls = transformers.WhisperForConditionalGeneration if self.kind == "whisper" else transformers.AutoModelForCTC
            self.model = cls.from_pretrained(str(p), local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--asr {folder}: cannot open it as {WHAT} ({first})") from e
        if not hasattr(self.processor, "batch_decode") or not hasattr(self.processor, "feature_extractor"):
            raise ValueError(f"--asr {folder}: no tokenizer + feature extractor processor there; put {WHAT} in it")
        self.device = torch.device(device)
        self.gen_kw: dict = {}
        if self.kind == "whisper":
            lang = getattr(self.model.generation_config, "lang_to_id", None) or {}
            if "<|te|>" in lang:
                self.gen_kw = {"language": "te", "task": "transcribe"}

    @torch.inference_mode()
    def transcribe(self, clips: list[np.ndarray]) -> list[str]:
        return [self._one(np.asarray(x, np.float32)) for x in clips]

    def _one(self, x: np.ndarray) -> str:
        if x.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing to hear (and too short for a conv front end)
            x = np.pad(x, (0, SAMPLE_RATE // 10 - x.size))
        inputs = self.processor(x, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        if self.kind == "whisper":
            room = int(getattr(self.model.config, "max_target_positions", 448)) - 8  # the prompt's special tokens
            ids = self.model.generate(inputs.input_features.to(self.device, self.model.dtype),
                                      max_new_tokens=max(1, min(128, room)), **self.gen_kw)
            return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        logits = self.model(inputs.input_values.to(self.device, self.model.dtype)).logits
        return self.processor.batch_decode(logits.argmax(-1))[0].strip()


def load_asr(folder: str, device: str = "cpu") -> Transcriber:
    return Transcriber(folder, device)
