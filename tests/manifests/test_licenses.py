"""`matalu manifests licenses`: totals equal the manifests' sums; the reusable --exclude-license filter."""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa
import pytest
from manifests_web_helpers import enriched_copy

from manifests.io import manifest_uri, read_table
from manifests.licenses import license_filter, license_report, render
from manifests.rows import Recording, Sample


@pytest.fixture(scope="module")
def run(ingested, tmp_path_factory):
    cfg, _ = ingested
    return enriched_copy(cfg.out, tmp_path_factory.mktemp("lic") / "run")


def _sums(out: str) -> tuple[dict, dict, float, int]:
    rows = read_table(manifest_uri(out, "samples"), Sample).to_pylist()
    by_lic, by_pair = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0])
    for r in rows:
        lic = r["license"] or "(none)"
        for d, k in ((by_lic, lic), (by_pair, (lic, r["source"]))):
            d[k][0] += 1
            d[k][1] += r["duration_s"] / 3600
    return by_lic, by_pair, sum(r["duration_s"] for r in rows) / 3600, len(rows)


def test_totals_equal_manifest_sums(ingested, run):
    cfg, _ = ingested
    for out in (cfg.out, run["out"]):
        rep = license_report(out)
        by_lic, by_pair, hours, n = _sums(out)
        assert rep["total"]["samples"] == n and rep["total"]["hours"] == pytest.approx(hours, abs=1e-12)
        assert {d["license"]: (d["samples"], pytest.approx(d["hours"], abs=1e-12)) for d in rep["by_license"]} == \
            {k: (v[0], v[1]) for k, v in by_lic.items()}
        assert {(r["license"], r["source"]): (r["samples"], pytest.approx(r["hours"], abs=1e-12))
                for r in rep["by_license_source"]} == {k: (v[0], v[1]) for k, v in by_pair.items()}
        assert sum(d["samples"] for d in rep["by_license"]) == n
        assert sum(d["hours"] for d in rep["by_license"]) == pytest.approx(hours, abs=1e-12)
        assert sum(d["share"] for d in rep["by_license"]) == pytest.approx(1.0)
    rep = license_report(cfg.out)
    recs = read_table(manifest_uri(cfg.out, "recordings"), Recording).to_pylist()
    assert rep["by_license"][0]["input_recordings"] == len(recs)
    assert rep["by_license"][0]["input_hours"] == pytest.approx(sum(r["duration_s"] for r in recs) / 3600)
    assert len(license_report(run["out"])["by_license"]) == 4


def test_cli_table_and_json(run, capsys):
    import argparse

    from matalu.commands import manifests_web

    p = argparse.ArgumentParser()
    manifests_web.add_subcommands(p.add_subparsers(dest="mcmd"))
    capsys.readouterr()
    assert manifests_web.run(p.parse_args(["licenses", run["out"], "--json"])) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep == json.loads(json.dumps(license_report(run["out"])))
    assert manifests_web.run(p.parse_args(["licenses", run["out"]])) == 0
    text = capsys.readouterr().out
    for lic in ("CC-BY-4.0", "CC-BY-NC-4.0", "CC0-1.0", "(none)", "total", "hours by license and source"):
        assert lic in text
    from rich.console import Console

    con = Console(record=True, width=200)
    render(rep, console=con)
    assert "synthetic" in con.export_text()


def test_license_filter():
    keep = license_filter(["CC-BY-NC*", "none"])
    assert keep("CC0-1.0") and keep("CC-BY-4.0") and keep({"license": "CC-BY-SA-4.0"})
    assert not keep("CC-BY-NC-4.0") and not keep("cc-by-nc-sa-4.0") and not keep("") and not keep(None)
    assert not keep(Recording(recording_id="r", source="s", uri="x", license="CC-BY-NC-ND-4.0"))
    assert keep(Sample(sample_id="a", kind="mono", shard="", source="s", recording_id="r", start_s=0, end_s=1,
                       duration_s=1, channels=1, license="CC-BY-4.0"))
    assert license_filter(["CC-BY-NC-4.0,CC-BY-SA-4.0"]).excludes("cc-by-sa-4.0")  # comma lists work
    empty = license_filter([])
    assert not empty and empty("") and empty("anything") and license_filter(["", "  "])("")  # blanks: no-op
    kept, dropped = keep.split(["CC0-1.0", "CC-BY-NC-4.0", "", "CC-BY-4.0"])
    assert kept == ["CC0-1.0", "CC-BY-4.0"] and dropped == ["CC-BY-NC-4.0", ""]
    t = pa.table({"license": ["CC0-1.0", "CC-BY-NC-4.0", None, "", "CC-BY-4.0"], "x": [0, 1, 2, 3, 4]})
    assert keep.filter_table(t).column("x").to_pylist() == [0, 4]
    assert empty.filter_table(t).num_rows == 5
    rej = keep.reject(Recording(recording_id="rec1", source="slr66", uri="x", license="CC-BY-NC-4.0", duration_s=2.5))
    assert (rej.item, rej.stage, rej.reason, rej.source, rej.recording_id, rej.seconds) == \
        ("rec1", "license", "license_excluded", "slr66", "rec1", 2.5)
    assert "CC-BY-NC*" in rej.detail


def test_filter_drops_the_right_hours(run):
    rows = read_table(manifest_uri(run["out"], "samples"), Sample)
    f = license_filter(["CC-BY-NC*", "none"])
    kept = f.filter_table(rows)
    rep = license_report(run["out"])
    by = {d["license"]: d for d in rep["by_license"]}
    want = by["CC-BY-4.0"]["hours"] + by["CC0-1.0"]["hours"]
    assert sum(kept.column("duration_s").to_pylist()) / 3600 == pytest.approx(want)
    assert set(kept.column("license").to_pylist()) == {"CC-BY-4.0", "CC0-1.0"}
