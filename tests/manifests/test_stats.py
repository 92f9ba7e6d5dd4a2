"""One set of statistics: `manifests stats`, the web page's /api/summary, the static report and the licence table
report the same hours by speaker, source, kind and licence, and those hours are the manifest's own."""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict

import pyarrow as pa
import pytest
from manifests_web_helpers import enriched_copy, get_json, running

import storage
from manifests.io import manifest_uri, read_table, table_bytes
from manifests.licenses import license_report
from manifests.overview import TOP_SPEAKERS
from manifests.report import _fmt_h, build_report
from manifests.rows import Sample
from matalu.cli import main


@pytest.fixture(scope="module")
def run(ingested, tmp_path_factory):
    """The ingested run with mixed licences, two sources and one sample without speakers."""
    cfg, _ = ingested
    r = enriched_copy(cfg.out, tmp_path_factory.mktemp("stats") / "run")
    rows = r["samples"]
    for i, s in enumerate(rows):
        if i % 3 == 1:
            s["source"] = "other"
    mono = next(s for s in rows if s["kind"] == "mono")
    mono["speakers"] = []
    storage.write_bytes(manifest_uri(r["out"], "samples"), table_bytes(pa.Table.from_pylist(rows, schema=Sample.SCHEMA)))
    return r["out"], read_table(manifest_uri(r["out"], "samples"), Sample).to_pylist()


def expected(rows: list[dict]) -> dict[str, dict[str, tuple[int, float]]]:
    """Samples and hours per value, straight from the rows: a sample counts once for each of its speakers."""
    out: dict[str, dict] = {k: defaultdict(lambda: [0, 0.0]) for k in ("source", "kind", "license", "speaker")}
    for r in rows:
        keys = {"source": [r["source"]], "kind": [r["kind"]], "license": [r["license"] or "(none)"],
                "speaker": list(r["speakers"] or []) or ["(unknown)"]}
        for what, vals in keys.items():
            for v in vals:
                out[what][v][0] += 1
                out[what][v][1] += r["duration_s"] / 3600
    return {what: {k: (n, h) for k, (n, h) in d.items()} for what, d in out.items()}


def as_map(rows: list[dict], key: str) -> dict[str, tuple[int, float]]:
    return {r[key]: (r["samples"], r["hours"]) for r in rows}


def same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, (n, h) in want.items():
        assert got[k][0] == n and got[k][1] == pytest.approx(h, abs=1e-9), k


def test_cli_page_report_and_licences_agree(run, capsys):
    out, rows = run
    want = expected(rows)
    dialogs = [r for r in rows if r["kind"] == "dialog"]
    assert dialogs and all(len(r["speakers"]) == 2 for r in dialogs)  # the case the old CLI got wrong
    assert len(want["license"]) == 4 and len(want["source"]) == 2 and "(unknown)" in want["speaker"]

    capsys.readouterr()
    assert main(["manifests", "stats", out, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    with running(out) as srv:
        status, page = get_json(srv.url + "api/summary")
    assert status == 200

    for what in ("source", "kind", "license"):
        same(as_map(cli["by_" + what], what), want[what])
        assert cli["by_" + what] == page["by_" + what]
    # speakers: each dialog speaker is credited with the whole dialog; the top TOP_SPEAKERS are listed
    spk = as_map(cli["by_speaker"], "speaker")
    assert len(spk) == min(TOP_SPEAKERS, len(want["speaker"]))
    same(spk, {k: want["speaker"][k] for k in spk})
    unlisted = [h for k, (_, h) in want["speaker"].items() if k not in spk]
    assert all(h <= min(x[1] for x in spk.values()) + 1e-12 for h in unlisted)
    assert not any(", " in k for k in spk)
    assert cli["by_speaker"] == page["by_speaker"]
    assert sum(h for _, h in want["speaker"].values()) > cli["hours"]  # dialogs count for both speakers
    for k in ("n_samples", "hours", "n_speakers", "n_shards", "shard_bytes", "n_rejects"):
        assert cli[k] == page[k], k
    assert cli["n_speakers"] == len({s for r in rows for s in r["speakers"]})
    assert {(r["reason"], r["count"]) for r in cli["rejects"]} == {("too_short", 3), ("low_snr", 2)}

    # the static report draws the same bars (label: "<hours> h · <samples>")
    doc = build_report(out)
    for what in ("source", "kind", "license", "speaker"):
        svg = re.search(rf'<svg id="chart-{what}".*?</svg>', doc, re.S).group(0)
        bars = dict(re.findall(r"<title>(.*?): (.*?)</title>", svg))
        assert {html.unescape(k): v for k, v in bars.items()} == {
            r[what]: f"{_fmt_h(r['hours'])} h · {r['samples']}" for r in cli["by_" + what]}

    # the licence table (`manifests licenses`, the report's licence section) adds up to the same hours
    lic = license_report(out)
    same({d["license"]: (d["samples"], d["hours"]) for d in lic["by_license"]}, want["license"])

    assert main(["manifests", "stats", out]) == 0
    text = capsys.readouterr().out
    assert "hours by speaker" in text and "too_short" in text and "other" in text
