"""Decoding every container we accept, at any rate and channel count, and the exact reason for each bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipelines.stages.decode import DecodeError, decode_bytes
from tests.audio import telugu_speech, write_as


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3", ".m4a"])
@pytest.mark.parametrize("sr,channels", [(48000, 1), (44100, 2), (8000, 1)])
def test_decodes_containers_rates_and_channels_to_16k(tmp_path, suffix, sr, channels):
    x = telugu_speech(sr=sr)
    audio = np.stack([x, 0.5 * x]) if channels == 2 else x
    path = write_as(tmp_path / f"a{suffix}", audio, sr)
    d = decode_bytes(path.read_bytes(), path.name)
    assert d.sample_rate == 16000 and d.orig_sample_rate == sr and d.channels == channels
    assert abs(d.duration_s - len(x) / sr) < 0.15  # lossy codecs add priming/padding frames (AAC: 1024+ samples)
    assert np.isfinite(d.audio).all() and d.audio.dtype == np.float32
    # the speech survives: energy in the middle well above the quiet edges
    mid = d.audio[0, int(0.5 * 16000) : int(1.0 * 16000)]
    assert np.sqrt(np.mean(mid**2)) > 0.01


def test_resampled_tone_keeps_its_frequency():
    sr = 44100
    t = np.arange(sr) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    d = decode_bytes(buf.getvalue())
    spec = np.abs(np.fft.rfft(d.audio[0]))
    assert abs(np.argmax(spec) * 16000 / len(d.audio[0]) - 1000) < 2


def _wav(x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_bad_inputs_have_exact_reasons():
    good = _wav(telugu_speech())
    nan = np.zeros(16000, np.float32)
    nan[100] = np.nan
    inf = np.zeros(16000, np.float32)
    inf[5] = np.inf
    cases = {
        "empty_file": b"",
        "truncated": good[: len(good) // 2],
        "undecodable": "ఇది ఆడియో కాదు, ఒక టెక్స్ట్ ఫైల్.\n".encode() * 20,
        "non_finite": _wav(nan, subtype="FLOAT"),
    }
    for reason, blob in cases.items():
        with pytest.raises(DecodeError) as e:
            decode_bytes(blob, f"{reason}.wav")
        assert e.value.reason == reason, (reason, e.value)
        assert e.value.detail
    with pytest.raises(DecodeError) as e:
        decode_bytes(_wav(inf, subtype="FLOAT"))
    assert e.value.reason == "non_finite"


def test_streamed_wav_with_unknown_length_is_not_called_truncated():
    blob = bytearray(_wav(telugu_speech()))
    blob[40:44] = (0x7FFFF000).to_bytes(4, "little")  # what espeak-ng/ffmpeg write to a pipe
    d = decode_bytes(bytes(blob))
    assert d.duration_s > 1.0
