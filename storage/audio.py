"""Audio file formats as bytes: FLAC and WAV in and out, soxr resampling, and a WebDataset sample's audio.

The one low-level place for them: every package (pipelines, manifests, codec, lm) may import it; it imports only
numpy, soundfile and soxr. Audio arrays are float32 ``[channels, samples]`` in [-1, 1]. Decoding arbitrary
containers with reasons for rejects (MP3, Opus, truncation, …) is ingestion's job (``pipelines/stages/decode.py``)."""

from __future__ import annotations

import io
import json

import numpy as np


def encode_flac(x: np.ndarray, sr: int, compression_level: float = 0.0) -> bytes:
    """``[channels, samples]`` float32 -> FLAC bytes, 16-bit PCM (deterministic: same input, same bytes)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0).T, sr, format="FLAC", subtype="PCM_16", compression_level=compression_level)
    return buf.getvalue()


def flac_pcm_md5(flac: bytes) -> str:
    """The MD5 of the 16-bit PCM a FLAC holds, as its STREAMINFO block carries it (libFLAC computes it while
    encoding; free to read); computed from the decoded PCM when an encoder left it unset (all zeros)."""
    if flac[:4] != b"fLaC" or flac[4] & 0x7F != 0 or len(flac) < 42:
        raise ValueError("not a FLAC stream starting with its STREAMINFO block")
    md5 = flac[26:42]
    if any(md5):
        return md5.hex()
    import hashlib

    import soundfile as sf

    pcm, _ = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
    return hashlib.md5(pcm.astype("<i2").tobytes()).hexdigest()


def pcm16_md5(x: np.ndarray) -> str:
    """The MD5 of ``[channels, samples]`` float audio as :func:`encode_flac` stores it (libsndfile's conversion:
    ``x * 32768`` rounded, clipped, channels interleaved): equal to :func:`flac_pcm_md5` of its FLAC."""
    import hashlib

    pcm = np.clip(np.rint(np.clip(np.atleast_2d(x), -1.0, 1.0).T * 32768.0), -32768, 32767).astype("<i2")
    return hashlib.md5(pcm.tobytes()).hexdigest()


def encode_wav(x: np.ndarray, sr: int) -> bytes:
    """``[channels, samples]`` float32 -> 16-bit PCM WAV bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0).T, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC/WAV/Ogg bytes (anything libsndfile reads) -> (float32 ``[channels, samples]``, sample rate)."""
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(y.T), int(sr)


def resample(x: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """soxr resampling of ``[channels, samples]`` float32 audio (returned as is when the rates are equal)."""
    if sr_in == sr_out:
        return x
    import soxr

    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality=quality)
    if y.ndim == 1:
        y = y[:, None]
    return np.ascontiguousarray(y.T, dtype=np.float32)


def read_sample(members: dict[str, bytes]) -> tuple[dict, np.ndarray]:
    """(sample JSON, float32 audio ``[channels, samples]``) of one segment-shard sample (``.flac`` + ``.json``)."""
    meta = json.loads(members["json"]) if "json" in members else {}
    if "flac" not in members:
        raise ValueError(f"sample {meta.get('sample_id', '?')} has no .flac member")
    audio, _sr = decode_audio(members["flac"])
    return meta, audio
