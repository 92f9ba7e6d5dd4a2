"""What every Ray Train worker of ours does the same way (codec and LM training): its place in the run, and how it
reports a step to Ray Train.

Our trainers write their own checkpoints (local or ``s3://``, with resume state Ray does not know about) and hand
Ray Train only a *pointer* to them, so that ``FailureConfig`` restarts and the ``Result`` name the last saved step."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def worker_context(threads: int = 1):
    """Inside a Ray Train worker: ``(rank, world size, torch device)``; on CPU torch is held to ``threads`` threads
    (one worker per core keeps float results independent of the machine's core count)."""
    import ray.train
    import ray.train.torch
    import torch

    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    return ctx.get_world_rank(), ctx.get_world_size(), device


def report_step(metrics: dict, saved: str, rank: int) -> None:
    """Report a step's numeric metrics to Ray Train; after a step that saved a checkpoint at URI ``saved``, rank 0
    attaches a pointer checkpoint (``pointer.json``: uri and step) so the Result's checkpoint is that step."""
    import ray.train

    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if not saved:
        ray.train.report(numbers)
        return
    with tempfile.TemporaryDirectory() as d:
        Path(d, "pointer.json").write_text(json.dumps({"uri": saved, "step": metrics["step"]}))
        ray.train.report({**numbers, "checkpoint_uri": saved},
                         checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
