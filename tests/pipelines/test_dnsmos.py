"""DNSMOS P.835 from the speechmos wheel's ONNX model: it ranks clean speech above the same speech with noise and
above noise alone, our batched scorer agrees with the reference scorer where both score the same window, and
batching does not change a score."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages.dnsmos import WINDOW, Dnsmos, windows
from tests.audio import telugu_speech


@pytest.fixture(scope="module")
def clips():
    x = telugu_speech()  # ~6.8 s of espeak-ng Telugu with a -60 dBFS floor
    noise = (0.05 * np.random.default_rng(1).standard_normal(len(x))).astype(np.float32)  # ~ -26 dBFS white noise
    return {"clean": x, "noisy": np.clip(x + noise, -1, 1), "noise": noise}


@pytest.fixture(scope="module")
def model():
    return Dnsmos(batch=8)


def test_clean_speech_ranks_above_noisy_speech_and_noise(model, clips):
    s = dict(zip(clips, model.score(list(clips.values()))))
    assert s["clean"].ovrl > s["noisy"].ovrl + 0.5 and s["clean"].ovrl > s["noise"].ovrl + 1.0, s
    assert s["clean"].bak > s["noisy"].bak + 1.0, s  # the background rating is what the noise spoils
    assert s["noise"].sig < 2.0 and s["noise"].ovrl < 1.5, s  # noise alone is no speech signal
    for v in s.values():
        assert 1.0 <= min(v.sig, v.bak, v.ovrl) and max(v.sig, v.bak, v.ovrl) <= 5.0
    # one window per clip: batching (8 per call vs one per call) gives the same scores
    assert Dnsmos(batch=1).score(list(clips.values())) == list(s.values())


def test_same_as_reference_scorer_on_its_window(model, clips, monkeypatch):
    """The reference (speechmos.dnsmos, the DNS Challenge's scorer) doubles a short clip until it fills 9.01 s and
    slides by 1 s; for a clip of 4.5..5 s that is exactly one window, the same one we score."""
    from speechmos import dnsmos as reference

    # its P.808 side score (a mel spectrogram through librosa, whose first call compiles for ~10 s) is not compared
    monkeypatch.setattr(reference.DNSMOS, "audio_melspec", lambda self, audio, **kw: np.zeros((900, 120), np.float32))

    clip = clips["clean"][: int(4.8 * 16000)]
    ours = model.score([clip])[0]
    ref = reference.run(clip, 16000)
    assert ours.ovrl == pytest.approx(ref["ovrl_mos"], abs=2e-3)
    assert ours.sig == pytest.approx(ref["sig_mos"], abs=2e-3)
    assert ours.bak == pytest.approx(ref["bak_mos"], abs=2e-3)


def test_windows_cover_a_clip_end_to_end(model):
    x = np.arange(int(2.5 * WINDOW), dtype=np.float32)
    w = windows(x)
    assert w.shape == (3, WINDOW) and w[0, 0] == 0 and w[-1, -1] == x[-1]  # first at the start, last at the end
    short = windows(np.arange(1000, dtype=np.float32))
    assert short.shape == (1, WINDOW) and short[0, 1000] == 0 and short[0, -1] == (WINDOW - 1) % 1000  # repeated
    assert windows(np.zeros(0, np.float32)).shape == (0, WINDOW)
    assert model.score([np.zeros(0, np.float32)]) == [None]  # an empty clip has no score (and costs nothing)
