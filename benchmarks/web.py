"""`matalu manifests serve` on a manifest of a million samples: how long does a page of /api/samples take?

Synthesizes ``samples.parquet`` (default 1,000,000 rows: 12 sources, 5,000 speakers, 4 licenses, mono and dialog
kinds with turns, Telugu-like text of 20–200 characters, durations and SNRs) plus small ``shards``/``rejects``
tables, starts the server on 127.0.0.1 (port 0) in a thread, and times HTTP requests end to end (JSON included):
the first page, a deep page (offset 900,000), filters by source / kind / speaker / license, a text search, a
sort, and the summary/histogram endpoints (computed once, then cached). Each request runs ``--repeat`` times
with a different offset so the count cache does not hide the page query; the first call of each filter pays for
its ``count(*)``.

Usage: python benchmarks/web.py [--rows 1000000] [--repeat 5] [--keep DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYLLABLES = ["క", "గా", "తె", "లు", "గు", "మా", "ట", "లో", "ని", "రా", "జు", "వా", "న", "పా", "ట", "ఇ", "ది", "ఒ", "క", "టి"]


def synthesize(out: str | Path, rows: int = 1_000_000, seed: int = 0, batch: int = 200_000) -> Path:
    """Write ``<out>/manifests/{samples,shards,rejects}.parquet`` with ``rows`` synthetic samples; return ``out``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from manifests.rows import Reject, Sample, Shard

    out = Path(out)
    man = out / "manifests"
    man.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [f"src{i:02d}" for i in range(12)]
    licenses = ["CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0"]
    words = np.array(["".join(rng.choice(SYLLABLES, rng.integers(2, 6))) for _ in range(4000)], dtype=object)
    per_shard = 1000
    writer = pq.ParquetWriter(man / "samples.parquet", Sample.SCHEMA, compression="zstd")
    try:
        for b0 in range(0, rows, batch):
            n = min(batch, rows - b0)
            idx = np.arange(b0, b0 + n)
            src = np.array(sources, dtype=object)[rng.integers(0, len(sources), n)]
            dialog = rng.random(n) < 0.2
            dur = np.where(dialog, rng.uniform(5, 60, n), rng.gamma(2.0, 3.0, n) + 0.5).round(3)
            spk = rng.integers(0, 5000, (n, 2))
            nw = rng.integers(3, 30, n)
            text = [" ".join(words[rng.integers(0, len(words), k)]) for k in nw]
            speakers, turns = [], []
            for i in range(n):
                a, b = f"spk{spk[i, 0]:04d}", f"spk{spk[i, 1]:04d}"
                d = float(dur[i])
                if dialog[i]:
                    speakers.append([a, b])
                    turns.append([{"role": "user", "speaker": b, "start_s": 0.25, "end_s": d * 0.4, "text": text[i][:40]},
                                  {"role": "system", "speaker": a, "start_s": d * 0.45, "end_s": d - 0.25, "text": text[i][40:]}])
                else:
                    speakers.append([a])
                    turns.append([{"role": "", "speaker": a, "start_s": 0.0, "end_s": d, "text": text[i]}])
            cols = {
                "sample_id": [f"{s}__rec{j // 7:07d}__m-{j:08d}" for s, j in zip(src, idx)],
                "kind": np.where(dialog, "dialog", "mono").astype(object),
                "shard": [f"/data/out/segments/{s}/mono/{s}-{j // per_shard:05d}-000.tar" for s, j in zip(src, idx)],
                "source": src,
                "recording_id": [f"rec{j // 7:07d}" for j in idx],
                "start_s": np.zeros(n),
                "end_s": dur,
                "duration_s": dur,
                "channels": np.where(dialog, 2, 1).astype(np.int32),
                "sample_rate": np.full(n, 16000, np.int32),
                "speakers": speakers,
                "turns": turns,
                "text": text,
                "license": np.array(licenses, dtype=object)[rng.integers(0, len(licenses), n)],
                "sha256": [f"{j:064x}" for j in idx],
                "snr_db": rng.normal(30, 8, n).round(2),
                "speech_ratio": rng.uniform(0.3, 1.0, n).round(4),
                "clipping": np.zeros(n),
                "codec_id": np.full(n, "", dtype=object),
                "split": np.where(rng.random(n) < 0.95, "train", "test").astype(object),
                "tar_offset": (idx % per_shard) * 200_000,
                "tar_bytes": np.full(n, 200_000),
                "dnsmos_sig": rng.normal(3.3, 0.4, n).clip(1, 5).round(3),
                "dnsmos_bak": rng.normal(3.8, 0.5, n).clip(1, 5).round(3),
                "dnsmos_ovrl": rng.normal(3.0, 0.4, n).clip(1, 5).round(3),
                "bandwidth_hz": np.where(rng.random(n) < 0.1, 3968.8, 7750.0),
                "loudness_lufs": rng.normal(-24, 5, n).round(2),
                "loudness_normalized_to": pa.nulls(n, pa.float64()),
                "loudness_gain_db": pa.nulls(n, pa.float64()),
                "language": np.full(n, "te", dtype=object),
                "lid_score": rng.uniform(0.9, 1.0, n).round(4),
            }
            writer.write_table(pa.table(cols, schema=Sample.SCHEMA))
    finally:
        writer.close()
    n_shards = max(1, rows // per_shard)
    shards = [Shard(uri=f"/data/out/segments/src/{i:05d}.tar", kind="segments", sample_kind="mono", source="src00",
                    unit=f"u{i}", n_samples=per_shard, seconds=per_shard * 6.0, bytes=per_shard * 200_000,
                    sha256=f"{i:064x}").to_dict() for i in range(n_shards)]
    pq.write_table(pa.Table.from_pylist(shards, schema=Shard.SCHEMA), man / "shards.parquet")
    rej = [Reject(item=f"rec{i:07d}", stage="filters", reason=["too_short", "low_snr", "clipping"][i % 3],
                  detail="synthetic", source="src00", recording_id=f"rec{i:07d}", seconds=1.0).to_dict()
           for i in range(rows // 100)]
    pq.write_table(pa.Table.from_pylist(rej, schema=Reject.SCHEMA), man / "rejects.parquet")
    return out


def _get(url: str) -> tuple[float, dict]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    dt = time.perf_counter() - t
    return dt, json.loads(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="synthesize into (or reuse) this directory instead of a temp dir")
    ap.add_argument("--json", help="write the timings here")
    args = ap.parse_args(argv)

    from manifests.web import ManifestServer

    tmp = None
    if args.keep:
        out = Path(args.keep)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="matalu-bench-web-")
        out = Path(tmp.name)
    samples = out / "manifests" / "samples.parquet"
    if not samples.exists():
        t = time.perf_counter()
        synthesize(out, args.rows)
        print(f"synthesized {args.rows:,} samples in {time.perf_counter() - t:.1f} s "
              f"({samples.stat().st_size / 1e6:.0f} MB parquet)")
    t = time.perf_counter()
    srv = ManifestServer(str(out), port=0).start()
    print(f"server up in {time.perf_counter() - t:.2f} s at {srv.url}")
    base = srv.url.rstrip("/")
    dt, _ = _get(base + "/api/samples?limit=50&offset=0")
    print(f"first page while the sample table loads (served from the Parquet file): {dt * 1000:.0f} ms")
    srv.db.wait_ready()
    print(f"page columns materialized {time.perf_counter() - t:.1f} s after start"
          + (f" (failed: {srv.db.load_error})" if srv.db.load_error else ""))
    srv.db.wait_ready(full=True)
    print(f"turns/sha256 materialized {time.perf_counter() - t:.1f} s after start")
    cases = [
        ("first page", "/api/samples?limit=50&offset={o}", lambda r: 50 * r),
        ("deep page (offset 900k)", "/api/samples?limit=50&offset={o}", lambda r: min(900_000, args.rows - 50) + 50 * r),
        ("filter source", "/api/samples?source=src03&limit=50&offset={o}", lambda r: 50 * r),
        ("filter kind=dialog", "/api/samples?kind=dialog&limit=50&offset={o}", lambda r: 50 * r),
        ("filter speaker", "/api/samples?speaker=spk0042&limit=50&offset={o}", lambda r: 0),
        ("filter license + kind", "/api/samples?license=CC0-1.0&kind=mono&limit=50&offset={o}", lambda r: 5000 + 50 * r),
        ("text search", "/api/samples?q=%E0%B0%97%E0%B0%BE%E0%B0%A4%E0%B1%86&limit=50&offset={o}", lambda r: 50 * r),
        ("sort longest", "/api/samples?sort=-duration_s&limit=50&offset={o}", lambda r: 50 * r),
        ("one sample (full row)", "/api/sample/{o}", lambda r: ids[r % len(ids)]),
        ("summary (first, then cached)", "/api/summary", lambda r: 0),
        ("histogram duration", "/api/hist?field=duration_s", lambda r: 0),
        ("rejects", "/api/rejects", lambda r: 0),
    ]
    _, mid = _get(base + f"/api/samples?limit=50&offset={args.rows // 2}")
    ids = [r["sample_id"] for r in mid["rows"]] or ["none"]
    results = []
    print(f"\n{'request':32s} {'first ms':>9s} {'median ms':>10s} {'max ms':>8s}  rows/total")
    try:
        for name, path, off in cases:
            times, last = [], {}
            for r in range(args.repeat):
                try:
                    dt, last = _get(base + path.format(o=off(r)))
                except urllib.error.HTTPError as e:  # e.g. the guessed sample id is another source's
                    dt, last = 0.0, {"error": e.code}
                times.append(dt * 1000)
            info = f"{len(last.get('rows', []))}/{last['total']}" if "total" in last and "rows" in last else ""
            rest = times[1:] or times
            print(f"{name:32s} {times[0]:9.1f} {statistics.median(rest):10.1f} {max(rest):8.1f}  {info}")
            results.append({"request": name, "path": path, "first_ms": times[0], "median_ms": statistics.median(rest),
                            "max_ms": max(rest), "all_ms": times})
    finally:
        srv.close()
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
