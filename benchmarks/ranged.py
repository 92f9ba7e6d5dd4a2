"""One clip of a shard on S3: whole-shard download (the old page path) vs one ranged GET, bytes and latency.

Starts moto's S3 server on 127.0.0.1, writes one segment shard of ``--mb`` MB (``--samples`` samples of equal
size, random bytes standing in for FLAC: transfer does not depend on the content) with ``storage.ShardWriter``
straight to ``s3://bench/…``, then reads ``--clips`` random samples each way:

* ``whole``: :class:`manifests.overview.ShardReader` (cold): GET the whole shard into its cache, index the tar,
  read the member; what the web page and ``manifests sample`` did for every S3 clip before ``tar_offset``.
* ``ranged``: ``storage.read_sample_at(uri, tar_offset, tar_bytes, key)``: one GetObject with ``Range``
  (boto3, the client storage already uses).
* ``pyarrow``: ``pyarrow.fs.S3FileSystem(...).open_input_file(path).read_at(tar_bytes, tar_offset)`` for the same
  span (a HEAD for the size, then a ranged GET), for comparison.

Bytes are what boto3 received (``ContentLength`` of each GetObject). Usage:
``python benchmarks/ranged.py [--mb 256] [--samples 1000] [--clips 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(k, v)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=256.0)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer
    from pyarrow import fs as pafs

    import storage
    from manifests.overview import ShardReader

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        storage.configure(storage.StorageOptions(endpoint_url=endpoint))
        per = int(a.mb * 1e6 / a.samples)
        rng = random.Random(0)
        blob = rng.randbytes(per)
        uri = "s3://bench/run/segments/src/mono/src-00000-000.tar"
        t0 = time.perf_counter()
        with storage.ShardWriter(lambda i: uri, max_bytes=1 << 40, max_samples=10 ** 9) as w:
            for i in range(a.samples):
                w.write(f"src__rec{i:06d}__m0", {"flac": blob[i % 97:] + blob[:i % 97], "json": b'{"i": %d}' % i})
        shard_bytes = w.shards[0].bytes
        print(f"shard: {shard_bytes / 1e6:.1f} MB, {a.samples} samples of {per / 1e3:.0f} kB "
              f"(written in {time.perf_counter() - t0:.1f} s)")

        got: list[int] = []
        client = storage.uri._s3()
        client.meta.events.register("after-call.s3.GetObject", lambda parsed, **_: got.append(int(parsed["ContentLength"])))
        s3fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                                 endpoint_override=f"127.0.0.1:{port}")
        keys = rng.sample(range(a.samples), a.clips)
        res: dict[str, dict] = {m: {"s": [], "bytes": []} for m in ("whole", "ranged", "pyarrow")}
        for i in keys:
            key = f"src__rec{i:06d}__m0"
            _, off, n = w.location(key)
            want = {"flac": blob[i % 97:] + blob[:i % 97], "json": b'{"i": %d}' % i}

            reader = ShardReader()
            got.clear()
            t = time.perf_counter()
            flac = reader.member(uri, f"{key}.flac")
            res["whole"]["s"].append(time.perf_counter() - t)
            res["whole"]["bytes"].append(sum(got))
            reader.close()
            assert flac == want["flac"]

            got.clear()
            t = time.perf_counter()
            members = storage.read_sample_at(uri, off, n, key)
            res["ranged"]["s"].append(time.perf_counter() - t)
            res["ranged"]["bytes"].append(sum(got))
            assert members == want

            t = time.perf_counter()
            with s3fs.open_input_file("bench/run/segments/src/mono/src-00000-000.tar") as f:
                span = f.read_at(n, off)
            res["pyarrow"]["s"].append(time.perf_counter() - t)
            res["pyarrow"]["bytes"].append(len(span))
            assert dict((e, b) for _, e, b in storage.shard_members(span)) == want

        out = {"shard_bytes": shard_bytes, "samples": a.samples, "clips": a.clips, "sample_bytes": per}
        print(f"{'method':8} {'median ms':>10} {'max ms':>8} {'bytes / clip':>14}")
        for m, r in res.items():
            med, mx = 1e3 * statistics.median(r["s"]), 1e3 * max(r["s"])
            b = statistics.median(r["bytes"])
            print(f"{m:8} {med:10.1f} {mx:8.1f} {b:14,.0f}")
            out[m] = {"median_ms": round(med, 2), "max_ms": round(mx, 2), "bytes": int(b)}
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
