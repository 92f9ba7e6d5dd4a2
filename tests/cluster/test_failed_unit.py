"""A unit that always raises: the others commit, the run is not committed and names the unit, a fixed rerun
redoes only that unit."""

from __future__ import annotations

import storage
from manifests.io import manifest_uri, read_table
from tests.cluster import faults
from tests.conftest import small_config


def test_failing_unit_is_isolated_and_rerun_alone(ray_session, tmp_path, synthetic_small, monkeypatch):
    import pipelines.ingest as ingest
    from jobs.runner import UNIT_ATTEMPTS

    real = ingest.run_job
    log = str(tmp_path / "started.log")
    cfg = small_config(tmp_path / "out", synthetic_small, unit_size=2)
    cfg.diarization.report_der_sources = []
    lines: list[str] = []
    monkeypatch.setattr(ingest, "run_job", lambda spec, **kw: real(faults.wrap(spec, log, "synthetic-00001"), **kw))
    res = ingest.run_ingest(cfg, progress=False, say=lines.append)
    assert not res.committed and res.units_failed == ["synthetic-00001"]
    assert res.units_processed == 2 and res.units_total == 3
    text = "\n".join(lines)
    assert "failed unit synthetic-00001: RuntimeError: injected fault in synthetic-00001" in text
    assert not storage.exists(f"{cfg.out}/_SUCCESS")
    assert faults.started(log).count("synthetic-00001") == UNIT_ATTEMPTS  # bounded retries, then failed
    for unit in ("synthetic-00000", "synthetic-00002"):
        assert storage.exists(f"{cfg.out}/manifests/parts/{unit}/_DONE")
    assert not storage.exists(f"{cfg.out}/manifests/parts/synthetic-00001/_DONE")

    # the bug fixed: only that unit runs again, and the run commits
    log2 = str(tmp_path / "rerun.log")
    monkeypatch.setattr(ingest, "run_job", lambda spec, **kw: real(faults.wrap(spec, log2), **kw))
    res2 = ingest.run_ingest(cfg, progress=False, say=lambda s: None)
    assert res2.committed and res2.units_skipped == 2 and res2.units_processed == 1
    assert faults.started(log2) == ["synthetic-00001"]
    recs = set(read_table(manifest_uri(cfg.out, "recordings"), None).column("recording_id").to_pylist())
    got = set(read_table(manifest_uri(cfg.out, "samples"), None).column("recording_id").to_pylist()) | set(
        read_table(manifest_uri(cfg.out, "rejects"), None).column("recording_id").to_pylist())
    assert recs and recs <= got
