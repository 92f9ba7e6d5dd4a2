"""`matalu submit` against a Ray head that the test starts on 127.0.0.1: the job runs and succeeds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Sample


@pytest.fixture()
def ray_head(jobs_head) -> str:
    return jobs_head[0]

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
