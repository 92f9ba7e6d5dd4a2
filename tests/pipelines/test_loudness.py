"""Our vectorised BS.1770 integrated loudness equals pyloudnorm's reference loop (mono, two channels, quiet, noise,
a clip whose last block runs past its end, digital silence between turns), and reads silence as the -70 LUFS
gate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipelines.stages.loudness import FLOOR_LUFS, LoudnessMeter, apply_gain, normalize_gain_db
from tests.audio import telugu_speech


def test_equals_pyloudnorm():
    import pyloudnorm

    x = telugu_speech()
    rng = np.random.default_rng(0)
    clips = {"speech": x, "quiet": x * 0.01, "two channels": np.stack([x, 0.3 * x[::-1]]),
             "noise, ragged end": (0.1 * rng.standard_normal(16000 * 7 + 123)).astype(np.float32),
             "one block and a bit": x[:7000],
             # a dialog channel: speech, 5 s of digital silence (the filters' subnormal trap), speech
             "digital silence between turns": np.concatenate([x, np.zeros(80000, np.float32), x])}
    ours, ref = LoudnessMeter(16000), pyloudnorm.Meter(16000)
    for name, c in clips.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = ref.integrated_loudness(np.asarray(c, np.float64).T)
        assert ours.lufs(c) == pytest.approx(want, abs=0.01), name
    assert ours.lufs(np.zeros(20000, np.float32)) == FLOOR_LUFS  # pyloudnorm: -inf
    assert ours.lufs(x[:6000]) is None  # shorter than one 400 ms block


def test_normalisation_gain_respects_the_peak_ceiling():
    x = telugu_speech()  # ~ -18.9 LUFS, peak ~0.74
    m = LoudnessMeter(16000)
    lufs = m.lufs(x)
    g = normalize_gain_db(x, lufs, -23.0, -1.0)
    assert g == pytest.approx(-23.0 - lufs, abs=0.01) and m.lufs(apply_gain(x, g)) == pytest.approx(-23.0, abs=0.05)
    g = normalize_gain_db(x, lufs, -5.0, -1.0)  # +14 dB would clip: capped at a -1 dBFS peak
    assert g < -5.0 - lufs and 20 * np.log10(np.abs(apply_gain(x, g)).max()) == pytest.approx(-1.0, abs=0.01)
