"""`matalu manifests serve`: JSON endpoints, audio, pagination at scale, S3, and the page in headless Chromium."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import soundfile as sf
from manifests_web_helpers import (
    CODEBOOK_SIZE,
    CODEC,
    N_CODEBOOKS,
    enriched_copy,
    fake_encode,
    get_json,
    http,
    running,
)

import storage
from manifests import overview
from manifests.io import manifest_uri, read_table, table_bytes
from manifests.overview import ManifestDB, SampleQuery
from manifests.rows import Sample, Shard

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(overview.__file__).resolve().parents[1]  # the repo root


@pytest.fixture(scope="module")
def enriched(ingested, tmp_path_factory):
    cfg, _ = ingested
    return enriched_copy(cfg.out, tmp_path_factory.mktemp("web") / "run")


def _samples(out: str) -> list[dict]:
    return read_table(manifest_uri(out, "samples"), Sample).to_pylist()


def test_summary_hist_shards_filters(ingested):
    cfg, _ = ingested
    samples = _samples(cfg.out)
    shards = read_table(manifest_uri(cfg.out, "shards"), Shard).to_pylist()
    with running(cfg.out) as srv:
        base = srv.url.rstrip("/")
        st, s = get_json(base + "/api/summary")
        assert st == 200
        assert s["n_samples"] == len(samples)
        assert abs(s["hours"] - sum(x["duration_s"] for x in samples) / 3600) < 1e-9
        kinds = {r["kind"]: r["samples"] for r in s["by_kind"]}
        assert kinds == {k: sum(x["kind"] == k for x in samples) for k in ("mono", "dialog")}
        assert [r["source"] for r in s["by_source"]] == ["synthetic"]
        assert [r["license"] for r in s["by_license"]] == ["CC0-1.0"]
        assert abs(sum(r["hours"] for r in s["by_license"]) - s["hours"]) < 1e-9
        spk = {r["speaker"]: r for r in s["by_speaker"]}
        for name, row in spk.items():  # a sample counts for each of its speakers
            mine = [x for x in samples if name in x["speakers"]]
            assert row["samples"] == len(mine) and abs(row["hours"] - sum(x["duration_s"] for x in mine) / 3600) < 1e-9
        assert s["n_shards"] == len(shards) and s["shard_bytes"] == sum(x["bytes"] for x in shards)
        assert s["n_rejects"] == 0 and s["n_recordings"] == 6

        for field in ("duration_s", "snr_db"):
            st, h = get_json(base + f"/api/hist?field={field}&bins=12")
            vals = np.array([x[field] for x in samples])
            assert st == 200 and len(h["counts"]) == 12 and len(h["edges"]) == 13 and sum(h["counts"]) == len(samples)
            assert h["edges"][0] == pytest.approx(vals.min()) and h["edges"][-1] == pytest.approx(vals.max())
            ref, _ = np.histogram(vals, bins=np.array(h["edges"]))
            assert abs(ref - np.array(h["counts"])).sum() <= 2  # bin-edge rounding only
        assert get_json(base + "/api/hist?field=text")[0] == 400

        st, sh = get_json(base + "/api/shards")
        assert st == 200 and sh["total"] == len(shards)
        got = {r["uri"]: r for r in sh["rows"]}
        for x in shards:
            assert got[x["uri"]]["sha256"] == x["sha256"] and got[x["uri"]]["bytes"] == x["bytes"]
            assert got[x["uri"]]["n_samples"] == x["n_samples"]
        assert sum(r["n_samples"] for r in sh["rows"]) == len(samples)

        st, f = get_json(base + "/api/filters")
        assert f["source"] == ["synthetic"] and set(f["kind"]) == {"mono", "dialog"} and f["license"] == ["CC0-1.0"]
        st, rj = get_json(base + "/api/rejects")
        assert st == 200 and rj == {"total": 0, "groups": []}
        st, tk = get_json(base + "/api/tokens")
        assert st == 200 and tk["available"] is False  # no tokens manifest: tolerated
        assert http(base + "/nope")[0] == 404
        status, headers, body = http(base + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        html = body.decode()
        for el in ('id="chart-source"', 'id="chart-speaker"', 'id="chart-license"', 'id="chart-kind"',
                   'id="hist-duration"', 'id="hist-snr"', 'id="samples-table"', 'id="timeline"', 'id="player"'):
            assert el in html
        # everything inline: no external scripts, styles, fonts or images
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
        assert "@import" not in html and "url(" not in html


def test_sample_pages_filters_and_search(ingested):
    cfg, _ = ingested
    samples = _samples(cfg.out)
    with running(cfg.out) as srv:
        base = srv.url.rstrip("/")
        seen = []
        for off in range(0, len(samples) + 5, 5):
            st, page = get_json(base + f"/api/samples?limit=5&offset={off}")
            assert st == 200 and page["total"] == len(samples) and page["offset"] == off
            seen += [r["sample_id"] for r in page["rows"]]
        assert seen == [s["sample_id"] for s in samples]  # manifest order, every sample once

        st, page = get_json(base + "/api/samples?kind=dialog&limit=100")
        assert page["total"] == sum(s["kind"] == "dialog" for s in samples)
        assert all(r["kind"] == "dialog" and r["channels"] == 2 for r in page["rows"])
        spk = samples[0]["speakers"][0]
        st, page = get_json(base + f"/api/samples?speaker={spk}&limit=100")
        assert page["total"] == sum(spk in s["speakers"] for s in samples)
        word = max(samples[0]["text"].split(), key=len)
        st, page = get_json(base + "/api/samples?" + urllib.parse.urlencode({"q": word, "limit": 100}))
        want = [s["sample_id"] for s in samples if word in s["text"]]
        assert want and [r["sample_id"] for r in page["rows"]] == want and page["total"] == len(want)
        st, page = get_json(base + "/api/samples?q=NO_SUCH_TEXT_%25_")
        assert page["total"] == 0 and page["rows"] == []
        st, page = get_json(base + "/api/samples?license=CC0-1.0&source=synthetic&kind=mono&limit=3")
        assert page["total"] == sum(s["kind"] == "mono" for s in samples) and len(page["rows"]) == 3
        st, page = get_json(base + "/api/samples?sort=-duration_s&limit=100")
        durs = [r["duration_s"] for r in page["rows"]]
        assert durs == sorted(durs, reverse=True)
        assert get_json(base + "/api/samples?sort=evil;drop")[0] == 400
        assert get_json(base + "/api/samples?limit=x")[0] == 400

        dialog = next(s for s in samples if s["kind"] == "dialog")
        st, row = get_json(base + f"/api/sample/{dialog['sample_id']}")
        assert st == 200 and row["turns"] == dialog["turns"] and row["speakers"] == dialog["speakers"]
        assert get_json(base + "/api/sample/no-such-sample")[0] == 404


def test_audio_endpoint_dialog_is_stereo(ingested):
    cfg, _ = ingested
    samples = _samples(cfg.out)
    dialog = next(s for s in samples if s["kind"] == "dialog")
    mono = next(s for s in samples if s["kind"] == "mono")
    flac = dict(storage.iter_shard(dialog["shard"]))[dialog["sample_id"]]["flac"]
    ref, _ = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
    with running(cfg.out) as srv:
        base = srv.url.rstrip("/")
        status, headers, wav = http(base + f"/api/audio/{dialog['sample_id']}.wav")
        assert status == 200 and headers["Content-Type"] == "audio/wav" and wav[:4] == b"RIFF"
        info = sf.info(io.BytesIO(wav))
        assert info.channels == 2 and info.samplerate == 16000
        assert abs(info.duration - dialog["duration_s"]) < 0.002
        got, _ = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
        assert np.array_equal(got, ref)  # bit-exact: FLAC is 16-bit PCM, so is the WAV
        assert np.abs(got[:, 0].astype(int) - got[:, 1]).max() > 0  # two different channels, not a duplicate
        status, headers, part = http(base + f"/api/audio/{dialog['sample_id']}.wav", {"Range": "bytes=100-199"})
        assert status == 206 and part == wav[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(wav)}"
        status, headers, part = http(base + f"/api/audio/{dialog['sample_id']}.wav", {"Range": "bytes=-10"})
        assert status == 206 and part == wav[-10:]
        assert http(base + f"/api/audio/{dialog['sample_id']}.wav", {"Range": f"bytes={len(wav)}-"})[0] == 416
        status, headers, body = http(base + f"/api/audio/{dialog['sample_id']}.wav", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(wav)
        status, _, wav = http(base + f"/api/audio/{mono['sample_id']}.wav")
        info = sf.info(io.BytesIO(wav))
        assert status == 200 and info.channels == 1 and abs(info.duration - mono["duration_s"]) < 0.002
        assert http(base + "/api/audio/no-such-sample.wav")[0] == 404


def test_rejects_tokens_and_moved_shards(enriched):
    out = enriched["out"]
    with running(out) as srv:
        base = srv.url.rstrip("/")
        st, rj = get_json(base + "/api/rejects")
        assert st == 200 and rj["total"] == 5
        groups = {g["reason"]: g for g in rj["groups"]}
        assert {k: g["count"] for k, g in groups.items()} == enriched["rejects"]
        assert [e["item"] for e in groups["too_short"]["examples"]] == ["syn-x-000", "syn-x-001", "syn-x-002"]
        assert groups["low_snr"]["seconds"] == pytest.approx(3.5 + 4.5)
        assert all(e["detail"] for g in rj["groups"] for e in g["examples"])

        st, tk = get_json(base + "/api/tokens")
        assert st == 200 and tk["available"] and [c["codec_id"] for c in tk["codecs"]] == [CODEC]
        c = tk["codecs"][0]
        assert c["shards"] == 1 and c["samples"] == enriched["token_samples"] and c["frames"] == enriched["frames"]
        assert c["n_codebooks"] == N_CODEBOOKS and c["codebook_size"] == CODEBOOK_SIZE
        assert c["scanned_samples"] == enriched["token_samples"] and c["scanned_frames"] == enriched["frames"]
        assert [u["distinct"] for u in c["usage"]] == [16, 32, 48, 64]
        assert [u["usage"] for u in c["usage"]] == pytest.approx([0.25, 0.5, 0.75, 1.0])
        # shard rows with kind=tokens are not counted as segment shards
        st, s = get_json(base + "/api/summary")
        assert s["n_shards"] == 4

        # the manifest's shard paths no longer exist (the run was moved): audio is found under the run dir
        smp = next(x for x in enriched["samples"] if x["kind"] == "dialog")
        assert not Path(smp["shard"]).exists()
        status, _, wav = http(base + f"/api/audio/{smp['sample_id']}.wav")
        assert status == 200 and sf.info(io.BytesIO(wav)).channels == 2
        st, f = get_json(base + "/api/filters")
        assert set(f["license"]) == {"CC-BY-4.0", "CC-BY-NC-4.0", "(none)", "CC0-1.0"}
        st, page = get_json(base + "/api/samples?license=(none)&limit=100")
        assert page["total"] == sum(1 for x in enriched["samples"] if not x["license"])


def test_tokens_from_encode_output(ingested, tmp_path):
    """Token manifests where `matalu encode --out <run>` puts them: <run>/tokens/<codec>/manifests/."""
    cfg, _ = ingested
    run = tmp_path / "run"
    shutil.copytree(cfg.out, run, ignore=shutil.ignore_patterns("parts"))
    enc = fake_encode(str(run))
    with running(str(run)) as srv:
        st, tk = get_json(srv.url + "api/tokens")
        assert st == 200 and tk["available"] and [c["codec_id"] for c in tk["codecs"]] == [enc["codec_id"]]
        c = tk["codecs"][0]
        assert (c["shards"], c["samples"], c["bytes"]) == (enc["shards"], enc["samples"], enc["bytes"])
        assert c["n_codebooks"] == 4 and c["codebook_size"] == 64 and c["frame_rate"] == 12.5
        assert c["frames"] == enc["frames"] and c["frames_exact"]
        assert [u["distinct"] for u in c["usage"]] == enc["distinct"]
    # the token root itself: its samples are listed, and their audio comes from the segment shard they name
    with running(enc["root"]) as srv:
        st, page = get_json(srv.url + "api/samples?kind=dialog")
        assert page["total"] == sum(1 for s in _samples(cfg.out) if s["kind"] == "dialog")
        sid = page["rows"][0]["sample_id"]
        status, _, wav = http(srv.url + f"api/audio/{sid}.wav")
        assert status == 200 and sf.info(io.BytesIO(wav)).channels == 2
        st, tk = get_json(srv.url + "api/tokens")
        assert tk["codecs"][0]["samples"] == enc["samples"] and tk["codecs"][0]["frames"] == enc["frames"]


def _bench_module():
    spec = importlib.util.spec_from_file_location("matalu_bench_web", ROOT / "benchmarks" / "web.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_large_manifest_pages_view_and_table_agree(tmp_path, monkeypatch):
    """20k synthetic rows (benchmarks/web.py makes 1M the same way): pages, filters and counts agree with pyarrow,
    whether served from the Parquet view or the materialized table; text-search counts stop at the cap."""
    n = 20_000
    out = _bench_module().synthesize(tmp_path / "big", rows=n)
    t = read_table(manifest_uri(str(out), "samples"), Sample)
    ids = t.column("sample_id").to_pylist()
    src3 = pc.sum(pc.equal(t.column("source"), "src03")).as_py()
    spk_counts = {}
    for sp in t.column("speakers").to_pylist():
        for x in sp:
            spk_counts[x] = spk_counts.get(x, 0) + 1
    spk = max(spk_counts, key=spk_counts.get)
    order = np.argsort(-np.array(t.column("duration_s").to_pylist()), kind="stable")
    for mode in ("never", "now"):
        db = ManifestDB(str(out), materialize=mode)
        try:
            assert db.materialized == (mode == "now") and db.extra_ready.is_set() == (mode == "now")
            p = db.samples(SampleQuery(limit=50, offset=n - 30))
            assert p["total"] == n and [r["sample_id"] for r in p["rows"]] == ids[n - 30:]
            p = db.samples(SampleQuery(source="src03", limit=10))
            assert p["total"] == src3 and all(r["source"] == "src03" for r in p["rows"])
            p = db.samples(SampleQuery(speaker=spk, limit=500))
            assert p["total"] == spk_counts[spk] and all(spk in r["speakers"] for r in p["rows"])
            p = db.samples(SampleQuery(sort="-duration_s", limit=20))
            assert [r["duration_s"] for r in p["rows"]] == [t.column("duration_s")[int(i)].as_py() for i in order[:20]]
            full = db.sample(ids[12_345])
            assert full["turns"] == t.column("turns")[12_345].as_py() and full["sha256"] == t.column("sha256")[12_345].as_py()
            assert list(full)[: len(Sample.SCHEMA)] == Sample.SCHEMA.names
            monkeypatch.setattr(overview, "COUNT_CAP", 100)
            db._counts.clear()
            p = db.samples(SampleQuery(q="src", limit=50))  # every sample id contains "src"
            assert p["total"] == 100 and p["total_capped"] is True
            p = db.samples(SampleQuery(q="src", limit=50, offset=100))
            assert p["total"] == 151 and len(p["rows"]) == 50  # paging past the cap keeps going
            monkeypatch.undo()
        finally:
            db.close()


def test_serve_from_s3(ingested, s3_server, tmp_path):
    import boto3

    cfg, _ = ingested
    bucket, prefix = "matalu-web", "runs/r1"
    s3 = f"s3://{bucket}/{prefix}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    old = storage.current_options()
    storage.configure(storage.StorageOptions(endpoint_url=s3_server))
    try:
        for tar in storage.list_files(storage.join(cfg.out, "segments"), ".tar"):
            storage.put_file(shutil.copy(tar, tmp_path / "x.tar"), s3 + tar[len(cfg.out):])
        samples = _samples(cfg.out)
        for s in samples:
            s["shard"] = s["shard"].replace(cfg.out, s3)
        storage.write_bytes(manifest_uri(s3, "samples"), table_bytes(pa.Table.from_pylist(samples, schema=Sample.SCHEMA)))
        for name in ("shards", "recordings", "runs"):
            storage.write_bytes(manifest_uri(s3, name), storage.read_bytes(manifest_uri(cfg.out, name)))
        # no rejects.parquet on S3: tolerated
        with running(s3) as srv:
            base = srv.url.rstrip("/")
            st, s = get_json(base + "/api/summary")
            assert st == 200 and s["n_samples"] == len(samples) and s["n_rejects"] == 0 and s["uri"] == s3
            dialog = next(x for x in samples if x["kind"] == "dialog")
            status, _, wav = http(base + f"/api/audio/{dialog['sample_id']}.wav")
            assert status == 200 and sf.info(io.BytesIO(wav)).channels == 2
            st, page = get_json(base + "/api/samples?kind=dialog")
            assert page["total"] == sum(x["kind"] == "dialog" for x in samples)
    finally:
        storage.configure(old)


def _chromium(url: str, tmp: Path, screenshot: bool) -> str:
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'chrome-profile'}", "--window-size=1280,2000", "--virtual-time-budget=5000",
            "--dump-dom"]
    if screenshot:
        args.append(f"--screenshot={tmp / 'page.png'}")
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_page_in_headless_chromium(enriched, tmp_path):
    out = enriched["out"]
    samples = enriched["samples"]
    dialog = next(s for s in samples if s["kind"] == "dialog")
    with running(out) as srv:
        dom = _chromium(f"{srv.url}#sample={dialog['sample_id']}", tmp_path, screenshot=True)
        png = tmp_path / "page.png"
        if not png.exists():  # older builds do one of --dump-dom / --screenshot per run
            _chromium(srv.url, tmp_path, screenshot=True)
    assert 'data-ready="1"' in dom, dom[:3000]
    # the hour charts are drawn (one bar per group), with ids
    for chart, n in (("chart-source", 1), ("chart-kind", 2), ("chart-license", 4), ("chart-speaker", 2)):
        m = re.search(rf'<svg[^>]*id="{chart}"[^>]*>(.*?)</svg>', dom, re.DOTALL)
        assert m and m.group(1).count('class="bar"') == n, chart
    for canvas in ("hist-duration", "hist-snr"):
        assert re.search(rf'<canvas[^>]*id="{canvas}"[^>]*data-drawn="30"', dom), canvas
    rows = re.findall(r'<tr class="sample-row[^"]*" data-id="([^"]+)"', dom)
    assert rows == [s["sample_id"] for s in samples][:50]
    assert len(re.findall(r'class="shard-row"', dom)) == 5
    assert len(re.findall(r'class="reject-row"', dom)) == 2 and "too_short" in dom
    assert re.search(r'id="tokens"[^>]*data-codecs="1"', dom) and 'id="tokens-usage-0"' in dom
    # the dialog opened from the URL: its turns on the timeline, both channels
    assert re.search(rf'<svg[^>]*id="timeline"[^>]*data-turns="{len(dialog["turns"])}"', dom)
    assert dom.count('class="turn role-system"') == sum(t["role"] == "system" for t in dialog["turns"])
    assert dom.count('class="turn role-user"') == sum(t["role"] == "user" for t in dialog["turns"])
    assert f'src="/api/audio/{dialog["sample_id"]}.wav"' in dom
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_subcommands(ingested, tmp_path, capsys):
    import argparse

    from matalu.commands import manifests_web

    p = argparse.ArgumentParser()
    ms = p.add_subparsers(dest="mcmd", required=True)
    ms.add_parser("ls").add_argument("uri")
    manifests_web.add_subcommands(ms)
    cfg, _ = ingested
    assert manifests_web.run(p.parse_args(["ls", cfg.out])) is None  # not ours
    a = p.parse_args(["serve", cfg.out, "--port", "0"])
    assert (a.host, a.port) == ("127.0.0.1", 0)
    out = tmp_path / "r.html"
    assert manifests_web.run(p.parse_args(["report", cfg.out, "-o", str(out)])) == 0
    assert out.read_text().startswith("<!doctype html>")
    capsys.readouterr()
    assert manifests_web.run(p.parse_args(["licenses", cfg.out, "--json"])) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total"]["samples"] == len(_samples(cfg.out))
