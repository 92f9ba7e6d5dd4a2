"""The duplicate landmarks and DNSMOS cover each recording's speech once (pipelines/stages/stretch.py): a dialog
window and the mono turns inside it cost one pass, each sample takes its own range's part, and a sample that
overlaps no other is measured exactly as on its own."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages import dedup as D
from pipelines.stages.stretch import Span, stretches
from tests.audio import telugu_speech

TE = ["ఈ రోజు ఆకాశం మబ్బుగా ఉంది, సాయంత్రానికి చిన్న వాన పడే అవకాశం ఉంది.",
      "రేపు మధ్యాహ్నం తర్వాత వర్షం పడొచ్చు, బయటికి వెళ్తే గొడుగు తీసుకెళ్ళండి.",
      "మధ్యాహ్నం ఎండలో తిరగకండి, తరచూ నీళ్ళు తాగండి, తల మీద టోపీ పెట్టుకోండి."]


@pytest.fixture(scope="module")
def talk():
    """~20 s: three utterances with pauses (a 'dialog' recording), and where each utterance lies in it."""
    gap = np.zeros(8000, np.float32)
    parts, turns, at = [], [], 0
    for i, t in enumerate(TE):
        x = telugu_speech(t, voice="te" if i % 2 else "te+f3")
        turns.append((at, at + len(x)))
        parts += [x, gap]
        at += len(x) + len(gap)
    return np.concatenate(parts), turns


def test_pcm_md5_of_an_array_is_its_flacs():
    from storage.audio import encode_flac, flac_pcm_md5, pcm16_md5

    x = (0.4 * np.random.default_rng(0).standard_normal((2, 16000))).astype(np.float32)
    x[0, :3] = [1.5, -1.0, 0.5 / 32768]  # clipped, the negative full scale, a rounding tie
    assert pcm16_md5(x) == flac_pcm_md5(encode_flac(x, 16000)) != pcm16_md5(x[:, 1:])


def test_stretches_join_overlapping_and_touching_spans_only():
    spans = [Span(0, 0, 100), Span(0, 10, 20), Span(1, 0, 50), Span(0, 100, 150), Span(0, 151, 160)]
    got = [(s.recording, s.start, s.end, sorted(s.members)) for s in stretches(spans)]
    assert got == [(0, 0, 150, [0, 1, 3]), (0, 151, 160, [4]), (1, 0, 50, [2])]


@pytest.mark.parametrize("frames", [0, 1, 2, 9, 17, 40, 131])
def test_peaks_are_each_grids_neighbourhood_maxima(talk, frames):
    """The chunked peak picker against scipy's 2-D maximum filter on each grid's frames, across chunk edges (a
    5-frame chunk), odd and even lengths, and plateaus (rounded dB: equal neighbours are both peaks)."""
    from scipy.ndimage import maximum_filter

    db = D._log_spectrogram(talk[0][: 8000 + 64 * frames])[:frames]
    db = np.round(db / 3).astype(np.float32) * 3  # ties
    cfg = D.DedupConfig(peak_range_db=30.0)
    got = D.peaks(db, cfg, chunk=6)
    assert len(got) == 2 and sum(len(t) for t, _ in got) >= frames // 4  # (not a vacuous comparison)
    for g, (t, f) in enumerate(got):
        d = db[g::2]
        m = maximum_filter(d, size=(2 * D.PEAK_T + 1, 2 * D.PEAK_F + 1), mode="constant", cval=-np.inf)
        want = np.nonzero((d == m) & (d >= d.max() - cfg.peak_range_db)) if len(d) else ([], [])  # (1 frame: grid 1 is empty)
        assert t.tolist() == list(want[0]) and f.tolist() == list(want[1])
    assert [t.tolist() for t, _ in got] == [t.tolist() for t, _ in D.peaks(db, cfg)]  # chunk size: no effect
    if frames == 1:  # a 40 ms clip (one frame: grid 1 empty) has no landmarks; it used to raise
        assert len(D.StretchLandmarks.of(talk[0][:600], cfg).hashes) == 0


def test_a_dialog_window_and_its_turns_are_one_landmark_pass(talk, monkeypatch):
    mix, turns = talk
    other = telugu_speech(TE[1], voice="te+m3")
    calls: list[int] = []
    real = D.StretchLandmarks.of.__func__
    monkeypatch.setattr(D.StretchLandmarks, "of", classmethod(lambda cls, a, cfg: calls.append(len(a)) or real(cls, a, cfg)))
    cfg = D.DedupConfig()
    spans = [Span(0, 0, len(mix))] + [Span(0, a, b) for a, b in turns] + [Span(1, 0, len(other))]
    fps = [D.Fingerprint(f"s{i}", "mono", "r", "t", 0.0, "") for i in range(len(spans))]
    D.add_landmarks(fps, spans, [mix, other], cfg)
    assert calls == [len(mix), len(other)]  # one pass per recording, not one per sample
    whole = real(D.StretchLandmarks, mix, cfg)
    for fp, sp in zip(fps[:-1], spans[:-1]):  # each sample's landmarks: a slice of the recording's
        h, t = whole.slice(sp.start, sp.end)
        assert fp.hashes == h.tolist() and fp.times == t.tolist() and len(h) > 100
        assert min(fp.times) >= 0 and max(fp.times) * D.TICK < sp.end - sp.start
    # a sample alone in its stretch has exactly the landmarks it has on its own
    alone = D.fingerprint("x", "mono", "r", "t", other[None], 16000, cfg)
    assert fps[-1].hashes == alone.hashes and fps[-1].times == alone.times
    # a turn's slice still finds its copy fingerprinted on its own (another STFT grid phase): a near duplicate
    a, b = turns[1]
    copy = D.fingerprint("copy", "mono", "r2", "t", mix[None, a:b], 16000, cfg)
    dups = D.find_duplicates([fps[2], copy], cfg)
    assert [r.item for r in dups] == ["copy"] and dups[0].detail.startswith("near duplicate of s2:")


def test_dnsmos_covers_a_stretch_once_and_weights_windows_by_overlap(talk, monkeypatch):
    from pipelines.stages.dnsmos import POLY, WINDOW, Dnsmos, window_starts, windows

    mix, turns = talk
    model = Dnsmos(batch=8)
    seen: list[int] = []
    real = model.raw
    monkeypatch.setattr(model, "raw", lambda w: seen.append(len(w)) or real(w))
    lone = telugu_speech(TE[0])[: 5 * 16000]
    spans = [Span(0, 0, len(mix))] + [Span(0, a, b) for a, b in turns] + [Span(1, 0, len(lone))]
    got = model.score_spans([mix, lone], spans)
    starts = window_starts(len(mix))
    assert seen == [len(starts) + 1] and len(starts) == 3  # the recording's windows once, and the lone clip's
    raw = real(windows(mix))
    mos = np.stack([np.polyval(POLY[k], raw[:, i]) for i, k in enumerate(("sig", "bak", "ovrl"))], axis=1)
    for sp, g in zip(spans[:-1], got):
        w = np.clip(np.minimum(starts + WINDOW, sp.end) - np.maximum(starts, sp.start), 0, None)
        want = w @ mos / w.sum()
        assert (g.sig, g.bak, g.ovrl) == pytest.approx(tuple(want), abs=1.5e-3)
    assert got[0].ovrl == pytest.approx(mos[:, 2].mean(), abs=1e-3)  # the whole: its windows' plain mean
    assert got[-1] == model.score([lone])[0]  # alone in its stretch: as on its own


def test_a_unit_fingerprints_each_recording_once(synthetic_small, tmp_path, monkeypatch):
    """Two synthetic two-channel dialogs through the unit: mono turns (per channel) and dialog windows together
    are ~2x the recordings' speech, yet the landmarks see each recording's audio at most once."""
    from jobs.runner import parts_uri
    from manifests.io import read_rows
    from manifests.rows import Sample
    from pipelines.config import IngestConfig
    from pipelines.sources import synthetic
    from pipelines.unit import UnitProcessor, make_units

    recs = list(synthetic.prepare(synthetic_small / "synthetic"))[:2]
    cfg = IngestConfig(out=str(tmp_path))
    cfg.segment.dialog_min_s = 5.0
    cfg.diarization.report_der_sources = []
    (unit,) = make_units(recs, len(recs), cfg.processing_fingerprint())
    seen: list[int] = []
    real = D.StretchLandmarks.of.__func__
    monkeypatch.setattr(D.StretchLandmarks, "of", classmethod(lambda cls, a, c: seen.append(len(a)) or real(cls, a, c)))
    got = UnitProcessor(cfg, "r").process(unit)
    base = parts_uri(cfg.out, unit.unit_id)
    samples = read_rows(f"{base}/samples.parquet", Sample)
    fps = {f.sample_id: f for f in read_rows(f"{base}/fingerprints.parquet", D.Fingerprint)}
    assert got["mono"] > 2 and got["dialog"] >= 2 and set(fps) == {s.sample_id for s in samples}
    assert len(seen) <= len(recs) and sum(seen) / 16000 <= got["seconds_in"] < 0.7 * got["seconds_out"]
    assert all(len(f.hashes) > 20 and len(f.pcm_md5) == 32 for f in fps.values())
