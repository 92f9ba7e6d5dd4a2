"""Helpers shared by the manifests web/report/licence/export tests (not a test module).

:func:`enriched_copy` copies a real ingestion output and adds what the six synthetic dialogs do not have: rejects
with reasons, a token shard with a tokens manifest, several licences, and shard paths in the manifests that no longer
exist (as if the run had been moved), so readers must find the shards under the run's directory.
"""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

import storage
from manifests.io import manifest_uri, read_table, table_bytes
from manifests.rows import Reject, Sample, Shard

CODEC = "testcodec"
N_CODEBOOKS = 4
CODEBOOK_SIZE = 64
FRAME_RATE = 12.5
OLD_ROOT = "/gone/old-run"
LICENSES = ["CC-BY-4.0", "CC-BY-NC-4.0", "", "CC0-1.0"]


def http(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str):
    status, _, body = http(url)
    return status, json.loads(body)


@contextmanager
def running(uri: str, **kw):
    from manifests.web import ManifestServer

    srv = ManifestServer(uri, host="127.0.0.1", port=0, **kw).start()
    try:
        yield srv
    finally:
        srv.close()


def enriched_copy(src_out: str, dst: Path, *, licenses: bool = True) -> dict:
    """Copy ``src_out`` to ``dst`` and add rejects, a token shard + tokens.parquet, mixed licences and moved
    shard paths. Returns what the tests expect to see."""
    src_out = str(src_out)
    shutil.copytree(src_out, dst, ignore=shutil.ignore_patterns("parts"))
    out = str(dst)
    samples = read_table(manifest_uri(out, "samples"), Sample).to_pylist()
    shards = read_table(manifest_uri(out, "shards"), Shard).to_pylist()
    for i, s in enumerate(samples):
        s["shard"] = s["shard"].replace(src_out, OLD_ROOT)
        if licenses:
            s["license"] = LICENSES[i % len(LICENSES)]
    for s in shards:
        s["uri"] = s["uri"].replace(src_out, OLD_ROOT)

    # token shard: all dialogs and the first four mono samples; codebook k uses 16 * (k + 1) of its 64 codes
    chosen = [s for s in samples if s["kind"] == "dialog"] + [s for s in samples if s["kind"] == "mono"][:4]
    tok_uri = storage.join(out, "tokens", CODEC, "synthetic-00000-000.tar")
    tok_rows = []
    frames_total = 0
    with storage.ShardWriter(lambda i: tok_uri, max_samples=10_000) as w:
        for s in chosen:
            t = max(1, int(round(s["duration_s"] * FRAME_RATE)))
            codes = np.zeros((s["channels"] * N_CODEBOOKS, t), np.int16)
            for c in range(s["channels"]):
                for k in range(N_CODEBOOKS):
                    m = 16 * (k + 1)
                    codes[c * N_CODEBOOKS + k] = (np.arange(t) * 7 + k + c) % m
            buf = io.BytesIO()
            np.save(buf, codes, allow_pickle=False)
            meta = {"sample_id": s["sample_id"], "channels": s["channels"], "n_codebooks": N_CODEBOOKS,
                    "codebook_size": CODEBOOK_SIZE, "codec_id": CODEC, "frames": t}
            w.write(s["sample_id"], {"codes.npy": buf.getvalue(), "json": json.dumps(meta).encode()})
            tok_rows.append({"sample_id": s["sample_id"], "codec_id": CODEC, "shard": tok_uri, "frames": t,
                             "n_codebooks": N_CODEBOOKS, "codebook_size": CODEBOOK_SIZE, "duration_s": s["duration_s"]})
            frames_total += t
    info = w.shards[0]
    shards.append(Shard(uri=info.uri, kind="tokens", sample_kind="mixed", source="synthetic", unit="synthetic-00000",
                        n_samples=info.n_samples, seconds=sum(s["duration_s"] for s in chosen), bytes=info.bytes,
                        sha256=info.sha256, codec_id=CODEC).to_dict())
    rejects = [Reject(item=f"syn-x-{i:03d}", stage="filters", reason=r, detail=f"{r} example {i}", source="synthetic",
                      recording_id=f"syn-x-{i:03d}", seconds=0.5 + i).to_dict()
               for i, r in enumerate(["too_short", "too_short", "too_short", "low_snr", "low_snr"])]
    storage.write_bytes(manifest_uri(out, "samples"), table_bytes(pa.Table.from_pylist(samples, schema=Sample.SCHEMA)))
    storage.write_bytes(manifest_uri(out, "shards"), table_bytes(pa.Table.from_pylist(shards, schema=Shard.SCHEMA)))
    storage.write_bytes(manifest_uri(out, "rejects"), table_bytes(pa.Table.from_pylist(rejects, schema=Reject.SCHEMA)))
    storage.write_bytes(manifest_uri(out, "tokens"), table_bytes(pa.Table.from_pylist(tok_rows)))
    return {"out": out, "samples": samples, "token_samples": len(chosen), "frames": frames_total,
            "rejects": {"too_short": 3, "low_snr": 2}, "token_shard": tok_uri}



