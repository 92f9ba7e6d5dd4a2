"""Language ID of samples (docs/DESIGN.md §6, filters): text LID of transcripts, audio LID for untranscribed audio.

* **Text** (on by default): the share of the transcript's letters written in Telugu script, plus a real language
  identifier (``py3langid``: a naive Bayes model over byte n-grams that ships inside the package, restricted to
  ``candidates``) that names the language. A transcript is Telugu when at least ``min_telugu_share`` of its
  letters are Telugu script (so code-mixed Telugu–English, "నేను office కి వెళ్తున్నాను", passes while the
  English share stays under the limit); anything else is a ``wrong_language`` reject naming the language the
  identifier detects and its probability. The script decides between the candidates (each has its own script
  but Hindi/Marathi, which share Devanagari, and English): the identifier's part is to name the language and
  score it (``benchmarks/filters.py --part text``: right on 511/511 Telugu, 10/10 Hindi, Kannada and English
  sentences at 0.05 ms each; lingua knows no Kannada and is 12x slower). A transcript without letters (empty,
  digits) is not judged.
* **Audio** (``audio_model``, ``matalu ingest --lid DIR``): for samples without a transcript (podcasts), a local
  ``transformers`` audio-classification folder (``AutoModelForAudioClassification`` + its feature extractor, e.g.
  an MMS-LID or VoxLingua107 copy); nothing is downloaded. The top label decides: a Telugu label (``te``, ``tel``,
  ``tel_Telu``, ``Telugu``) keeps the sample, any other label rejects it.

Every judged sample carries ``language`` (ISO 639-1 where known) and ``lid_score`` (the identifier's probability
of that language; for a script-kept transcript, of Telugu).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TELUGU_BLOCK = (0x0C00, 0x0C7F)
TELUGU_LABELS = {"te", "tel", "tel_telu", "telugu", "te-in", "te_in"}
AUDIO_LAYOUT = ("a local transformers audio-classification folder (as save_pretrained writes it): config.json with "
                "id2label, preprocessor_config.json, and the weights")


@dataclass
class LidConfig:
    text: bool = True  # text LID of transcripts (this is a Telugu platform); false turns it off
    language: str = "te"
    min_telugu_share: float = 0.5  # of a transcript's letters; the rest may be English (code-mixing) or digits
    candidates: list[str] = field(default_factory=lambda: ["te", "hi", "kn", "ta", "ml", "mr", "bn", "ur", "en"])
    audio_model: str = ""  # --lid DIR: audio LID of samples without a transcript ("" = off)

    def validate(self) -> None:
        if not 0.0 <= self.min_telugu_share <= 1.0:
            raise ValueError(f"filters.lid.min_telugu_share must be between 0 and 1 (got {self.min_telugu_share})")
        if self.language not in self.candidates:
            raise ValueError(f"filters.lid.candidates must include {self.language!r} (got {self.candidates})")
        if self.audio_model:
            check_audio_folder(self.audio_model)


def check_audio_folder(folder: str) -> dict:
    """The folder's config.json after checking the layout (no model is loaded); a one-sentence error otherwise."""
    import json

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--lid {folder}: no such folder; expected {AUDIO_LAYOUT}")
    for name, what in (("config.json", "the model config"), ("preprocessor_config.json", "the feature extractor")):
        if not (root / name).is_file():
            raise FileNotFoundError(f"--lid {folder}: {name} ({what}) is missing; expected {AUDIO_LAYOUT}")
    if not any(p.suffix in (".safetensors", ".bin") for p in root.iterdir()):
        raise FileNotFoundError(f"--lid {folder}: no weights (*.safetensors or *.bin); expected {AUDIO_LAYOUT}")
    try:
        cfg = json.loads((root / "config.json").read_text())
    except ValueError as e:
        raise ValueError(f"--lid {folder}: config.json is not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or not cfg.get("id2label"):
        raise ValueError(f"--lid {folder}: config.json has no id2label label map; expected {AUDIO_LAYOUT}")
    return cfg


@dataclass
class Verdict:
    language: str
    score: float
    ok: bool
    detail: str = ""  # why it was rejected


def telugu_share(text: str) -> tuple[float, int]:
    """(share of letters in Telugu script, number of letters); combining vowel signs count as letters."""
    letters = telugu = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] != "L" and cat not in ("Mn", "Mc"):
            continue
        letters += 1
        if TELUGU_BLOCK[0] <= ord(ch) <= TELUGU_BLOCK[1]:
            telugu += 1
    return (telugu / letters if letters else 0.0), letters


