"""The `matalu` command on a real run's output: stats, ls, show, sample; and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Sample
from matalu.cli import main


def test_stats_ls_show(ingested, capsys):
    cfg, res = ingested
    capsys.readouterr()
    assert main(["manifests", "stats", cfg.out, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    assert st["n_samples"] == len(samples)
    assert abs(st["hours"] - sum(s.duration_s for s in samples) / 3600) < 1e-9
    kinds = {r["kind"]: r["samples"] for r in st["by_kind"]}
    assert kinds == {"mono": sum(s.kind == "mono" for s in samples), "dialog": sum(s.kind == "dialog" for s in samples)}
    assert {r["source"] for r in st["by_source"]} == {"synthetic"}
    assert {r["license"] for r in st["by_license"]} == {"CC0-1.0"}

    assert main(["manifests", "stats", cfg.out]) == 0
    text = capsys.readouterr().out
    assert "hours by source" in text and "hours by speaker" in text and "synthetic" in text

    assert main(["manifests", "ls", cfg.out]) == 0
    text = capsys.readouterr().out
    assert text.count(".tar") == st["n_shards"]

    assert main(["manifests", "show", cfg.out, "--where", "kind=dialog", "--json", "--limit", "100"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines and all(x["kind"] == "dialog" for x in lines)
    assert len(lines) == kinds["dialog"]


def test_sample_writes_wav_and_prints_json(ingested, tmp_path, capsys):
    cfg, _ = ingested
    dialog = next(s for s in read_rows(manifest_uri(cfg.out, "samples"), Sample) if s.kind == "dialog")
    out = tmp_path / "d.wav"
    capsys.readouterr()
    assert main(["manifests", "sample", cfg.out, dialog.sample_id, "-o", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["sample_id"] == dialog.sample_id and meta["kind"] == "dialog"
    info = sf.info(out)
    assert info.channels == 2 and info.samplerate == 16000 and abs(info.duration - dialog.duration_s) < 0.001


def test_errors_are_clear(tmp_path):
    r = subprocess.run([sys.executable, "-m", "matalu", "ingest", "--config", str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("vad: {thresh: 0.4}\n")
    r = subprocess.run([sys.executable, "-m", "matalu", "ingest", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown key(s) thresh" in r.stderr
    r = subprocess.run([sys.executable, "-m", "matalu", "ingest", "--source", "nosuch", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown source 'nosuch'" in r.stderr and "synthetic" in r.stderr
    r = subprocess.run([sys.executable, "-m", "matalu", "submit", "ingest"], capture_output=True, text=True)
    assert r.returncode != 0 and "--address" in r.stderr


def test_sources_list(capsys):
    assert main(["sources", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "manifest" in out


def test_the_test_sessions_ray_stays_on_loopback(ray_session):
    """Ray 2.60 would bind a local ray.init() to the machine's interface; the test session keeps it on 127.0.0.1."""
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
