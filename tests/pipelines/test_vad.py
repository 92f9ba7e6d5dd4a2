"""The batched VAD equals Silero's own window-by-window stepping, and finds the speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.stages.vad import SileroVad, VadConfig, speech_regions
from tests.audio import telugu_speech


@pytest.mark.parametrize("rate", [8000, 16000])
def test_batched_probs_equal_silero_stepping(rate):
    import silero_vad

    speech = telugu_speech()
    streams = [
        np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(12000, np.float32), speech]),
        speech[:23456],
        np.zeros(5000, np.float32),
    ]
    vad = SileroVad(model_rate=rate, level_dbfs=None)  # the model as Silero runs it: no levelling
    got = vad.probs(streams)
    vad.block_windows = 7  # time blocks of 7 windows, the LSTM state carried across them: the same outputs
    blocked = vad.probs(streams)
    ref_model = silero_vad.load_silero_vad()
    for x, p, q in zip(streams, got, blocked):
        assert len(q) == len(p) and np.abs(p - q).max() < 1e-5
        xs = vad._to_model_rate(x)
        w = vad.window
        n = (len(xs) + w - 1) // w
        xp = np.pad(xs, (0, n * w - len(xs)))
        ref_model.reset_states()
        ref = np.array([ref_model(torch.from_numpy(xp[i * w : (i + 1) * w])[None], rate).item() for i in range(n)])
        assert len(p) == n
        assert np.abs(p - ref).max() < 1e-4


def test_regions_cover_speech_and_skip_silence():
    sr = 16000
    speech = telugu_speech()
    gap = np.zeros(2 * sr, np.float32)
    x = np.concatenate([gap, speech, gap, speech, gap])
    (p,) = SileroVad().probs([x])
    regions = speech_regions(p, len(x), VadConfig())
    assert len(regions) >= 2
    first_start, last_end = regions[0][0], regions[-1][1]
    assert 2.0 <= first_start <= 2.0 + 0.3 + 0.3  # speech starts after the 2 s gap and 0.3 s lead-in
    assert last_end <= len(x) / sr - 2.0 + 0.1
    # nothing in the middle gap
    mid_gap = (2.0 + len(speech) / sr + 0.4, 2.0 + len(speech) / sr + 1.6)
    assert not any(s < mid_gap[1] and e > mid_gap[0] for s, e in regions)
    (q,) = SileroVad().probs([np.zeros(3 * sr, np.float32)])
    assert speech_regions(q, 3 * sr, VadConfig()) == []


def test_levelling_makes_regions_independent_of_recording_level():
    from pipelines.stages.vad import level_gain

    sr = 16000
    speech = telugu_speech()
    x = np.concatenate([np.zeros(sr, np.float32), speech, np.zeros(sr, np.float32)])
    x = x / np.sqrt(np.mean(x**2))
    vad = SileroVad()
    loud, quiet = x * 10 ** (-20 / 20), x * 10 ** (-50 / 20)
    assert level_gain(quiet, -20.0) == pytest.approx(1000 ** 0.5 * level_gain(loud, -20.0), rel=1e-4)
    r_loud, r_quiet = (speech_regions(p, len(x), VadConfig()) for p in vad.probs([loud, quiet]))
    assert r_loud and r_quiet == r_loud
    assert level_gain(np.zeros(1000, np.float32), -20.0) == 1.0  # digital silence stays silence


def test_regions_grow_over_quiet_tails_but_not_over_the_noise_floor():
    """extend_regions: a region Silero ended early grows over the adjacent frames louder than the noise floor
    (a far-field tail 20 dB under the speech), at most extend_max_s per side, and never into the floor."""
    from pipelines.stages.vad import extend_regions

    sr = 16000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4 * sr) * 1e-3).astype(np.float32)  # -60 dBFS floor
    x[sr : 2 * sr] += 0.1 * np.sin(np.arange(sr) * 0.3)  # "speech" 1.0-2.0 s
    x[2 * sr : int(2.2 * sr)] += 0.01 * np.sin(np.arange(int(0.2 * sr)) * 0.3)  # its quiet tail to 2.2 s
    regions = [(1.0, 2.0)]
    assert extend_regions(regions, x, VadConfig()) == regions  # off by default
    assert extend_regions(regions, x, VadConfig(extend_db=6.0)) == [(1.0, 2.2)]
    assert extend_regions(regions, x, VadConfig(extend_db=6.0, extend_max_s=0.1)) == [(1.0, 2.1)]
    # two regions whose grown edges meet become one
    x[int(2.2 * sr) : int(2.5 * sr)] += 0.01
    x[int(2.5 * sr) : 3 * sr] += 0.1 * np.sin(np.arange(sr // 2) * 0.3)
    assert extend_regions([(1.0, 2.0), (2.5, 3.0)], x, VadConfig(extend_db=6.0)) == [(1.0, 3.0)]