class TextLid:
    """The text identifier, built once per actor."""

    def __init__(self, cfg: LidConfig) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.cfg = cfg
        self.ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.ident.set_languages(list(cfg.candidates))

    def identify(self, text: str) -> tuple[str, float]:
        lang, p = self.ident.classify(text)
        return str(lang), float(p)

    def prob_of(self, text: str, lang: str) -> float:
        return float(dict(self.ident.rank(text)).get(lang, 0.0))

    def judge(self, text: str) -> Verdict | None:
        """None when the text has no letters to judge."""
        share, letters = telugu_share(text)
        if not letters:
            return None
        lang, p = self.identify(text)
        want = self.cfg.language
        if share >= self.cfg.min_telugu_share:
            return Verdict(want, round(p if lang == want else self.prob_of(text, want), 4), True)
        return Verdict(lang, round(p, 4), False,
                       f"transcript is {lang} (score {p:.2f}); {100 * share:.0f}% of its {letters} letters are Telugu "
                       f"script (minimum {100 * self.cfg.min_telugu_share:.0f}%)")


def _iso(label: str) -> str:
    low = label.strip().lower()
    if low in TELUGU_LABELS:
        return "te"
    return low.split("_")[0].split("-")[0].split(":")[0]


class AudioLid:
    """A local transformers audio-classification model (one per actor); :meth:`judge` takes 16 kHz mono audio."""

    def __init__(self, folder: str, language: str = "te") -> None:
        check_audio_folder(folder)
        root = Path(folder).expanduser()
        try:
            from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        except ImportError:
            raise ValueError("--lid needs transformers: install the extra (pip install 'matalu[lid]')") from None
        try:
            self.fe = AutoFeatureExtractor.from_pretrained(str(root), local_files_only=True)
            self.model = AutoModelForAudioClassification.from_pretrained(str(root), local_files_only=True).eval()
        except Exception as e:
            raise ValueError(f"--lid {folder}: cannot load an audio-classification model from it "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); expected {AUDIO_LAYOUT}") from None
        self.labels = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        self.language = language
        self.rate = int(getattr(self.fe, "sampling_rate", 16000))

    def identify(self, audio: np.ndarray, sr: int) -> tuple[str, str, float]:
        """(ISO code, the model's label, probability) of the top label."""
        import torch

        if sr != self.rate:
            from storage.audio import resample

            audio = resample(audio[None].astype(np.float32), sr, self.rate)[0]
        inputs = self.fe(audio.astype(np.float32), sampling_rate=self.rate, return_tensors="pt")
        with torch.inference_mode():
            probs = torch.softmax(self.model(**inputs).logits[0].float(), dim=-1)
        i = int(torch.argmax(probs))
        label = self.labels.get(i, str(i))
        return _iso(label), label, float(probs[i])

    def judge(self, audio: np.ndarray, sr: int) -> Verdict:
        lang, label, p = self.identify(audio, sr)
        if lang == self.language:
            return Verdict(lang, round(p, 4), True)
        return Verdict(lang, round(p, 4), False, f"audio LID says {label} (score {p:.2f}), not {self.language}")


class Lid:
    """Text LID for transcribed samples, audio LID (when configured) for the others."""

    def __init__(self, cfg: LidConfig) -> None:
        self.cfg = cfg
        self.text = TextLid(cfg) if cfg.text else None
        self.audio = AudioLid(cfg.audio_model, cfg.language) if cfg.audio_model else None

    def judge(self, text: str, audio: np.ndarray, sr: int) -> Verdict | None:
        """``audio``: [channels, samples]; None when nothing could be judged (no transcript, no audio model)."""
        v = self.text.judge(text) if self.text is not None and text.strip() else None
        if v is None and self.audio is not None:
            mono = audio.mean(axis=0) if audio.ndim == 2 else audio
            v = self.audio.judge(np.ascontiguousarray(mono, dtype=np.float32), sr)
        return v
