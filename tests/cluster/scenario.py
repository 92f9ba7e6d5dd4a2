"""Multi-node fault scenarios on a simulated Ray cluster (``ray.cluster_utils.Cluster``, every node on 127.0.0.1).

Run as its own process (the test session's Ray must not share a process with a second cluster):

    python -m tests.cluster.scenario node-loss WORKDIR     # a worker node removed mid-ingest
    python -m tests.cluster.scenario driver-kill WORKDIR   # (used by the test) a driver to SIGKILL, then its rerun
    python -m tests.cluster.scenario scale WORKDIR N       # ingest wall time on N worker nodes of 1 CPU (benchmark)

Each prints one JSON line (``RESULT {...}``) that the tests and benchmarks/cluster.py read. Nodes: a head with no
CPUs (job drivers only, like cluster.yaml's head) and worker nodes of 1 CPU with the custom resource ``cpu_node``;
the job asks for it through MATALU_RAY_RESOURCES, as ``matalu submit --resources cpu_node=1`` does."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node on 127.0.0.1
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway test cluster
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # a loaded 2-core machine starts nodes slowly
os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
os.environ["MATALU_RAY_RESOURCES"] = "cpu_node=1"

N_DIALOGS = 6
UNIT_SIZE = 1


def config(out: Path, sources: Path, workers: int, n_dialogs: int = N_DIALOGS):
    from pipelines.config import IngestConfig, SourceSpec

    cfg = IngestConfig(out=str(out), sources_dir=str(sources),
                       sources=[SourceSpec("synthetic", {"n_dialogs": n_dialogs, "seed": 7, "min_exchanges": 2,
                                                         "max_exchanges": 3})],
                       unit_size=UNIT_SIZE, num_workers=workers)
    cfg.segment.dialog_min_s = 5.0
    cfg.diarization.report_der_sources = []  # the unit work here is VAD, cutting and shard writing
    return cfg


def start_cluster(workers: int):
    from ray.cluster_utils import Cluster

    temp = f"/tmp/rc{os.getpid()}"  # short: socket paths stay under 107 bytes
    for attempt in range(3):  # a head slow to start on a loaded machine: start it again
        try:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"head": 1},
                                                                    "include_dashboard": False, "temp_dir": temp})
            break
        except Exception:
            if attempt == 2:
                raise
            time.sleep(5)
    nodes = [cluster.add_node(num_cpus=1, resources={"cpu_node": 1}) for _ in range(workers)]
    cluster.wait_for_nodes()
    return cluster, nodes


def ingest(cfg, log: str, delay_s: float = 0.0):
    """run_ingest with every unit start logged (tests/cluster/faults.py) -> (result, wall seconds)."""
    import pipelines.ingest as ingest_mod
    from tests.cluster import faults

    real = ingest_mod.run_job
    ingest_mod.run_job = lambda spec, **kw: real(faults.wrap(spec, log, delay_s=delay_s), **kw)
    try:
        t0 = time.perf_counter()
        res = ingest_mod.run_ingest(cfg, progress=False, say=lambda s: print(s, file=sys.stderr, flush=True))
        return res, time.perf_counter() - t0
    finally:
        ingest_mod.run_job = real


def content(root: str) -> dict:
    """What must not change between runs: samples (id, sha256), shard sha256s, rejects, recordings."""
    from manifests.io import manifest_uri, read_table

    def col(table: str, *names: str) -> list:
        t = read_table(manifest_uri(root, table), None)
        return sorted(zip(*(t.column(n).to_pylist() for n in names)))

    return {"samples": col("samples", "sample_id", "sha256"), "shards": col("shards", "sha256"),
            "rejects": col("rejects", "item", "reason"), "recordings": col("recordings", "recording_id")}


def n_done(root: Path) -> int:
    return len(list((root / "manifests" / "parts").glob("*/_DONE")))


def node_loss(work: Path) -> dict:
    """An unfaulted run and a run whose worker node is removed while it processes units (no replacement: the other
    node finishes). Same manifests and shards; units redone = unit starts beyond one each."""
    import ray

    from tests.cluster.faults import started

    cluster, nodes = start_cluster(2)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        ref, ref_wall = ingest(config(work / "ref", work / "src", 2), str(work / "ref.log"), delay_s=1.0)
        lost: dict = {}

        def remove_when_busy() -> None:  # once units run on both nodes and some have committed
            while len(started(str(work / "f.log"))) < 4 or n_done(work / "f") < 1:
                time.sleep(0.05)
            lost["at_started"] = len(started(str(work / "f.log")))
            lost["done_before"] = n_done(work / "f")
            cluster.remove_node(nodes[0])  # no replacement: the job finishes on the node that is left
            lost["removed_at"] = time.perf_counter()

        watcher = threading.Thread(target=remove_when_busy, daemon=True)
        watcher.start()
        res, wall = ingest(config(work / "f", work / "src", 2), str(work / "f.log"), delay_s=1.0)
        watcher.join(timeout=5)
        starts = started(str(work / "f.log"))
        return {"committed": bool(ref.committed and res.committed), "units": res.units_total,
                "node_removed": "removed_at" in lost, "done_before_loss": lost.get("done_before"),
                "unit_starts": len(starts), "units_redone": len(starts) - res.units_total,
                "same_output": content(str(work / "ref")) == content(str(work / "f")),
                "wall_unfaulted_s": round(ref_wall, 2), "wall_node_loss_s": round(wall, 2),
                "failed": res.units_failed}
    finally:
        ray.shutdown()
        cluster.shutdown()


def driver(work: Path, log: str) -> dict:
    """The driver of driver-kill: connects to the cluster at $CLUSTER_ADDRESS and ingests (the test kills it)."""
    import ray

    ray.init(address=os.environ["CLUSTER_ADDRESS"], logging_level="ERROR")
    res, wall = ingest(config(work / "k", work / "src", 2), log, delay_s=float(os.environ.get("UNIT_DELAY_S", "0")))
    return {"committed": res.committed, "units": res.units_total, "skipped": res.units_skipped,
            "processed": res.units_processed, "wall_s": round(wall, 2)}


def driver_kill(work: Path) -> dict:
    """A cluster that outlives its drivers: a driver SIGKILLed once units have committed, then a rerun."""
    import signal
    import subprocess

    from tests.cluster.faults import started

    cluster, _ = start_cluster(2)
    try:
        env = {**os.environ, "CLUSTER_ADDRESS": cluster.address, "UNIT_DELAY_S": "1.0"}
        cmd = [sys.executable, "-m", "tests.cluster.scenario", "driver", str(work)]
        log1 = str(work / "kill1.log")
        p = subprocess.Popen([*cmd, log1], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline:  # kill once 2 units committed and others are in flight
            done = n_done(work / "k")
            if done >= 2 and len(set(started(log1))) > done:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        done_at_kill = n_done(work / "k")
        started_before = started(log1)
        in_flight = len(set(started_before)) - done_at_kill
        log2 = str(work / "kill2.log")
        r = subprocess.run([*cmd, log2], env={**env, "UNIT_DELAY_S": "0"}, capture_output=True, text=True, timeout=600)
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"the rerun printed no result:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        rerun = json.loads(line[len("RESULT "):])
        redone = sorted(set(started(log2)) & set(started_before))
        return {"killed_rc": p.returncode, "done_at_kill": done_at_kill, "in_flight_at_kill": in_flight,
                "rerun": rerun, "rerun_started": started(log2), "redone": redone}
    finally:
        cluster.shutdown()


def scale(work: Path, n: int) -> dict:
    """Ingest wall time of 24 synthetic dialogs (24 units) on ``n`` worker nodes of 1 CPU (benchmarks/cluster.py);
    the wall time includes the job's start (preparing the already generated sources, starting the actors)."""
    import ray

    cluster, _ = start_cluster(n)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        res, wall = ingest(config(work / f"scale{n}", work / "src24", n, n_dialogs=24), str(work / f"scale{n}.log"))
        from manifests.io import manifest_uri, read_table

        secs = sum(read_table(manifest_uri(res.out, "recordings"), None).column("duration_s").to_pylist())
        return {"nodes": n, "committed": res.committed, "wall_s": round(wall, 2), "audio_s": round(secs, 1)}
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str]) -> None:
    what, work = argv[0], Path(argv[1])
    work.mkdir(parents=True, exist_ok=True)
    if what == "node-loss":
        out = node_loss(work)
    elif what == "driver-kill":
        out = driver_kill(work)
    elif what == "driver":
        out = driver(work, argv[2])
    elif what == "scale":
        out = scale(work, int(argv[2]))
    else:
        raise SystemExit(f"unknown scenario {what!r}: node-loss | driver-kill | scale N")
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
