"""The unit job runner shared by the jobs (ingest, encode, …): running a unit so a failure is reported, the identity
of a run (its id and the versions it ran with), and what a job returns (:class:`JobResult`)."""

from __future__ import annotations

import json
import platform
import subprocess
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable


@dataclass
class JobResult:
    """What a unit-based job returns: where it wrote, which run, how many units were skipped (already committed),
    processed or failed, the merged manifests' counts, and whether ``_SUCCESS`` was written (``noop``: the output
    was already committed for these inputs, nothing ran)."""

    out: str
    run_id: str
    units_total: int
    units_skipped: int
    units_processed: int
    units_failed: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    committed: bool = False
    noop: bool = False

def run_unit(unit_id: str, fn: Callable[[], dict]) -> str:
    """``fn()``'s summary as JSON, or an error summary: the unit stays uncommitted and a rerun retries it."""
    try:
        return json.dumps(fn())
    except Exception as e:
        return json.dumps({"unit_id": unit_id, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


def new_run_id(started: datetime) -> str:
    return started.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def versions() -> dict:
    """What a run ran with: python, torch, ray, pyarrow, and the matalu git sha (empty outside a checkout)."""
    import pyarrow
    import ray
    import torch

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent,
                             timeout=5).stdout.strip()
    except Exception:
        sha = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "pyarrow": pyarrow.__version__, "matalu": sha}
