"""`matalu submit` against a Ray head that the test starts on 127.0.0.1: the job runs and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Sample
from tests.conftest import free_port


@pytest.fixture(scope="module")
def ray_head():
    port, dash = free_port(), free_port()
    ray_bin = str(Path(sys.executable).parent / "ray")
    temp = Path("/tmp") / f"rayh{os.getpid()}"  # short: Ray's socket paths must stay under 107 bytes
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--num-cpus", "2", "--temp-dir", str(temp), "--disable-usage-stats",
         # this head shares the machine with the test session's own Ray: give its agents their own ports
         "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
         "--ray-client-server-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start failed:\n{proc.stdout.read().decode()}")
            time.sleep(1)
    else:
        raise TimeoutError("Ray head did not come up in 120 s")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_submit_ingest_job_succeeds(ray_head, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "matalu", "submit", "ingest", "--out", str(out), "--sources-dir", str(tmp_path / "src"),
         "--dialogs", "2", "--num-workers", "1", "--no-progress", "--address", ray_head],
        capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "SUCCEEDED" in r.stdout
    assert "hours by source" in r.stdout  # the job's own output, followed from its logs
    assert (out / "_SUCCESS").exists()
    samples = read_rows(manifest_uri(str(out), "samples"), Sample)
    assert {s.kind for s in samples} == {"mono", "dialog"}


def test_submit_reports_a_failed_job(ray_head, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "matalu", "submit", "ingest", "--config", str(tmp_path / "missing.yaml"),
         "--address", ray_head],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "does not exist" in r.stdout
