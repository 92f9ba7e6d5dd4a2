"""Failure isolation on a simulated 3-node Ray cluster (tests/cluster/scenario.py, run in its own process so that
its cluster never shares a process with the test session's Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def scenario(*args: str, timeout: int = 900) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_ADDRESS": ""}
    r = subprocess.run([sys.executable, "-m", "tests.cluster.scenario", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"scenario {args[0]} printed no result (rc {r.returncode}):\n{r.stderr[-5000:]}"
    return json.loads(line[len("RESULT "):])


def test_worker_node_lost_mid_ingest(tmp_path):
    """A worker node removed while its units run: the job finishes on the other node with the manifests and shard
    sha256s of an unfaulted run; only the lost node's in-flight unit is redone."""
    r = scenario("node-loss", str(tmp_path))
    assert r["committed"] and r["node_removed"] and not r["failed"]
    assert r["same_output"]
    assert r["done_before_loss"] >= 1
    assert 0 <= r["units_redone"] <= 1  # the lost node ran one actor: at most its one unit in flight


@pytest.mark.slow  # a second cluster and two drivers; the fast cover: test_failed_unit's rerun skips committed units
def test_driver_killed_then_rerun(tmp_path):
    """The job's driver SIGKILLed once units committed; the rerun skips every committed unit and redoes at most
    the units that were in flight when it died."""
    r = scenario("driver-kill", str(tmp_path))
    assert r["killed_rc"] == -9 and r["done_at_kill"] >= 2
    rerun = r["rerun"]
    assert rerun["committed"] and rerun["skipped"] == r["done_at_kill"]
    assert rerun["processed"] == rerun["units"] - r["done_at_kill"] == len(r["rerun_started"])
    assert len(r["redone"]) <= r["in_flight_at_kill"] <= 2  # two actors: at most two units in flight
