"""The quality measures through the real unit processor: a narrow-band copy (8 kHz phone audio upsampled) is
flagged, loudness and DNSMOS filters make exact rejects with their reasons, every recording is a sample or a
reject, and loudness normalisation writes audio at the target loudness and says so in the row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import storage
from jobs.runner import parts_uri
from manifests.io import read_rows
from manifests.rows import Recording, Reject, Sample
from pipelines.config import IngestConfig
from pipelines.stages.loudness import LoudnessMeter
from pipelines.stages.measures import MeasureConfig
from pipelines.stages.quality import FilterConfig
from pipelines.unit import UnitProcessor, make_units
from storage.audio import read_sample, resample
from tests.audio import telugu_speech, write_as


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list[Recording]:
    d = tmp_path_factory.mktemp("measures")
    x = telugu_speech(sr=48000)  # ~6.8 s, wideband
    phone = resample(resample(x[None], 48000, 8000), 8000, 48000)[0]  # an 8 kHz call, upsampled to 48 kHz
    noise = 0.05 * np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    audio = {"wide": x, "phone": phone, "quiet": x * 10 ** (-40 / 20),  # ~ -59 LUFS
             "loud": 0.95 * np.tanh(6 * x),  # squashed to ~ -8 LUFS, peaks under full scale (not clipping)
             "noisy": np.clip(x + noise, -1, 1)}
    return [Recording(recording_id=k, source="bench", uri=str(write_as(d / f"{k}.wav", a, 48000)), speaker_id="s")
            for k, a in audio.items()]


def ingest_unit(out: Path, recs: list[Recording], filters: FilterConfig, measures: MeasureConfig):
    cfg = IngestConfig(out=str(out), filters=filters, measures=measures)
    cfg.validate()
    (unit,) = make_units(recs, len(recs), cfg.processing_fingerprint())
    UnitProcessor(cfg, "run-m").process(unit)
    base = parts_uri(cfg.out, unit.unit_id)
    return read_rows(f"{base}/samples.parquet", Sample), read_rows(f"{base}/rejects.parquet", Reject)


def test_filters_reject_exactly_with_reasons(recordings, tmp_path):
    filters = FilterConfig(min_bandwidth_hz=6000, min_lufs=-40, max_lufs=-12, min_dnsmos_ovrl=2.5)
    samples, rejects = ingest_unit(tmp_path, recordings, filters, MeasureConfig(dnsmos=True))
    by_rec = {r.recording_id: r for r in rejects}
    assert {s.recording_id for s in samples} == {"wide"}
    assert {k: (v.stage, v.reason) for k, v in by_rec.items()} == {
        "phone": ("filters", "narrow_band"), "quiet": ("filters", "too_quiet"), "loud": ("filters", "too_loud"),
        "noisy": ("filters", "low_dnsmos")}
    assert len(rejects) == 4 and all(r.seconds and r.item.startswith(f"bench__{r.recording_id}__m") for r in rejects)
    assert "Hz is under 6000 Hz" in by_rec["phone"].detail and "LUFS is under -40 LUFS" in by_rec["quiet"].detail
    assert "LUFS is over -12 LUFS" in by_rec["loud"].detail and "DNSMOS OVRL" in by_rec["noisy"].detail
    (wide,) = samples
    assert wide.bandwidth_hz > 7000 and -25 < wide.loudness_lufs < -15 and wide.dnsmos_ovrl > 2.5
    assert wide.loudness_normalized_to is None and wide.loudness_gain_db is None  # not normalised by default


def test_narrow_band_is_flagged_and_normalisation_hits_the_target(recordings, tmp_path):
    """Defaults (no filters, no DNSMOS) keep every recording, measured; normalisation to -23 LUFS is audible in the
    written FLAC and recorded in the row."""
    samples, rejects = ingest_unit(tmp_path, recordings, FilterConfig(), MeasureConfig(normalize_lufs=-23.0))
    assert not rejects and {s.recording_id for s in samples} == {r.recording_id for r in recordings}
    got = {s.recording_id: s for s in samples}
    assert got["phone"].bandwidth_hz < 4100 < 7000 < got["wide"].bandwidth_hz  # the phone copy is flagged
    assert all(s.dnsmos_ovrl is None for s in samples)  # DNSMOS is off by default
    meter = LoudnessMeter(16000)
    for s in samples:
        assert s.loudness_normalized_to == -23.0
        assert s.loudness_gain_db == pytest.approx(-23.0 - s.loudness_lufs, abs=0.02)  # no peak cap on these
        members = next(m for k, m in storage.iter_shard(s.shard) if k == s.sample_id)
        _, audio = read_sample(members)
        assert meter.lufs(audio) == pytest.approx(-23.0, abs=0.3), s.recording_id
    assert got["quiet"].loudness_lufs < -55 and got["loud"].loudness_lufs > -12


def test_measure_settings_are_checked():
    with pytest.raises(ValueError, match="min_dnsmos_ovrl needs the dnsmos measure"):
        IngestConfig(filters=FilterConfig(min_dnsmos_ovrl=3.0)).validate()
    with pytest.raises(ValueError, match="is above filters.max_lufs"):
        IngestConfig(filters=FilterConfig(min_lufs=-10, max_lufs=-30)).validate()
    with pytest.raises(ValueError, match="measures.dnsmos_model '/nope/m.onnx' does not exist"):
        IngestConfig(measures=MeasureConfig(dnsmos=True, dnsmos_model="/nope/m.onnx")).validate()
