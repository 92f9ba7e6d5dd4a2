"""Test audio made here: espeak-ng Telugu speech, tones, noise, and files in every container we decode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

TELUGU = "ఈ రోజు ఆకాశం మబ్బుగా ఉంది, సాయంత్రానికి చిన్న వాన పడే అవకాశం ఉంది."


def telugu_speech(text: str = TELUGU, voice: str = "te", sr: int = 16000) -> np.ndarray:
    """espeak-ng Telugu speech as float32 mono at ``sr``, with 0.3 s of quiet noise on both sides."""
    from pipelines.sources.synthetic import speak
    from storage.audio import resample

    x = speak(text, voice, 150, 50)
    x = resample(x[None], 22050, sr)[0] if sr != 22050 else x
    pad = np.zeros(int(0.3 * sr), np.float32)
    y = np.concatenate([pad, x, pad])
    rng = np.random.default_rng(0)
    return (y + 10 ** (-60 / 20) * rng.standard_normal(len(y))).astype(np.float32)


def write_as(path: Path, audio: np.ndarray, sr: int) -> Path:
    """Write mono or [C, T] audio to ``path``; the container follows the suffix (ffmpeg for mp3/m4a)."""
    path = Path(path)
    a = audio if audio.ndim == 1 else audio.T
    suf = path.suffix.lower()
    if suf in (".wav", ".flac", ".ogg"):
        sf.write(path, a, sr, subtype="PCM_16" if suf != ".ogg" else "VORBIS")
        return path
    tmp = path.with_suffix(".src.wav")
    sf.write(tmp, a, sr, subtype="PCM_16")
    codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "96k"], ".m4a": ["-c:a", "aac", "-b:a", "96k"]}[suf]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp), *codec, str(path)], check=True)
    tmp.unlink()
    return path