def fake_encode(out: str, codec_id: str = "enc16", frame_rate: float = 12.5, q: int = 4, k: int = 64) -> dict:
    """What ``matalu encode --out <run>`` writes (pipelines/encode.py), without a codec: one token shard per
    segment shard under ``<run>/tokens/<codec_id>/<source>/<kind>/``, token JSON = segment JSON + codec fields
    (``frames``, ``frame_rate``, ``num_codebooks``, ``codebook_size``, ``segment_shard``), and
    ``<run>/tokens/<codec_id>/manifests/{samples,shards}.parquet``. Codebook j uses ``k // (j + 1)`` codes."""
    import math

    root = storage.join(out, "tokens", codec_id)
    seg_shards = read_table(manifest_uri(out, "shards"), Shard).to_pylist()
    rows, shard_rows, frames_total = [], [], 0
    for sh in seg_shards:
        rel = sh["uri"].split("/segments/", 1)[1]
        uri = storage.join(root, rel)
        items = list(storage.iter_shard(sh["uri"]))
        with storage.ShardWriter(lambda i, uri=uri: uri, max_samples=10_000) as w:
            for key, m in items:
                meta = json.loads(m["json"])
                t = math.ceil(round(meta["duration_s"] * frame_rate, 6))
                codes = np.stack([(np.arange(t) * 5 + j) % (k // (j + 1))
                                  for _ in range(meta["channels"]) for j in range(q)]).astype(np.int16)
                buf = io.BytesIO()
                np.save(buf, codes, allow_pickle=False)
                meta.update({"codec_id": codec_id, "frames": t, "frame_rate": frame_rate, "num_codebooks": q,
                             "codebook_size": k, "codes_shape": list(codes.shape), "segment_shard": sh["uri"]})
                w.write(key, {"codes.npy": buf.getvalue(), "json": json.dumps(meta, sort_keys=True).encode()})
                rows.append(Sample.from_dict({**meta, "shard": uri}).to_dict())
                frames_total += t
        info = w.shards[0]
        shard_rows.append(Shard(uri=info.uri, kind="tokens", sample_kind=sh["sample_kind"], source=sh["source"],
                                unit=sh["unit"], n_samples=info.n_samples, seconds=sh["seconds"], bytes=info.bytes,
                                sha256=info.sha256, codec_id=codec_id).to_dict())
    storage.write_bytes(manifest_uri(root, "samples"), table_bytes(pa.Table.from_pylist(rows, schema=Sample.SCHEMA)))
    storage.write_bytes(manifest_uri(root, "shards"), table_bytes(pa.Table.from_pylist(shard_rows, schema=Shard.SCHEMA)))
    return {"root": root, "codec_id": codec_id, "samples": len(rows), "shards": len(shard_rows), "frames": frames_total,
            "distinct": [k // (j + 1) for j in range(q)], "bytes": sum(s["bytes"] for s in shard_rows)}
