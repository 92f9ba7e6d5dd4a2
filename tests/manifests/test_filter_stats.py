"""`matalu manifests stats` and the web page show what each filter removed (count, hours, share of the input hours,
the same numbers in both), and the page draws the quality measures' histograms from the manifest's scores."""

from __future__ import annotations

import json

import pytest
from manifests_web_helpers import enriched_copy, get_json, http, running

from manifests.io import manifest_uri, read_rows
from manifests.rows import Recording, Reject, Sample
from matalu.cli import main


@pytest.fixture(scope="module")
def run(ingested, tmp_path_factory) -> str:
    cfg, _ = ingested
    return enriched_copy(cfg.out, tmp_path_factory.mktemp("fstats") / "run")["out"]  # + filter rejects with seconds


def test_hours_removed_by_each_reason(run, capsys):
    rejects = read_rows(manifest_uri(run, "rejects"), Reject)
    input_h = sum(r.duration_s for r in read_rows(manifest_uri(run, "recordings"), Recording)) / 3600
    want: dict[str, list] = {}
    for r in rejects:
        w = want.setdefault(r.reason, [0, 0.0])
        w[0] += 1
        w[1] += r.seconds / 3600
    assert len(want) == 2 and input_h > 0

    capsys.readouterr()
    assert main(["manifests", "stats", run, "--json"]) == 0
    cli = {g["reason"]: g for g in json.loads(capsys.readouterr().out)["rejects"]}
    assert set(cli) == set(want)
    for reason, (n, h) in want.items():
        g = cli[reason]
        assert g["stage"] == "filters" and g["count"] == n
        assert g["hours"] == pytest.approx(h, abs=1e-12) and g["share"] == pytest.approx(h / input_h, abs=1e-12)
    with running(run) as srv:
        st, page = get_json(srv.url + "api/rejects")
        assert st == 200
        assert {g["reason"]: (g["count"], g["hours"], g["share"]) for g in page["groups"]} == {
            k: (g["count"], g["hours"], g["share"]) for k, g in cli.items()}
        html = http(srv.url)[2].decode()
        assert '<th class="num">hours</th><th class="num">% of input</th>' in html
    assert main(["manifests", "stats", run]) == 0
    text = capsys.readouterr().out
    assert "what each filter removed" in text and "% of input" in text
    for g in cli.values():
        assert f"{g['hours']:.4f}" in text and f"{100 * g['share']:.2f}" in text


def test_page_histograms_of_the_measures(run):
    samples = read_rows(manifest_uri(run, "samples"), Sample)
    with running(run) as srv:
        html = http(srv.url)[2].decode()
        for cid in ("hist-dnsmos_ovrl", "hist-dnsmos_sig", "hist-dnsmos_bak", "hist-bandwidth", "hist-loudness"):
            assert f'id="{cid}"' in html
        for field in ("bandwidth_hz", "loudness_lufs"):  # measured by default
            st, h = get_json(srv.url + f"api/hist?field={field}&bins=10")
            vals = [getattr(s, field) for s in samples]
            assert st == 200 and h["n"] == len(samples) and sum(h["counts"]) == len(samples) and h["missing"] == 0
            assert h["edges"][0] == pytest.approx(min(vals)) and h["edges"][-1] == pytest.approx(max(vals))
        st, h = get_json(srv.url + "api/hist?field=dnsmos_ovrl")  # DNSMOS off in that run: no values, all missing
        assert st == 200 and h["n"] == 0 and h["missing"] == len(samples)
        st, page = get_json(srv.url + "api/samples?sort=loudness_lufs&limit=3")
        assert st == 200 and [r["loudness_lufs"] for r in page["rows"]] == sorted(s.loudness_lufs for s in samples)[:3]
