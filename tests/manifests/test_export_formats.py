"""`export(uri, out, fmt)`: a Hugging Face dataset (save_to_disk) and Lhotse manifests that load in their tools."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from manifests_web_helpers import enriched_copy

import storage
from manifests.export import export, select_samples
from manifests.io import manifest_uri, read_table
from manifests.rows import Sample


@pytest.fixture(scope="module")
def samples(ingested):
    cfg, _ = ingested
    return read_table(manifest_uri(cfg.out, "samples"), Sample).to_pylist()


def _flac(row: dict) -> bytes:
    return dict(storage.iter_shard(row["shard"]))[row["sample_id"]]["flac"]


def test_hf_dataset_loads_with_stereo_dialogs(ingested, samples, tmp_path):
    import datasets

    cfg, _ = ingested
    res = export(cfg.out, tmp_path / "hf", "hf")
    assert res.n_samples == len(samples) and res.seconds == pytest.approx(sum(s["duration_s"] for s in samples))
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(ds) == len(samples)
    assert isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].num_channels is None
    for col in ("sample_id", "kind", "source", "recording_id", "duration_s", "speakers", "turns", "text", "license",
                "sha256", "snr_db", "split"):
        assert col in ds.column_names
    by_id = {s["sample_id"]: s for s in samples}
    assert sorted(ds["sample_id"]) == sorted(by_id)
    raw = ds.cast_column("audio", datasets.Audio(decode=False))
    for rec in raw:  # the FLAC bytes are the shard's, bit for bit
        s = by_id[rec["sample_id"]]
        assert hashlib.sha256(rec["audio"]["bytes"]).hexdigest() == s["sha256"]
        assert rec["turns"] == s["turns"] and rec["speakers"] == s["speakers"] and rec["text"] == s["text"]
    kinds = list(ds["kind"])
    for kind, channels in (("dialog", 2), ("mono", 1)):
        i = kinds.index(kind)
        row = ds[i]
        smp = row["audio"].get_all_samples()  # decoded by datasets (torchcodec)
        assert smp.sample_rate == 16000 and tuple(smp.data.shape)[0] == channels
        assert smp.data.shape[1] / 16000 == pytest.approx(row["duration_s"], abs=0.002)


def test_lhotse_manifests_load_and_play(ingested, samples, tmp_path):
    from lhotse import (
        CutSet,
        MonoCut,
        MultiCut,
        RecordingSet,
        SupervisionSet,
        load_manifest,
    )
    from lhotse.qa import validate, validate_recordings_and_supervisions

    cfg, _ = ingested
    out = tmp_path / "lh"
    res = export(cfg.out, out, "lhotse")
    assert res.n_samples == len(samples)
    recs = load_manifest(out / "recordings.jsonl.gz")
    sups = load_manifest(out / "supervisions.jsonl.gz")
    cuts = CutSet.from_file(out / "cuts.jsonl.gz")
    assert isinstance(recs, RecordingSet) and isinstance(sups, SupervisionSet)
    assert len(recs) == len(cuts) == len(samples)
    validate_recordings_and_supervisions(recs, sups)
    validate(cuts, read_data=False)
    n_turns = sum(len(s["turns"]) for s in samples if s["kind"] == "dialog")
    assert len(sups) == n_turns + sum(s["kind"] == "mono" for s in samples)
    by_id = {s["sample_id"]: s for s in samples}
    checked = set()
    for cut in cuts:
        s = by_id[cut.id]
        assert Path(out / "audio" / f"{cut.id}.wav").exists()
        if s["kind"] in checked:
            continue
        checked.add(s["kind"])
        audio = cut.load_audio()
        assert cut.duration == pytest.approx(s["duration_s"], abs=0.002)
        assert audio.shape[-1] / 16000 == pytest.approx(s["duration_s"], abs=0.002)
        ref, _ = sf.read(io.BytesIO(_flac(s)), dtype="float32", always_2d=True)
        if s["kind"] == "dialog":
            assert isinstance(cut, MultiCut) and audio.shape[0] == 2
            roles = {sup.custom["role"]: sup.channel for sup in cut.supervisions}
            assert roles == {"system": 0, "user": 1}
            assert [sup.text for sup in cut.supervisions] == [t["text"] for t in s["turns"]]
        else:
            assert isinstance(cut, MonoCut) and audio.shape[0] == 1
            assert cut.supervisions[0].text == s["text"] and cut.supervisions[0].speaker == s["speakers"][0]
        assert np.abs(audio - ref.T).max() < 1e-4  # the same 16-bit samples
    assert checked == {"mono", "dialog"}
    meta = json.loads((out / "export.json").read_text())
    assert meta["samples"] == len(samples)


def test_filters_and_errors(ingested, samples, tmp_path):
    cfg, _ = ingested
    t = select_samples(cfg.out, kind="dialog")
    assert t.num_rows == sum(s["kind"] == "dialog" for s in samples)
    assert select_samples(cfg.out, exclude_licenses=["CC0*"]).num_rows == 0
    assert select_samples(cfg.out, limit=3).column("sample_id").to_pylist() == [s["sample_id"] for s in samples[:3]]
    res = export(cfg.out, tmp_path / "d", "lhotse", kind="dialog", limit=2)
    assert res.n_samples == 2 and len(list((tmp_path / "d" / "audio").glob("*.wav"))) == 2
    with pytest.raises(ValueError, match="unknown export format"):
        export(cfg.out, tmp_path / "x", "wav")
    with pytest.raises(ValueError, match="unknown export option"):
        export(cfg.out, tmp_path / "x", "hf", speaker="a")


def test_export_from_moved_run_checks_audio(ingested, tmp_path):
    """A moved run (manifest shard paths gone) still exports; a corrupted sha256 is caught."""
    cfg, _ = ingested
    run = enriched_copy(cfg.out, tmp_path / "run")
    res = export(run["out"], tmp_path / "ok", "lhotse", exclude_licenses=["CC-BY-NC*", "none"])
    assert res.n_samples == sum(1 for s in run["samples"] if s["license"] in ("CC-BY-4.0", "CC0-1.0"))
    import pyarrow as pa

    from manifests.io import table_bytes

    rows = run["samples"]
    rows[0] = dict(rows[0], sha256="0" * 64)
    storage.write_bytes(manifest_uri(run["out"], "samples"), table_bytes(pa.Table.from_pylist(rows, schema=Sample.SCHEMA)))
    with pytest.raises(ValueError, match="sha256 differs"):
        export(run["out"], tmp_path / "bad", "lhotse", limit=1)


def test_moshi_is_handed_to_export_moshi(ingested, samples, tmp_path):
    cfg, _ = ingested
    with pytest.raises(ValueError, match="takes every dialog sample"):
        export(cfg.out, tmp_path / "m0", "moshi", kind="mono")
    res = export(cfg.out, tmp_path / "m", "moshi")
    dialogs = [s for s in samples if s["kind"] == "dialog"]
    assert res.n_samples == len(dialogs) and Path(res.files["jsonl"]).exists()
    assert res.seconds == pytest.approx(sum(s["duration_s"] for s in dialogs), abs=0.01)


def test_lhotse_missing_says_which_extra(ingested, tmp_path, monkeypatch, capsys):
    """Without lhotse installed the export fails at once with the pip command, from the API and the CLI."""
    import sys

    from matalu.cli import main

    cfg, _ = ingested
    monkeypatch.setitem(sys.modules, "lhotse", None)  # import lhotse -> ImportError
    with pytest.raises(ValueError, match=r"pip install 'matalu\[lhotse\]'"):
        export(cfg.out, tmp_path / "l", "lhotse", limit=1)
    assert not (tmp_path / "l" / "cuts.jsonl.gz").exists()
    capsys.readouterr()
    assert main(["manifests", "export", cfg.out, "-o", str(tmp_path / "l2"), "--format", "lhotse"]) != 0
    assert "pip install 'matalu[lhotse]'" in capsys.readouterr().err
