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
             "digital silence between turns": np.concatenate([x, np.zeros(80000, np.float32), x]),
             # a dialog window cut from a mono mix: each channel is the mix during its speaker's turns, zeros else
             "dialog window of a mono mix": np.stack([np.concatenate([x, np.zeros(len(x) + 9000, np.float32), x]),
                                                      np.concatenate([np.zeros(len(x) + 4500, np.float32), x * 0.5,
                                                                      np.zeros(len(x) + 4500, np.float32)])])}
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


def test_digital_silence_is_not_filtered(monkeypatch):
    """The K-filter skips whole blocks of exact zeros once its ring-down is over, with no change to the loudness;
    audio without such a stretch is filtered whole."""
    from pipelines.stages.loudness import RING_DOWN, SILENT_BLOCK

    x = telugu_speech()
    gated = [np.concatenate([x, np.zeros(50000, np.float32), 0.2 * x]), np.concatenate([np.zeros(41000, np.float32), x])]
    gated[1] = np.concatenate([gated[1], np.zeros(len(gated[0]) - len(gated[1]), np.float32)])
    m = LoudnessMeter(16000)
    got = [m.lufs(np.stack(gated)), m.lufs(gated[0]), m.lufs(gated[1])]
    monkeypatch.setattr(LoudnessMeter, "_sounding", staticmethod(lambda a: [(0, len(a))]))  # filter everything
    assert got == [m.lufs(np.stack(gated)), m.lufs(gated[0]), m.lufs(gated[1])]
    monkeypatch.undo()
    n = len(x)
    gap = np.concatenate([x, np.zeros(80000, np.float32), x])
    (a0, a1), (b0, b1) = LoudnessMeter._sounding(gap)
    assert a0 == 0 and n + RING_DOWN <= a1 <= n + RING_DOWN + 2 * SILENT_BLOCK and n + 80000 - SILENT_BLOCK < b0 <= n + 80000
    assert b1 == len(gap)
    assert LoudnessMeter._sounding(x) == [(0, n)]  # speech's own pauses are not exact zeros for 2,560 samples
    short = np.concatenate([x, np.zeros(RING_DOWN, np.float32), x])  # silence shorter than the ring-down
    assert LoudnessMeter._sounding(short) == [(0, len(short))]


def test_a_dialog_window_and_its_turns_are_filtered_once(monkeypatch):
    """Mono turns and a dialog window cut from one recording (the window's channels split from the mono mix by turn
    times, with cross-fades; or the recording's own two channels): the K-filter runs over each track's shared audio
    once, not once per sample, and every sample's loudness is what it measures on its own."""
    from manifests.rows import Turn
    from pipelines.stages.segment import dialog_audio
    from pipelines.stages.stretch import Span

    sr, gap = 16000, np.zeros(6000, np.float32)
    a, b = telugu_speech(voice="te"), 0.3 * telugu_speech(voice="te+f3")
    mix = np.concatenate([a, gap, b, gap, a[::-1]])
    at = np.cumsum([0, len(a) + len(gap), len(b) + len(gap), len(a)])
    turns = [Turn("user" if i % 2 else "system", "", at[i] / sr, (at[i] + n) / sr) for i, n in enumerate([len(a), len(b), len(a)])]
    window = dialog_audio(mix[None], [], turns, sr, 0.05)
    two = np.stack([np.concatenate([a, gap, 0 * b, gap, a[::-1]]), np.concatenate([0 * a, gap, b, gap, 0 * a])])
    m = LoudnessMeter(sr)
    filtered: list[int] = []
    real = LoudnessMeter.kfilter
    monkeypatch.setattr(LoudnessMeter, "kfilter", lambda self, x, h=0: filtered.append(len(x)) or real(self, x, h))
    cases = {  # clips, and per clip per channel where it lies in the tracks [mix, two[0], two[1]]
        "mono mix": ([mix[None, at[i] : at[i] + len(t)] for i, t in enumerate([a, b])] + [window],
                     [[Span(0, at[0], at[0] + len(a))], [Span(0, at[1], at[1] + len(b))], [Span(0, 0, len(mix))] * 2]),
        "two channels": ([two[:1, at[0] : at[0] + len(a)], two[1:, at[1] : at[1] + len(b)], two],
                         [[Span(1, at[0], at[0] + len(a))], [Span(2, at[1], at[1] + len(b))],
                          [Span(1, 0, len(mix)), Span(2, 0, len(mix))]])}
    for name, (clips, spans) in cases.items():
        filtered.clear()
        shared = m.lufs_many(clips, spans, [mix, two[0], two[1]])
        work = sum(filtered)
        filtered.clear()
        alone = [m.lufs(c) for c in clips]
        assert shared == alone and all(v > -40 for v in alone), name
        assert work < 0.75 * sum(filtered), name  # the turns' audio is not filtered a second time for the window
