"""`matalu ingest --dry-run-filters` previews thresholds on a finished run's stored scores, writes nothing, and
predicts exactly what a unit with those thresholds rejects."""

from __future__ import annotations

import json
import os

import pytest

from jobs.runner import parts_uri
from manifests.io import manifest_uri, read_rows
from manifests.rows import Recording, Reject, Sample
from matalu.cli import main
from pipelines.config import config_from_dict
from pipelines.unit import UnitProcessor, make_units


def _tree(root: str) -> dict[str, tuple[int, int]]:
    return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_size, os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, fs in os.walk(root) for f in fs}


def _preview(capsys, out: str, *filters: str) -> dict:
    capsys.readouterr()
    argv = ["ingest", "--dry-run-filters", out, "--json"]
    for f in filters:
        argv += ["--filter", f]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_predicts_the_rejects_of_a_real_unit(ingested, tmp_path, capsys):
    cfg, _ = ingested
    out = cfg.out
    samples = read_rows(manifest_uri(out, "samples"), Sample)
    lufs = sorted(s.loudness_lufs for s in samples)
    assert None not in lufs and len(set(lufs)) > 2  # loudness is measured by default
    thr = round((lufs[len(lufs) // 2 - 1] + lufs[len(lufs) // 2]) / 2, 3)
    before = _tree(out)

    same = _preview(capsys, out)  # the run's own thresholds: its samples all pass them again
    assert same["removed"] == [] and same["kept_samples"] == len(samples) == same["n_samples"]

    d = _preview(capsys, out, f"min_lufs={thr}", "min_dnsmos_ovrl=3.0")
    quiet = [s for s in samples if s.loudness_lufs < thr]
    hours = sum(s.duration_s for s in samples) / 3600
    assert len(d["removed"]) == 1
    (g,) = d["removed"]
    assert (g["reason"], g["samples"]) == ("too_quiet", len(quiet))
    assert g["hours"] == pytest.approx(sum(s.duration_s for s in quiet) / 3600, abs=1e-9)
    assert g["share"] == pytest.approx(g["hours"] / hours, abs=1e-9)
    assert d["kept_samples"] == len(samples) - len(quiet) and d["kept_hours"] == pytest.approx(hours - g["hours"])
    # DNSMOS was off in that run: the threshold cannot judge any sample, and says so instead of removing them
    assert d["unmeasured"] == [{"filter": "min_dnsmos_ovrl", "score": "dnsmos_ovrl", "samples": len(samples)}]
    assert _tree(out) == before  # nothing written or touched

    # a unit given the same threshold rejects exactly the samples the preview named, for the same reason
    recs = read_rows(manifest_uri(out, "recordings"), Recording)[:3]
    ids = {r.recording_id for r in recs}
    cfg2 = config_from_dict({**cfg.to_dict(), "out": str(tmp_path / "run")})
    cfg2.filters.min_lufs = thr
    cfg2.diarization.report_der_sources = []  # the DER check adds a diarization row only, not samples
    (unit,) = make_units(recs, len(recs), cfg2.processing_fingerprint())
    UnitProcessor(cfg2, "run-d").process(unit)
    base = parts_uri(cfg2.out, unit.unit_id)
    rejects = read_rows(f"{base}/rejects.parquet", Reject)
    kept = read_rows(f"{base}/samples.parquet", Sample)
    want_rejected = {s.sample_id for s in quiet if s.recording_id in ids}
    assert want_rejected and {r.item for r in rejects} == want_rejected
    assert {r.reason for r in rejects} == {"too_quiet"}
    assert {s.sample_id for s in kept} == {s.sample_id for s in samples if s.recording_id in ids} - want_rejected


def test_dry_run_text_and_bad_flags(ingested, capsys):
    cfg, _ = ingested
    capsys.readouterr()
    assert main(["ingest", "--dry-run-filters", cfg.out, "--filter", "min_lufs=0"]) == 0
    text = capsys.readouterr().out
    assert "would remove" in text and "too_quiet" in text and "would keep 0 samples" in text
    assert main(["ingest", "--dry-run-filters", cfg.out, "--filter", "min_loudness=3"]) == 2
    err = capsys.readouterr().err
    assert "--filter 'min_loudness=3': expected KEY=VALUE with KEY one of" in err and "min_lufs" in err
    assert main(["ingest", "--dry-run-filters", cfg.out, "--filter", "min_duration_s=null"]) == 2
    assert "the value must be a number" in capsys.readouterr().err
    assert main(["ingest", "--dry-run-filters", cfg.out + "-nope"]) == 2
    assert "no samples manifest at" in capsys.readouterr().err
