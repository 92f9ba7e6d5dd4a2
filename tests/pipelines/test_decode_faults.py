"""Reason codes say what is wrong: a cut-off FLAC is ``truncated``, float garbage is ``out_of_range``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipelines.stages.decode import DecodeError, decode_bytes
from tests.audio import telugu_speech


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return telugu_speech(sr=16000)


def _bytes(x: np.ndarray, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("keep", [0.2, 0.6, 0.97])
def test_cut_off_flac_is_truncated(speech, keep):
    full = _bytes(speech, "FLAC")
    with pytest.raises(DecodeError) as e:
        decode_bytes(full[: int(len(full) * keep)], "cut.flac")
    assert e.value.reason == "truncated"
    assert f"declares {len(speech)} samples but the stream breaks off after" in e.value.detail
    assert decode_bytes(full, "whole.flac").audio.shape == (1, len(speech))  # the whole file still decodes


def test_a_few_huge_float_samples_are_out_of_range(speech):
    x = speech.copy()
    x[1000:1005] = 1e30
    with pytest.raises(DecodeError) as e:
        decode_bytes(_bytes(x, "WAV", "FLOAT"), "huge.wav")
    assert e.value.reason == "out_of_range" and e.value.detail.startswith("5 of ")
    loud = np.clip(speech * 3, -1.5, 1.5)  # over full scale, but plausibly audio: the clipping filter judges it
    assert decode_bytes(_bytes(loud, "WAV", "FLOAT"), "loud.wav").audio.max() > 1.0
