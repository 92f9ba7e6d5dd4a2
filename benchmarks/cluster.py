"""Cluster figures on a simulated Ray cluster (``ray.cluster_utils.Cluster``, all nodes on this machine).

* ingest wall time over the same 24 synthetic dialogs (24 units of 1 recording) on 1, 2 and 3 worker nodes of 1 CPU;
* one worker node removed mid-ingest: units redone and the wall-time overhead against an unfaulted run;
* S3 (moto's server behind tests/faultproxy.py): bytes re-sent when uploads of a 64 MiB object are interrupted
  (connection reset mid-request), as multipart (the default 16 MiB parts) and as one PUT.

Each measurement runs ``python -m tests.cluster.scenario`` in its own process (a fresh cluster each time).
Usage: python benchmarks/cluster.py [--nodes 1,2,3] [--node-loss] [--s3] [--json OUT]
Note: every simulated node shares this machine's cores, so the scaling ratio is bounded by the cores it has.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def scenario(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "tests.cluster.scenario", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"scenario {args} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def s3_reupload(size: int = 64 << 20, seed: int = 5) -> dict:
    """Upload ``size`` bytes through a proxy that resets a quarter of the upload requests once each."""
    import boto3
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(ROOT))
    import storage
    import storage.uri as U
    from tests.conftest import free_port
    from tests.faultproxy import FaultProxy

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    out = {}
    try:
        up = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=up).create_bucket(Bucket="bench")
        data = os.urandom(size)
        for mode, threshold in (("multipart", U.MULTIPART_THRESHOLD), ("single_put", size + 1)):
            U.MULTIPART_THRESHOLD = threshold
            with FaultProxy(up, rate=0.25, seed=seed, kinds=("drop", "reset_after"), max_per_request=1) as proxy:
                storage.configure(storage.StorageOptions(endpoint_url=proxy.url))
                for i in range(8):
                    storage.write_bytes(f"s3://bench/{mode}/obj{i}", data)
            st = proxy.stats
            out[mode] = {"objects": 8, "object_mib": size >> 20, "interrupted_requests": sum(st.faults.values()),
                         "interrupted_uploads": st.reuploads, "reuploaded_mib": round(st.reuploaded_bytes / 2**20, 1),
                         "mib_per_interruption": round(st.reuploaded_bytes / 2**20 / max(st.reuploads, 1), 1)}
    finally:
        server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="1,2,3")
    ap.add_argument("--node-loss", action="store_true")
    ap.add_argument("--s3", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    out: dict = {"load_before": os.getloadavg()[0], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        rows = []
        nodes = [int(x) for x in a.nodes.split(",") if x]
        if nodes:  # the sources once, outside the timings (the scenario's config: 24 dialogs, seed 7)
            sys.path.insert(0, str(ROOT))
            from pipelines.sources import synthetic

            synthetic.download(work / "src24" / "synthetic", n_dialogs=24, seed=7, min_exchanges=2, max_exchanges=3)
        for n in nodes:
            r = scenario("scale", str(work), str(n))
            rows.append(r)
            print(f"{n} node(s) x 1 CPU: {r['wall_s']:.1f} s wall for {r['audio_s']:.0f} s of audio "
                  f"({r['audio_s'] / r['wall_s']:.1f}x realtime)", flush=True)
        if rows:
            base = rows[0]["wall_s"]
            for r in rows:
                r["speedup"] = round(base / r["wall_s"], 2)
            out["scale"] = rows
            print("speed-up vs 1 node: " + ", ".join(f"{r['nodes']}: {r['speedup']}x" for r in rows))
        if a.node_loss:
            r = scenario("node-loss", str(work / "nl"))
            out["node_loss"] = r
            print(f"node loss: {r['units_redone']} of {r['units']} units redone; wall {r['wall_node_loss_s']} s vs "
                  f"{r['wall_unfaulted_s']} s unfaulted (+{r['wall_node_loss_s'] - r['wall_unfaulted_s']:.1f} s); "
                  f"same output: {r['same_output']}")
    if a.s3:
        r = s3_reupload()
        out["s3"] = r
        for mode, v in r.items():
            print(f"S3 {mode}: {v['objects']} x {v['object_mib']} MiB, {v['interrupted_uploads']} uploads of data "
                  f"interrupted ({v['interrupted_requests']} requests in all), {v['reuploaded_mib']} MiB re-uploaded = "
                  f"{v['mib_per_interruption']} MiB per interruption")
    out["load_after"] = os.getloadavg()[0]
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
