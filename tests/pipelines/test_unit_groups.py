"""A unit holds at most ``vad_batch_max_s`` of decoded audio at once (plus one recording), and grouping does not
change what it writes: the same samples, shards and rejects as one group (issue [13] item 11; the peak-RSS figure
for 2 x 2 h is in benchmarks/unit_memory.py)."""

from __future__ import annotations

from pathlib import Path

import storage
from jobs.runner import parts_uri
from manifests.io import read_rows
from manifests.rows import Recording, Reject, Sample
from pipelines.config import IngestConfig
from pipelines.sources import synthetic
from pipelines.unit import UnitProcessor, make_units


def _run(tmp: Path, recs: list[Recording], budget: float, monkeypatch) -> tuple[list[int], dict]:
    cfg = IngestConfig(out=str(tmp), vad_batch_max_s=budget)
    cfg.segment.dialog_min_s = 5.0
    (unit,) = make_units(recs, len(recs), cfg.processing_fingerprint())
    proc = UnitProcessor(cfg, "run-x")
    batches: list[int] = []
    real = proc.vad.probs
    monkeypatch.setattr(proc.vad, "probs", lambda streams: batches.append(len(streams)) or real(streams))
    proc.process(unit)
    base = parts_uri(cfg.out, unit.unit_id)
    tars = {Path(u).name: storage.read_bytes(u) for u in storage.list_files(f"{cfg.out}/segments", ".tar")}
    got = {"samples": [(s.sample_id, s.sha256, s.shard.rsplit("/", 1)[1]) for s in read_rows(f"{base}/samples.parquet", Sample)],
           "rejects": [(r.item, r.reason) for r in read_rows(f"{base}/rejects.parquet", Reject)], "tars": tars}
    return batches, got


def test_groups_bound_the_audio_held_and_keep_the_output(synthetic_small, tmp_path, monkeypatch):
    recs = list(synthetic.prepare(synthetic_small / "synthetic"))[:3]
    missing = Recording(recording_id="zz-missing", source="synthetic", uri=str(tmp_path / "nope.wav"))
    recs.append(missing)
    one, out_one = _run(tmp_path / "one", recs, 1e9, monkeypatch)
    each, out_each = _run(tmp_path / "each", recs, 0.001, monkeypatch)
    assert one == [6]  # 3 two-channel dialogs VAD-ed together (the missing file is rejected before)
    assert each == [2, 2, 2]  # one recording at a time: its audio is dropped before the next is read
    assert out_one["samples"] and out_one["samples"] == out_each["samples"]
    assert ("zz-missing", "unreadable") in out_each["rejects"] and out_one["rejects"] == out_each["rejects"]
    assert out_one["tars"] == out_each["tars"]  # byte-identical shards either way on these recordings
