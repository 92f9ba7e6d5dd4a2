"""``mms:DIR``: Meta's MMS-TTS (a transformers ``VitsModel`` + ``VitsTokenizer``) from a local folder.

Put the files of ``facebook/mms-tts-tel`` in DIR (``config.json``, ``model.safetensors``, ``vocab.json``,
``tokenizer_config.json``, ``special_tokens_map.json``), e.g. ``huggingface-cli download facebook/mms-tts-tel
--local-dir DIR`` on a machine with network. Nothing is fetched at run time. Needs the ``mms`` extra
(``transformers``).

MMS-TTS Telugu has one speaker. Voice k differs from the others in the model's sampling: ``noise_scale`` (prosody
variation), ``noise_scale_duration`` (rhythm), ``speaking_rate`` and the sampling seed, all drawn from k. That gives
tempo and intonation variety, not different timbres; mix with espeak voices (or a multi-speaker ``command`` voice)
for more speakers.

Characters the tokenizer does not know would be dropped silently by it; here a letter outside the model's
vocabulary (an English word, say) makes the utterance a reject (``unspeakable_text``) that names it."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import unicodedata
import zlib
from pathlib import Path

import numpy as np

from pipelines.tts.voices import Backend, TTSError, Voice, trim

_MODELS: dict[str, tuple] = {}  # per process: folder -> (model, tokenizer)
_LOCK = threading.Lock()  # a voice sets the model's sampling scales for its call: one call at a time
NEEDED = ("config.json", "vocab.json")


class MmsBackend(Backend):
    name = "mms"

    def __init__(self, folder: str) -> None:
        p = Path(folder).expanduser()
        missing = [f for f in NEEDED if not (p / f).is_file()]
        weights = list(p.glob("*.safetensors")) + list(p.glob("pytorch_model*.bin")) if p.is_dir() else []
        if not p.is_dir() or missing or not weights:
            what = "no such folder" if not p.is_dir() else f"missing {', '.join(missing + ([] if weights else ['model.safetensors']))}"
            raise FileNotFoundError(
                f"mms:{folder}: {what}; put the files of facebook/mms-tts-tel there (config.json, model.safetensors, "
                f"vocab.json, tokenizer_config.json, special_tokens_map.json), e.g. `huggingface-cli download "
                f"facebook/mms-tts-tel --local-dir {folder}` on a machine with network")
        self.folder = str(p.resolve())
        tc = p / "tokenizer_config.json"
        cfg = json.loads(tc.read_text()) if tc.exists() else {}
        if cfg.get("phonemize") or cfg.get("is_uroman"):
            raise ValueError(f"mms:{folder}: this model's tokenizer wants {'phonemizer' if cfg.get('phonemize') else 'uroman'} "
                             "preprocessing, which matalu does not do; use the Telugu model facebook/mms-tts-tel "
                             "(characters in, no preprocessing)")
        self.vocab = set(json.loads((p / "vocab.json").read_text(encoding="utf-8")))

    def _load(self):
        got = _MODELS.get(self.folder)
        if got is None:
            try:
                import torch
                from transformers import VitsModel, VitsTokenizer
            except ImportError:
                raise ImportError("mms voices need transformers: pip install 'matalu[mms]'") from None
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            torch.set_num_threads(1)  # one core per synthesis task
            model = VitsModel.from_pretrained(self.folder).eval()
            got = _MODELS[self.folder] = (model, VitsTokenizer.from_pretrained(self.folder))
        return got

    def voices(self, count: int) -> list[Voice]:
        name = Path(self.folder).name
        out = []
        for k in range(count):
            rng = random.Random(f"mms:{k}")
            ns, nd, rate = (round(rng.uniform(0.4, 0.85), 3), round(rng.uniform(0.6, 1.0), 3),
                            round(rng.uniform(0.88, 1.12), 3))
            out.append(Voice(f"mms:{name}:v{k}:n{ns}:d{nd}:r{rate}", "mms",
                             (("noise_scale", ns), ("noise_scale_duration", nd), ("speaking_rate", rate), ("seed", k))))
        return out

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        import torch

        unknown = sorted({c for c in text.lower() if unicodedata.category(c)[0] in "LM" and c not in self.vocab})
        if unknown:
            raise TTSError("unspeakable_text", f"{len(unknown)} letters outside the MMS voice's alphabet "
                                               f"({''.join(unknown[:12])}): e.g. an English word in Latin script")
        with _LOCK:
            model, tok = self._load()
            ids = tok(text, return_tensors="pt")
            if ids["input_ids"].shape[-1] <= 1:
                raise TTSError("unspeakable_text", "nothing the MMS voice can say is left of the text")
            model.noise_scale = float(voice.param("noise_scale"))
            model.noise_scale_duration = float(voice.param("noise_scale_duration"))
            model.speaking_rate = float(voice.param("speaking_rate"))
            torch.manual_seed(zlib.crc32(f"{voice.param('seed')}:{text}".encode()))
            with torch.no_grad():
                wav = model(**ids).waveform[0].numpy().astype(np.float32)
        x = trim(wav)
        if not x.size:
            raise TTSError("empty_audio", "the MMS voice produced silence")
        return x, int(model.config.sampling_rate)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f in sorted(Path(self.folder).iterdir()):
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes() if f.suffix == ".json" else str(f.stat().st_size).encode())
        return "mms:" + h.hexdigest()[:16]
