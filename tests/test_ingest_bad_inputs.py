"""Bad input never stops the job and is never lost: each file is a sample or a reject with its exact reason."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Recording, Reject, Sample
from pipelines.config import IngestConfig, SourceSpec
from tests.audio import TELUGU, telugu_speech, write_as


def test_bad_inputs_become_rejects_with_reasons(ray_session, tmp_path):
    from pipelines.ingest import run_ingest

    d = tmp_path / "audio"
    d.mkdir()
    speech48 = telugu_speech(sr=48000)
    write_as(d / "good48k.wav", speech48, 48000)
    write_as(d / "stereo44k.flac", np.stack([telugu_speech(sr=44100), telugu_speech(sr=44100)]), 44100)
    write_as(d / "low8k.mp3", telugu_speech(sr=8000), 8000)
    write_as(d / "phone.m4a", telugu_speech(sr=16000), 16000)
    write_as(d / "vorbis.ogg", telugu_speech(sr=22050), 22050)
    (d / "empty.wav").write_bytes(b"")
    full = (d / "good48k.wav").read_bytes()
    (d / "truncated.wav").write_bytes(full[: len(full) // 3])
    flac = (d / "stereo44k.flac").read_bytes()
    (d / "cut.flac").write_bytes(flac[: len(flac) // 2])
    huge = telugu_speech(sr=16000)
    huge[1000:1005] = 1e30
    sf.write(d / "huge.wav", huge, 16000, subtype="FLOAT")
    (d / "notes.wav").write_text("ఇది ఆడియో కాదు.\n" * 50, encoding="utf-8")
    nan = telugu_speech(sr=16000)
    nan[1000:1010] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(d / "silence.wav", np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    blip = telugu_speech(text="అవును", sr=16000)
    sf.write(d / "blip.wav", blip, 16000, subtype="PCM_16")
    loud = np.clip(telugu_speech(sr=16000) * 40, -1, 1)
    sf.write(d / "clipped.wav", loud, 16000, subtype="PCM_16")

    rows = ["path\ttext\tspeaker\tlicense"]
    names = ["good48k.wav", "stereo44k.flac", "low8k.mp3", "phone.m4a", "vorbis.ogg", "empty.wav", "truncated.wav",
             "notes.wav", "nan.wav", "silence.wav", "blip.wav", "clipped.wav", "missing.wav", "cut.flac", "huge.wav"]
    rows += [f"{n}\t{TELUGU}\tspk{i % 3}\tCC-BY-4.0" for i, n in enumerate(names)]
    rows += ["\tఈ లైనుకు ఫైలు లేదు\tspk9\tCC-BY-4.0"]  # a line without a path
    listing = d / "listing.tsv"
    listing.write_text("\n".join(rows) + "\n", encoding="utf-8")

    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "src"),
                       sources=[SourceSpec("manifest", {"path": str(listing)})], unit_size=5, num_workers=2)
    cfg.filters.dedup.enabled = False  # the good files are one speech in five containers: duplicates by design
    res = run_ingest(cfg, progress=False)
    assert res.committed and res.counts["unaccounted_recordings"] == 0

    recs = {r.recording_id: r for r in read_rows(manifest_uri(cfg.out, "recordings"), Recording)}
    by_file = {r.uri.rsplit("/", 1)[-1]: rid for rid, r in recs.items()}
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    reasons: dict[str, set[str]] = {}
    for r in rejects:
        reasons.setdefault(r.recording_id or r.item, set()).add(r.reason)
    expected = {"empty.wav": "empty_file", "truncated.wav": "truncated", "notes.wav": "undecodable",
                "nan.wav": "non_finite", "silence.wav": "no_speech", "blip.wav": "too_short",
                "clipped.wav": "clipping", "missing.wav": "unreadable",
                "cut.flac": "truncated", "huge.wav": "out_of_range"}
    for name, reason in expected.items():
        assert reasons.get(by_file[name]) == {reason}, (name, reasons.get(by_file[name]))
        assert not any(s.recording_id == by_file[name] for s in samples), name
    assert any(r.reason == "bad_line" and r.stage == "prepare" for r in rejects)
    assert all(r.detail for r in rejects)

    good = ["good48k.wav", "stereo44k.flac", "low8k.mp3", "phone.m4a", "vorbis.ogg"]
    for name in good:
        mine = [s for s in samples if s.recording_id == by_file[name]]
        assert len(mine) == 1, name
        assert mine[0].text == TELUGU and mine[0].channels == 1 and mine[0].license == "CC-BY-4.0"
    assert recs[by_file["stereo44k.flac"]].channels == 2 and recs[by_file["stereo44k.flac"]].sample_rate == 44100
    assert recs[by_file["low8k.mp3"]].sample_rate == 8000
    assert len(samples) + len({r.recording_id for r in rejects if r.recording_id}) == len(names)


def test_excluded_licenses_become_rejects_before_any_work(tmp_path):
    from pipelines.ingest import prepare_sources

    listing = tmp_path / "l.tsv"
    listing.write_text("path\ttext\tlicense\na.wav\tx\tCC-BY-NC-4.0\nb.wav\ty\tCC-BY-4.0\nc.wav\tz\tcc-by-nc-sa-4.0\n")
    cfg = IngestConfig(out=str(tmp_path / "o"), sources=[SourceSpec("manifest", {"path": str(listing)})],
                       exclude_licenses=["CC-BY-NC*"])
    recs, rejects = prepare_sources(cfg, say=lambda s: None)
    assert [r.license for r in recs] == ["CC-BY-4.0"]
    assert sorted(r.reason for r in rejects) == ["license_excluded", "license_excluded"]
    assert all("CC-BY-NC" in r.detail.upper() for r in rejects)
