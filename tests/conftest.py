"""Shared fixtures: one local Ray per session (2 CPUs), audio made here (espeak-ng Telugu, tones, noise)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Fake credentials for moto's S3 server; set before Ray starts so its workers inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray 2.60 resolves a local ray.init() and `--node-ip-address 127.0.0.1` to the machine's interface address; with this
# set, every Ray the tests start (local, `ray start --head`, ray.cluster_utils.Cluster) stays on 127.0.0.1.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# A new local Ray for the session, never one that `ray start` left running on this machine.
os.environ.setdefault("RAY_ADDRESS", "local")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


FAKE_SECRET = "FAKEsecretKEY0123456789abcdefghijklmnopqr"  # an AWS-style secret that must never be written out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from jobs.cluster import init_ray

    init_ray(num_cpus=2, attempts=3)  # the jobs' own start-up, retried: a loaded machine can be slow to start Ray
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """Six short synthetic dialogs (the real espeak-ng source), shared by tests that only read them."""
    from pipelines.sources import synthetic

    d = tmp_path_factory.mktemp("sources") / "synthetic"
    synthetic.download(d, n_dialogs=6, seed=7, min_exchanges=2, max_exchanges=3)
    return d.parent


def small_config(out: str | Path, sources_dir: str | Path, **kw):
    from pipelines.config import IngestConfig, SourceSpec

    cfg = IngestConfig(out=str(out), sources_dir=str(sources_dir),
                       sources=[SourceSpec("synthetic", {"n_dialogs": 6, "seed": 7, "min_exchanges": 2, "max_exchanges": 3})],
                       unit_size=3, num_workers=2)
    cfg.segment.dialog_min_s = 5.0
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over real HTTP on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def ingested(ray_session, tmp_path_factory):
    """One real ingestion run over six synthetic dialogs; tests read it, none writes to it."""
    from pipelines.ingest import run_ingest

    root = tmp_path_factory.mktemp("ingest")
    cfg = small_config(root / "out", root / "sources")
    res = run_ingest(cfg, progress=False)
    assert res.committed, res
    return cfg, res


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (codec figures and timings are per core); the old count comes back after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def one_mono_shard(ingested, tmp_path) -> Path:
    """A segments tree ``<root>/segments/synthetic/mono/<shard>.tar`` holding one mono shard of the ingested run."""
    import shutil

    import storage

    cfg, _ = ingested
    src = sorted(storage.list_files(f"{cfg.out}/segments/synthetic/mono", ".tar"))[0]
    seg = tmp_path / "in" / "segments" / "synthetic" / "mono"
    seg.mkdir(parents=True)
    shutil.copy(src, seg / src.rsplit("/", 1)[-1])
    return tmp_path / "in"


def ingest_source(tmp_path: Path, name: str, options: dict) -> tuple[list, list, list]:
    """Ingest one source (unit size 4, two workers) into ``tmp_path/out``; checks that the run committed with every
    recording in samples or rejects, and returns its (recordings, samples, rejects) rows."""
    from manifests import read_rows
    from manifests.io import manifest_uri
    from manifests.rows import Recording, Reject, Sample
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import run_ingest

    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "src"),
                       sources=[SourceSpec(name, {**options, "progress": False})], unit_size=4, num_workers=2)
    res = run_ingest(cfg, progress=False, say=lambda s: None)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    recs = read_rows(manifest_uri(cfg.out, "recordings"), Recording)
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    accounted = {s.recording_id for s in samples} | {r.recording_id for r in rejects}
    assert {r.recording_id for r in recs} <= accounted
    return recs, samples, rejects


@pytest.fixture(scope="session")
def jobs_head():
    """One real Ray head (`ray start --head`) on 127.0.0.1 for every test that submits jobs: (dashboard address, its
    temp dir). Its environment holds a fake AWS secret, as a cluster's nodes hold credentials: no output may show it."""
    from tests.rayhead import start_head

    with start_head("h", {"AWS_SECRET_ACCESS_KEY": FAKE_SECRET}) as (address, temp):
        yield address, temp
