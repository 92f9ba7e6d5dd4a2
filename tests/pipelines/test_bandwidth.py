"""Effective bandwidth: wideband speech reaches near 8 kHz at 16 kHz, an 8 kHz phone copy stops at 4 kHz, a 11.025 kHz
copy at ~5.5 kHz, whatever the level; silence and sub-frame clips have none."""

from __future__ import annotations

import numpy as np

from pipelines.stages.bandwidth import effective_bandwidth
from storage.audio import resample
from tests.audio import telugu_speech


def test_bandwidth_follows_the_original_rate():
    x = telugu_speech()  # espeak at 22.05 kHz, resampled to 16 kHz: content up to 8 kHz
    bw = {rate: effective_bandwidth(resample(resample(x[None], 16000, rate), rate, 16000)[0], 16000)
          for rate in (8000, 11025)}
    wide = effective_bandwidth(x, 16000)
    assert wide > 7000
    assert 3700 < bw[8000] <= 4000 and 5000 < bw[11025] <= 5520
    assert effective_bandwidth(0.05 * x, 16000) == wide  # a level change moves nothing
    assert effective_bandwidth(np.stack([x, np.zeros_like(x)]), 16000) == wide  # a dialog: the channels' mix
    assert effective_bandwidth(np.zeros(16000, np.float32), 16000) is None
    assert effective_bandwidth(x[:300], 16000) is None
